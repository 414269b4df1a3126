"""Data stages 2-4: speed perturbation, wav.scp formatting (resampling) and length filtering.

- :func:`speed_perturb` (stage 2): ``data/<train>`` -> ``data/<train>_sp``: each factor f
  (e.g. 0.9 1.0 1.1) adds a copy of every utterance played f times faster (pitch moves
  too, as with ``sox speed``), ids prefixed ``sp<f>-`` (``1.0`` keeps the original ids).
- :func:`format_data_dir` (stage 3): reads any wav.scp (files, ``file.ark:offset``,
  ``cmd |``, ``segments``), checks the directory first (:func:`validate_data_dir`: a bad
  file stops the stage with its name and line), resamples to ``fs`` and writes
  ``<dump>/data/<utt>.wav`` (16-bit PCM) with a new ``wav.scp`` and ``utt2num_samples``.
- :func:`filter_lengths` (stage 4): drops utterances shorter or longer than the limits
  (and those with empty text) from a dumped directory.

Every table is written atomically (temp file + rename); audio files too.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, Sequence, Tuple, Union

import numpy as np

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.data.audio import load_audio, read_audio, torchaudio_resample
from espnet_ofa.data.datadir import (
    data_dir_utterances,
    DataDirError,
    read_kaldi_table,
    spk2utt_of,
    validate_data_dir,
    write_kaldi_table,
)
from espnet_ofa.fileio import PathLike

logger = logging.getLogger(__name__)


# Tables copied along with the audio (keyed by utterance id); anything else is left behind.
UTT_TABLES = ("text", "src_text", "utt2spk", "utt2lang", "utt2category")


def parse_fs(fs: Union[str, int]) -> int:
    """``16k`` / ``16000`` -> 16000."""
    text = str(fs).strip().lower()
    try:
        if text.endswith("k"):
            return int(round(float(text[:-1]) * 1000))
        return int(text)
    except ValueError:
        raise ValueError(f"not a sample rate: {fs!r} (use e.g. 16k or 16000)") from None


def _write_wav(path: Path, wav: np.ndarray, rate: int) -> None:
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, np.clip(wav, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _resample(samples: np.ndarray, orig: int, rate: int) -> np.ndarray:
    # torch only here: a data dir already at the target rate is formatted without it.
    import torch

    return torchaudio_resample(torch.from_numpy(samples), orig, rate).numpy()


def _check(data_dir: Path, required: Sequence[str]) -> None:
    optional = tuple(n for n in ("utt2spk", "spk2utt", "segments", *UTT_TABLES)
                     if n not in required)
    validate_data_dir(data_dir, required=tuple(required), optional=optional)


def format_data_dir(
    src: PathLike, dst: PathLike, fs: Union[int, str] = SAMPLE_RATE,
    required: Sequence[str] = ("wav.scp",), progress: bool = True,
) -> int:
    """Resample ``src``'s audio to ``fs`` into ``dst`` (see the module doc); returns #utts.

    Raises :class:`DataDirError` (file and line) for a bad ``src``, before writing anything.
    """
    src, dst = Path(src), Path(dst)
    rate = parse_fs(fs)
    _check(src, required)
    items = data_dir_utterances(src)
    audio = dst / "data"
    audio.mkdir(parents=True, exist_ok=True)
    wav_scp, lengths = {}, {}
    step = max(1, len(items) // 5)
    for n, (utt, value, seg) in enumerate(items, start=1):
        try:
            samples, orig = read_audio(value, segment=seg)
            if orig != rate:
                samples = _resample(samples, orig, rate)
        except (OSError, RuntimeError, ValueError) as err:
            raise DataDirError(f"{src / 'wav.scp'}: cannot read the audio of '{utt}': {err}") from err
        if samples.size == 0:
            raise DataDirError(f"{src / 'wav.scp'}: the audio of '{utt}' is empty ({value})")
        out = (audio / f"{utt}.wav").resolve()
        _write_wav(out, samples, rate)
        wav_scp[utt] = str(out)
        lengths[utt] = str(samples.size)
        if progress and (n % step == 0 or n == len(items)):
            print(f"progress: {dst}: {n}/{len(items)} utterances at {rate} Hz", flush=True)
    # Audio files of utterances no longer in src (a rerun on changed data) are removed.
    keep = {f"{u}.wav" for u in wav_scp}
    for f in audio.iterdir():
        if f.name not in keep:
            f.unlink()
    tables = {"wav.scp": wav_scp, "utt2num_samples": lengths}
    for name in UTT_TABLES:
        if (src / name).is_file():
            tables[name] = read_kaldi_table(src / name)
        elif (dst / name).is_file():
            (dst / name).unlink()
    for name, mapping in tables.items():
        write_kaldi_table(dst / name, mapping)
    if "utt2spk" in tables:
        write_kaldi_table(dst / "spk2utt", spk2utt_of(tables["utt2spk"]))
    for stale in ("segments", "feats_type"):
        if (dst / stale).exists():
            (dst / stale).unlink()
    (dst / "feats_type").write_text("raw\n")
    return len(wav_scp)


def _factor_tag(f: float) -> str:
    return f"{f:g}"


def speed_perturb(
    src: PathLike, dst: PathLike, factors: Iterable[float], required: Sequence[str] = ("wav.scp",),
    progress: bool = True,
) -> int:
    """Speed-perturbed copies of ``src`` into ``dst`` (audio in ``dst/data``); returns #utts.

    Speed f: the waveform resampled from ``rate * f`` to ``rate`` (f > 1: shorter, higher).
    """
    src, dst = Path(src), Path(dst)
    factors = [float(f) for f in factors]
    if not factors or any(f <= 0 for f in factors):
        raise ValueError(f"speed factors must be positive numbers, got {factors}")
    _check(src, required)
    items = data_dir_utterances(src)
    audio = dst / "data"
    audio.mkdir(parents=True, exist_ok=True)
    tables: Dict[str, Dict[str, str]] = {"wav.scp": {}}
    src_tables = {n: read_kaldi_table(src / n) for n in UTT_TABLES if (src / n).is_file()}
    for name in src_tables:
        tables[name] = {}
    import torchaudio.functional as AF

    for f in factors:
        tag = _factor_tag(f)
        for utt, value, seg in items:
            new = utt if f == 1.0 else f"sp{tag}-{utt}"
            wav, orig = load_audio(value, target_sr=None, segment=seg)
            if f != 1.0:
                # Integer rates for resample: a period of 1/100 of a factor step is plenty.
                wav = AF.resample(wav, int(round(orig * f / 10)), int(orig / 10))
            out = (audio / f"{new}.wav").resolve()
            _write_wav(out, wav.numpy(), orig)
            tables["wav.scp"][new] = str(out)
            for name, mapping in src_tables.items():
                value_ = mapping[utt]
                if name == "utt2spk" and f != 1.0:
                    value_ = f"sp{tag}-{value_}"
                tables[name][new] = value_
        if progress:
            print(f"progress: {dst}: speed {tag} done ({len(items)} utterances)", flush=True)
    for name, mapping in tables.items():
        write_kaldi_table(dst / name, mapping)
    if "utt2spk" in tables:
        write_kaldi_table(dst / "spk2utt", spk2utt_of(tables["utt2spk"]))
    return len(tables["wav.scp"])


def filter_lengths(
    src: PathLike, dst: PathLike, fs: Union[int, str] = SAMPLE_RATE,
    min_duration: float = 0.1, max_duration: float = 20.0, text_files: Sequence[str] = ("text",),
) -> Tuple[int, Dict[str, str]]:
    """Copy dumped ``src`` to ``dst`` without too short/long utterances or empty texts.

    Needs ``src/utt2num_samples`` (from :func:`format_data_dir`). The audio is not copied:
    ``wav.scp`` keeps pointing to ``src``'s files. Returns (#kept, {dropped utt: why}).
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError("filter_lengths needs a different output directory")
    rate = parse_fs(fs)
    if not (src / "utt2num_samples").is_file():
        raise DataDirError(f"{src / 'utt2num_samples'}: not found; run the format stage (3) first")
    lengths = {u: int(v) for u, v in read_kaldi_table(src / "utt2num_samples").items()}
    dropped: Dict[str, str] = {}
    for utt, n in lengths.items():
        seconds = n / rate
        if seconds < min_duration:
            dropped[utt] = f"{seconds:.3f} s < min {min_duration} s"
        elif seconds > max_duration:
            dropped[utt] = f"{seconds:.3f} s > max {max_duration} s"
    for name in text_files:
        if (src / name).is_file():
            for utt, value in read_kaldi_table(src / name, allow_empty_values=True).items():
                if not value.strip():
                    dropped.setdefault(utt, f"empty {name}")
    keep = set(lengths) - set(dropped)
    if not keep:
        raise DataDirError(
            f"{src}: every utterance was filtered out (e.g. {next(iter(dropped.items()))}); "
            "adjust --min_wav_duration/--max_wav_duration")
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("wav.scp", "utt2num_samples", *UTT_TABLES):
        if (src / name).is_file():
            table = read_kaldi_table(src / name, allow_empty_values=name in text_files)
            write_kaldi_table(dst / name, {u: v for u, v in table.items() if u in keep})
            if name == "utt2spk":
                write_kaldi_table(dst / "spk2utt", spk2utt_of(
                    {u: v for u, v in table.items() if u in keep}))
        elif (dst / name).exists():
            (dst / name).unlink()
    if (src / "feats_type").is_file():
        shutil.copyfile(src / "feats_type", dst / "feats_type")
    for utt, why in sorted(dropped.items())[:10]:
        logger.info("filtered out %s: %s", utt, why)
    return len(keep), dropped
