"""Waveform checks before a model sees the audio (torch only: no data-dir or audio-file code).

The checks raise ``ValueError`` with the fix in the message, so that an 8 kHz file or a
stereo recording fails with a clear explanation instead of silently producing wrong frames.
Float64 waveforms (numpy's default dtype) and numpy arrays are accepted and converted to
float32 tensors: the checks return the waveform the model should use.

Models import this module, not `espnet_ofa.data.audio`, so that they do not depend on the
data-directory code.
"""

from __future__ import annotations

from typing import Any

import torch

from espnet_ofa.constants import SAMPLE_RATE

# The SSL models' CNN frame: 25 ms window (400 samples at 16 kHz) and 20 ms hop; a waveform
# shorter than one window gives no frame at all.
DEFAULT_MIN_SAMPLES = 400


def as_float32(wav: Any) -> Any:
    """A float64 tensor, a numpy float array or a half-precision tensor on the CPU as a
    float32 tensor; anything else unchanged.

    Float64 is what numpy gives by default; the models compute in float32, and on the CPU
    in float32 only (float16/bfloat16 audio would meet float32 weights in the first
    convolution). Half precision on an accelerator (AMP) and float32 are kept as they are.
    """
    if type(wav).__module__ == "numpy" and hasattr(wav, "dtype") and wav.dtype.kind == "f":
        wav = torch.from_numpy(wav.copy())
    if torch.is_tensor(wav) and (wav.dtype == torch.float64 or (
            wav.device.type == "cpu" and wav.dtype in (torch.float16, torch.bfloat16))):
        wav = wav.to(torch.float32)
    return wav


def check_has_data(tensor: Any, name: str) -> None:
    """A meta tensor has a shape but no samples: say so instead of failing inside torch."""
    if torch.is_tensor(tensor) and tensor.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device (a shape without data, e.g. made under "
            "torch.device('meta')); pass real samples on the CPU or a GPU"
        )


def _ms(samples: int, rate: int) -> str:
    return f"{1000.0 * samples / rate:g} ms"


def check_waveform(
    wav: torch.Tensor,
    sample_rate: int,
    expected_sr: int = SAMPLE_RATE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> torch.Tensor:
    """Check one utterance's waveform before it reaches a model; raise ``ValueError`` if bad.

    Args:
        wav: (N,) mono samples; (1, N) or (N, 1) are accepted as mono too.
        sample_rate: the rate ``wav`` is at, in Hz.
        expected_sr: the rate the model needs.
        min_samples: the fewest samples that give one model frame (400 = 25 ms at 16 kHz).

    Returns:
        ``wav`` itself, or as float32 when it was float64 or a numpy array.

    Raises ``ValueError`` with the fix for: not a float tensor, more than one channel,
    an empty waveform, the wrong sample rate, fewer than ``min_samples`` samples, NaN/Inf.
    """
    wav = checked = as_float32(wav)
    if not torch.is_tensor(wav):
        raise ValueError(f"wav must be a torch.Tensor, got {type(wav).__name__}")
    check_has_data(wav, "wav")
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
    return checked


def check_waveform_batch(
    wav: torch.Tensor,
    wav_lengths: torch.Tensor,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    sample_rate: int = SAMPLE_RATE,
) -> torch.Tensor:
    """Check a padded batch of waveforms; raise ``ValueError`` naming the bad utterance.

    Args:
        wav: (B, N) float samples, utterance b in ``wav[b, :wav_lengths[b]]``; the padding
            is not checked.
        wav_lengths: (B,) integer lengths, each in [min_samples, N].
        min_samples: the fewest samples of one utterance (400 = 25 ms at 16 kHz).
        sample_rate: the batch's rate, only used to say lengths in ms.

    Returns:
        (B, N) ``wav`` itself, or as float32 when it was float64 or a numpy array: use the
        returned tensor.
    """
    wav = as_float32(wav)
    if not torch.is_tensor(wav) or not wav.is_floating_point():
        raise ValueError(
            f"wav must be a floating-point tensor, got {getattr(wav, 'dtype', type(wav).__name__)}"
        )
    if wav.dim() != 2:
        hint = " (multi-channel audio must be mixed down to mono first)" if wav.dim() == 3 else ""
        raise ValueError(f"wav must be a (batch, samples) tensor, got shape {tuple(wav.shape)}{hint}")
    batch, max_len = wav.shape
    check_has_data(wav, "wav")
    check_has_data(wav_lengths, "wav_lengths")
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
    return wav



__all__ = ["DEFAULT_MIN_SAMPLES", "as_float32", "check_has_data", "check_waveform",
           "check_waveform_batch"]
