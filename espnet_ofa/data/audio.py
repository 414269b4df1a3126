"""Audio loading and waveform checks.

Audio is read with soundfile (``torchaudio.load`` in torchaudio 2.11 needs torchcodec, which
is not installed) and resampled with ``torchaudio.functional.resample``. The checks raise
``ValueError`` with the fix in the message, so that an 8 kHz file or a stereo recording fails
with a clear explanation instead of silently producing wrong frames.
"""

from __future__ import annotations

import io
import os
import subprocess
from typing import Optional, Tuple, Union

import numpy as np
import torch

from espnet_ofa.data.datadir import wav_scp_path

PathLike = Union[str, os.PathLike]

# The SSL models' CNN frame: 25 ms window (400 samples at 16 kHz) and 20 ms hop; a waveform
# shorter than one window gives no frame at all.
DEFAULT_MIN_SAMPLES = 400


def _read_wav_scp_value(value: str, start: int, stop: Optional[int]) -> Tuple[np.ndarray, int]:
    """Read the audio a wav.scp value points to: a file, ``file.ark:offset`` or ``cmd |``.

    Returns ``(samples, rate)`` with samples float32 in [-1, 1], shape (N,) or (N, C).
    """
    import soundfile

    value = value.strip()
    if value.endswith("|"):
        # A pipe command writing a wav/flac to stdout (Kaldi's convention). The shell runs it,
        # as Kaldi does, since such commands usually contain pipes and redirections.
        proc = subprocess.run(value[:-1], shell=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"wav.scp command failed ({proc.returncode}): {value!r}: "
                f"{proc.stderr.decode(errors='replace').strip()[-500:]}"
            )
        data, rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=False)
        return data[start:stop], rate
    file = wav_scp_path(value)
    if file is not None and file != value:
        # An offset into a Kaldi archive holding wav data.
        import kaldiio

        rate, data = kaldiio.load_mat(value)
        data = np.asarray(data)
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
        return data[start:stop].astype(np.float32, copy=False), int(rate)
    if not os.path.isfile(value):
        raise FileNotFoundError(f"audio file not found: {value!r}")
    data, rate = soundfile.read(value, start=start, stop=stop, dtype="float32", always_2d=False)
    return data, rate


def load_audio(
    path_or_wavscp_value: Union[PathLike, str],
    target_sr: Optional[int] = 16000,
    segment: Optional[Tuple[float, float]] = None,
    mix_to_mono: bool = False,
) -> Tuple[torch.Tensor, int]:
    """Load mono audio as a float32 tensor at ``target_sr``.

    Args:
        path_or_wavscp_value: a path, or a wav.scp value (``file.ark:offset`` or ``cmd |``).
        target_sr: output rate in Hz (resampled if the file differs); None keeps the file's.
        segment: ``(start_s, end_s)`` to read a part (end ``-1`` or None = to the end), as in a
            Kaldi ``segments`` file.
        mix_to_mono: average the channels of a multi-channel file; by default such a file
            raises ``ValueError`` (a silent down-mix can hide a wrong file).

    Returns:
        ``(wav, original_sr)``: wav is (N,) float32 in [-1, 1] at ``target_sr``;
        original_sr is the file's own rate.
    """
    value = os.fspath(path_or_wavscp_value)
    start_frame, stop_frame = 0, None
    if segment is not None:
        # Seconds -> samples needs the file's rate, which only reading the header tells.
        rate0 = _probe_rate(value)
        start_s, end_s = segment
        start_frame = int(round(start_s * rate0))
        stop_frame = None if end_s is None or end_s < 0 else int(round(end_s * rate0))
    data, rate = _read_wav_scp_value(value, start_frame, stop_frame)
    if data.ndim == 2:
        if data.shape[1] == 1:
            data = data[:, 0]
        elif mix_to_mono:
            data = data.mean(axis=1)
        else:
            raise ValueError(
                f"{value}: {data.shape[1]} channels; expected mono. Mix down to mono, e.g. "
                "`sox in.wav -c 1 out.wav`, or call load_audio(..., mix_to_mono=True)."
            )
    wav = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    if target_sr is not None and rate != target_sr:
        wav = torchaudio_resample(wav, rate, target_sr)
    return wav, int(rate)


def _probe_rate(value: str) -> int:
    file = wav_scp_path(value)
    if file is not None and file == value.strip():
        import soundfile

        return int(soundfile.info(value).samplerate)
    # A pipe or an archive: read it whole once to learn its rate.
    _, rate = _read_wav_scp_value(value, 0, None)
    return rate


