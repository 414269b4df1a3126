"""How well a student's rate predictor fits pseudo boundaries: the two alpha losses of
pretraining (`espnet_ofa.models.distill_loss.alpha_losses`), averaged over a data dir.

Used to compare boundary settings (e.g. with and without DP smoothing): evaluate each
student against each boundary file, so that a loss that is lower only because its own
targets are easier shows up as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping

import torch

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.data import DataDirError, load_audio
from espnet_ofa.fileio import PathLike
from espnet_ofa.models.distill_loss import alpha_losses
from espnet_ofa.models.student import OFAStudent
from espnet_ofa.segmentation.boundaries import read_boundaries
from espnet_ofa.segmentation.pipeline import list_utterances


@dataclass(frozen=True)
class AlphaFit:
    """Utterance means of the frame-level L1 and of the boundary loss; ``num_utts`` scored."""

    l1: float
    boundary: float
    num_utts: int


@torch.no_grad()
def alpha_fit(
    student: OFAStudent, data_dir: PathLike, boundary_files: Mapping[str, PathLike]
) -> Dict[str, AlphaFit]:
    """The student's predictor on every utterance of ``data_dir``, against each boundary file.

    Args:
        student: an OFA student with a predictor (``compression: cif``).
        data_dir: Kaldi data dir (wav.scp, optional segments) at 16 kHz.
        boundary_files: ``{name: path}`` of boundary files (``uttid b1 ... bK``, the output of
            ``espnet_ofa.bin.segment``); each must cover every utterance of ``data_dir``.

    Returns:
        ``{name: AlphaFit}``, in the order of ``boundary_files``.
    """
    utterances = list_utterances(data_dir)
    targets = {name: read_boundaries(path) for name, path in boundary_files.items()}
    for name, table in targets.items():
        missing = [utt for utt, _, _ in utterances if utt not in table]
        if missing:
            raise DataDirError(
                f"boundary file '{name}' ({boundary_files[name]}) has no line for {len(missing)} "
                f"utterance(s) of {data_dir}, e.g. {missing[0]}: segment the same data dir "
                "(python -m espnet_ofa.bin.segment --data_dir ...)")
    student.eval()
    sums = {name: [0.0, 0.0] for name in targets}
    for utt, value, segment in utterances:
        wav, _ = load_audio(value, target_sr=SAMPLE_RATE, segment=segment)
        out = student(wav[None], torch.tensor([wav.numel()]))
        if out.alpha_pred is None:
            raise ValueError("this student has no rate predictor (compression: fixed): "
                             "there are no alpha losses to measure")
        for name, table in targets.items():
            ends = torch.as_tensor(table[utt], dtype=torch.long)[None]
            l1, boundary = alpha_losses(out.alpha_pred, ends, out.frame_lengths)
            sums[name][0] += float(l1)
            sums[name][1] += float(boundary)
    n = max(len(utterances), 1)
    return {name: AlphaFit(l1 / n, b / n, len(utterances)) for name, (l1, b) in sums.items()}
