"""Audio loading: files, Kaldi archives and pipes of a wav.scp, as samples or tensors.

Audio is read with soundfile (``torchaudio.load`` in torchaudio 2.11 needs torchcodec, which
is not installed) and resampled with ``torchaudio.functional.resample``. A file that is not
audio, a stereo recording or a segment past the end raises ``ValueError`` with the fix in the
message instead of silently producing wrong frames (the waveform checks before a model are
`espnet_ofa.data.waveform`'s).

torch is imported where a tensor is made: the data-dir steps that only read headers or
count frames (length filtering, formatting 16 kHz audio) start without it.
"""

from __future__ import annotations

import io
import os
import subprocess
from typing import TYPE_CHECKING, Optional, Tuple, Union

import numpy as np

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.data.datadir import wav_scp_path
from espnet_ofa.fileio import PathLike

if TYPE_CHECKING:
    import torch


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
    audio_file_info(value)  # a clear error for a file that is not audio
    data, rate = soundfile.read(value, start=start, stop=stop, dtype="float32", always_2d=False)
    return data, rate


def read_audio(
    path_or_wavscp_value: Union[PathLike, str],
    segment: Optional[Tuple[float, float]] = None,
    mix_to_mono: bool = False,
) -> Tuple[np.ndarray, int]:
    """Read mono audio as float32 samples at the file's own rate (`load_audio` without the
    tensor and the resampling).

    Args: as `load_audio`'s.

    Returns:
        ``(samples, rate)``: samples is (N,) float32 in [-1, 1]; rate is the file's, in Hz.
    """
    value = os.fspath(path_or_wavscp_value)
    start_frame, stop_frame = 0, None
    if segment is not None:
        # Seconds -> samples needs the file's rate, which only reading the header tells.
        rate0, duration = _probe(value)
        start_s, end_s = segment
        if start_s >= duration:
            raise ValueError(
                f"{value}: segment {start_s:g}-{end_s:g} s starts past the end of the audio "
                f"({duration:.3f} s long). Fix the segment's times (e.g. in the segments file; "
                "end -1 means to the end of the recording)."
            )
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
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def load_audio(
    path_or_wavscp_value: Union[PathLike, str],
    target_sr: Optional[int] = SAMPLE_RATE,
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
    import torch

    samples, rate = read_audio(path_or_wavscp_value, segment, mix_to_mono)
    wav = torch.from_numpy(samples)
    if target_sr is not None and rate != target_sr:
        wav = torchaudio_resample(wav, rate, target_sr)
    return wav, rate


def _probe(value: str) -> Tuple[int, float]:
    """``(sample rate, duration in s)`` of a wav.scp value; headers only for a plain file."""
    file = wav_scp_path(value)
    if file is not None and file == value.strip():
        info = audio_file_info(value)
        return int(info.samplerate), float(info.duration)
    # A pipe or an archive: read it whole once to learn its rate.
    data, rate = _read_wav_scp_value(value, 0, None)
    return rate, data.shape[0] / rate


def audio_file_info(path: PathLike):
    """soundfile's header info of an audio file; ``ValueError`` naming the file if it is
    missing or not audio that soundfile reads (wav, flac, ogg, ...)."""
    import soundfile

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not an audio file; give the audio files in it")
    if not os.path.isfile(path):
        raise ValueError(f"audio file {path} does not exist; check the path")
    try:
        return soundfile.info(path)
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise ValueError(
            f"{path} is not an audio file soundfile can read ({err}); convert it to wav or "
            "flac, e.g. `sox in.mp3 out.wav` or `ffmpeg -i in.m4a out.wav`"
        ) from None


def torchaudio_resample(wav: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample a (N,) or (..., N) tensor with torchaudio's band-limited sinc interpolation."""
    import torchaudio.functional as AF

    return AF.resample(wav, int(orig_sr), int(target_sr))


def num_frames(num_samples: int, window: int = 400, hop: int = 320) -> int:
    """Frames of a 25 ms / 20 ms CNN (or Kaldi features with snip_edges) for N samples at 16 kHz.

    ``(N - window) // hop + 1``, and 0 when N < window.
    """
    return 0 if num_samples < window else (num_samples - window) // hop + 1


__all__ = [
    "audio_file_info",
    "load_audio",
    "num_frames",
    "read_audio",
]