def torchaudio_resample(wav: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample a (N,) or (..., N) tensor with torchaudio's band-limited sinc interpolation."""
    import torchaudio.functional as AF

    return AF.resample(wav, int(orig_sr), int(target_sr))


def _ms(samples: int, rate: int) -> str:
    return f"{1000.0 * samples / rate:g} ms"


def check_waveform(
    wav: torch.Tensor,
    sample_rate: int,
    expected_sr: int = 16000,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> None:
    """Check one utterance's waveform before it reaches a model; raise ``ValueError`` if bad.

    Args:
        wav: (N,) mono samples; (1, N) or (N, 1) are accepted as mono too.
        sample_rate: the rate ``wav`` is at, in Hz.
        expected_sr: the rate the model needs.
        min_samples: the fewest samples that give one model frame (400 = 25 ms at 16 kHz).

    Raises ``ValueError`` with the fix for: not a float tensor, more than one channel,
    an empty waveform, the wrong sample rate, fewer than ``min_samples`` samples, NaN/Inf.
    """
    if not torch.is_tensor(wav):
        raise ValueError(f"wav must be a torch.Tensor, got {type(wav).__name__}")
    if not wav.is_floating_point():
        raise ValueError(
            f"wav must be floating point in [-1, 1], got dtype {wav.dtype}. Convert integer "
            "PCM with wav.float() / 32768 (16-bit), or load it with espnet_ofa.data.load_audio."
        )
    if wav.dim() == 2:
        channels = min(wav.shape)
        if channels > 1:
            raise ValueError(
                f"wav has shape {tuple(wav.shape)}: {channels} channels, but mono is needed. "
                "Mix down to mono (e.g. wav.mean(dim=0) for (C, N), or `sox in.wav -c 1 "
                "out.wav`). For a padded batch (B, N) use check_waveform_batch."
            )
        wav = wav.reshape(-1)
    elif wav.dim() != 1:
        raise ValueError(f"wav must be (N,) mono samples, got shape {tuple(wav.shape)}")
    if wav.numel() == 0:
        raise ValueError("wav is empty (0 samples). Check the audio file and any segment times.")
    if sample_rate != expected_sr:
        raise ValueError(
            f"wav is at {sample_rate} Hz but the model needs {expected_sr} Hz. Resample to "
            f"{expected_sr / 1000:g} kHz, e.g. torchaudio.functional.resample(wav, "
            f"{sample_rate}, {expected_sr}), espnet_ofa.data.load_audio(path, "
            f"target_sr={expected_sr}), or `sox in.wav -r {expected_sr} out.wav`."
        )
    if wav.numel() < min_samples:
        raise ValueError(
            f"wav has {wav.numel()} samples ({_ms(wav.numel(), sample_rate)}); at least "
            f"{min_samples} samples ({_ms(min_samples, expected_sr)}) are needed for one frame. "
            "Drop or pad utterances that short."
        )
    if not bool(torch.isfinite(wav).all()):
        bad = int((~torch.isfinite(wav)).sum())
        raise ValueError(
            f"wav contains {bad} NaN/Inf sample(s). The audio file or a preprocessing step is "
            "corrupt; re-create it (e.g. replace them with torch.nan_to_num, then check why)."
        )


def check_waveform_batch(
    wav: torch.Tensor,
    wav_lengths: torch.Tensor,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    sample_rate: int = 16000,
) -> None:
    """Check a padded batch of waveforms; raise ``ValueError`` naming the bad utterance.

    Args:
        wav: (B, N) float samples, utterance b in ``wav[b, :wav_lengths[b]]``; the padding
            is not checked.
        wav_lengths: (B,) integer lengths, each in [min_samples, N].
        min_samples: the fewest samples of one utterance (400 = 25 ms at 16 kHz).
        sample_rate: the batch's rate, only used to say lengths in ms.
    """
    if not torch.is_tensor(wav) or not wav.is_floating_point():
        raise ValueError(
            f"wav must be a floating-point tensor, got {getattr(wav, 'dtype', type(wav).__name__)}"
        )
    if wav.dim() != 2:
        hint = " (multi-channel audio must be mixed down to mono first)" if wav.dim() == 3 else ""
        raise ValueError(f"wav must be a (batch, samples) tensor, got shape {tuple(wav.shape)}{hint}")
    batch, max_len = wav.shape
    if (not torch.is_tensor(wav_lengths) or wav_lengths.dim() != 1
            or wav_lengths.shape[0] != batch):
        shape = tuple(wav_lengths.shape) if torch.is_tensor(wav_lengths) else type(wav_lengths).__name__
        raise ValueError(f"wav_lengths must be a (batch={batch},) tensor, got {shape}")
    if wav_lengths.is_floating_point() or wav_lengths.is_complex():
        raise ValueError(f"wav_lengths must be integers, got dtype {wav_lengths.dtype}")
    if batch == 0:
        raise ValueError("the batch is empty (batch size 0)")
    lengths = wav_lengths.detach().cpu().long()
    for b in range(batch):
        n = int(lengths[b])
        if n > max_len:
            raise ValueError(
                f"utterance {b}: wav_lengths[{b}] = {n} exceeds the padded length {max_len}; "
                "the lengths do not belong to this batch."
            )
        if n <= 0:
            raise ValueError(f"utterance {b} is empty (wav_lengths[{b}] = {n}); drop it.")
        if n < min_samples:
            raise ValueError(
                f"utterance {b} has {n} samples ({_ms(n, sample_rate)}); at least {min_samples} "
                f"({_ms(min_samples, sample_rate)}) are needed for one frame. Drop or pad it."
            )
    valid = torch.arange(max_len, device=wav.device)[None, :] < wav_lengths.to(wav.device)[:, None]
    bad = valid & ~torch.isfinite(wav)
    if bool(bad.any()):
        b = int(bad.any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"utterance {b} contains {int(bad[b].sum())} NaN/Inf sample(s) within its length; "
            "its audio or a preprocessing step is corrupt."
        )


def num_frames(num_samples: int, window: int = 400, hop: int = 320) -> int:
    """Frames of a 25 ms / 20 ms CNN (or Kaldi features with snip_edges) for N samples at 16 kHz.

    ``(N - window) // hop + 1``, and 0 when N < window.
    """
    return 0 if num_samples < window else (num_samples - window) // hop + 1


__all__ = [
    "DEFAULT_MIN_SAMPLES",
    "check_waveform",
    "check_waveform_batch",
    "load_audio",
    "num_frames",
]
