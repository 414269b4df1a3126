"""The frame periods a pretrained student serves, measured and written into its config.yaml.

In ``frame_period`` mode pretraining samples the periods themselves, and the student's
``frame_period_range`` is exact from the start. In the lam modes it samples the paper's
lambda, whose period depends on the predictor: ``lam_to_period(lam, mean alpha)``. The
student is built with the port's assumed mean (2/9), which a trained predictor need not fire
at; so at the end of pretraining (``ssl.sh`` stage 10) the mean is measured over data and the
range re-derived from it (`RateSampler.period_range`). The frontend reads both from
``student_conf`` in config.yaml (``frame_period_range``, ``mean_alpha``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional, Tuple

import torch
import yaml

from espnet_ofa.compression import PERIOD_MODES, RateSampler
from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.data.datadir import atomic_write_text, read_kaldi_table, validate_data_dir
from espnet_ofa.fileio import PathLike
from espnet_ofa.models.student import OFAStudent

logger = logging.getLogger(__name__)


@torch.no_grad()
def measure_mean_alpha(student: OFAStudent,
                       waveforms: Iterable[torch.Tensor]) -> Tuple[float, int]:
    """The predictor's mean weight per 20 ms frame over ``waveforms`` (1-D, 16 kHz), as
    (sum of alpha_pred over all frames / number of frames, number of frames)."""
    if student.alpha_predictor is None:
        raise ValueError("a 'fixed' (average pooling) student has no alpha predictor to measure")
    student.eval()
    total, frames = 0.0, 0
    for wav in waveforms:
        out = student(wav[None], torch.tensor([wav.numel()]), lam=1.0)
        n = int(out.frame_lengths[0])
        total += float(out.alpha_pred[0, :n].double().sum())
        frames += n
    if frames == 0:
        raise ValueError("no audio to measure the predictor's mean alpha on")
    return total / frames, frames


def _waveforms(data_dir: Path, max_utts: Optional[int]) -> Iterable[torch.Tensor]:
    import soundfile as sf

    validate_data_dir(data_dir, required=("wav.scp",), optional=())
    wavs = read_kaldi_table(data_dir / "wav.scp")
    for utt in sorted(wavs)[:max_utts]:
        audio, rate = sf.read(wavs[utt], dtype="float32", always_2d=False)
        if rate != SAMPLE_RATE or audio.ndim != 1:
            raise ValueError(f"{data_dir}/wav.scp: {utt} is {rate} Hz with shape {audio.shape};"
                             " measure on the formatted (16 kHz mono) data dir, e.g. dump/raw/dev")
        yield torch.from_numpy(audio)


def record_trained_range(exp_dir: PathLike, data_dir: PathLike,
                         model_file: str = "valid.loss.best.pth",
                         max_utts: Optional[int] = None) -> Optional[dict]:
    """Measure the mean alpha of ``exp_dir/model_file`` on ``data_dir`` and write it and the
    range it gives into ``exp_dir/config.yaml`` (atomically).

    Returns ``{"mean_alpha", "frames", "frame_period_range"}``, or None for a student whose
    range needs no measurement (``frame_period`` mode: the periods sampled; or no predictor).
    """
    from espnet_ofa.models.pretrained import CheckpointError, load_student

    exp_dir, data_dir = Path(exp_dir), Path(data_dir)
    config_path = exp_dir / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path} not found: train the student first (ssl.sh stage 10)")
    conf = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    rate_conf = dict(conf.get("rate_conf") or {})
    sampler = RateSampler(**{k: v for k, v in rate_conf.items() if k != "seed"})
    student_conf = conf.get("student_conf") or {}
    if sampler.mode in PERIOD_MODES or student_conf.get("compression") == "fixed":
        logger.info("%s: %s mode, trained over the periods it sampled: nothing to measure",
                    exp_dir, sampler.mode)
        return None
    student = load_student(exp_dir / model_file, config_path)
    mean_alpha, frames = measure_mean_alpha(student, _waveforms(data_dir, max_utts))
    low, high = sampler.period_range(mean_alpha)
    student_conf = {**student_conf, "frame_period_range": [low, high], "mean_alpha": mean_alpha}
    atomic_write_text(config_path, yaml.safe_dump({**conf, "student_conf": student_conf},
                                                  sort_keys=False))
    logger.info("%s: mean alpha %.4f over %d frames of %s: trained range %.1f-%.1f ms "
                "(assumed before: %s)", exp_dir, mean_alpha, frames, data_dir, low, high,
                sampler.frame_period_range)
    return {"mean_alpha": mean_alpha, "frames": frames, "frame_period_range": (low, high)}
