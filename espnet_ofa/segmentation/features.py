"""20 ms frame features for segmentation: Kaldi-style MFCC, or a teacher's hidden layer.

Both give T = (N - 400) // 320 + 1 frames for N samples at 16 kHz, the frame count of the
SSL models' CNN (25 ms window, 20 ms hop, no padding), so boundaries computed on them index
the student's 20 ms frames directly.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from espnet_ofa.constants import INPUT_PERIOD_MS, SAMPLE_RATE

FRAME_LENGTH_MS = 25.0


def mfcc_features(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE, cmvn: bool = True) -> np.ndarray:
    """MFCC (13) + deltas + delta-deltas at 20 ms, per-utterance mean/variance normalised.

    Args:
        wav: (N,) float waveform in [-1, 1] at ``sample_rate`` (N >= 400 at 16 kHz).
        sample_rate: 16000 for the SSL frame grid.
        cmvn: normalise each dimension to zero mean, unit variance over the utterance (so
            that c0/energy does not dominate the k-means distances).

    Returns:
        (T, 39) float32, T = (N - 400) // 320 + 1 at 16 kHz.
    """
    import torchaudio.compliance.kaldi as kaldi
    import torchaudio.functional as AF

    if wav.dim() != 1:
        raise ValueError(f"wav must be (N,), got shape {tuple(wav.shape)}")
    # Kaldi's feature code works on 16-bit sample values; scale so its energy floors behave
    # as in Kaldi. Dither 0 keeps the features (and so the units) deterministic.
    mfcc = kaldi.mfcc(
        wav.float()[None, :] * 32768.0,
        sample_frequency=float(sample_rate),
        frame_length=FRAME_LENGTH_MS,
        frame_shift=INPUT_PERIOD_MS,
        snip_edges=True,
        dither=0.0,
        num_ceps=13,
    )  # (T, 13)
    c = mfcc.T.contiguous()[None]  # (1, 13, T): compute_deltas works along the last axis
    d1 = AF.compute_deltas(c)
    d2 = AF.compute_deltas(d1)
    feats = torch.cat([c, d1, d2], dim=1)[0].T  # (T, 39)
    if cmvn and feats.shape[0] > 0:
        feats = (feats - feats.mean(dim=0)) / (feats.std(dim=0, unbiased=False) + 1e-5)
    return feats.numpy().astype(np.float32)


class TeacherFeatures:
    """Hidden states of one layer of a teacher SSL model as (T, D) numpy features.

    The teacher is loaded lazily, on the first call, with
    ``espnet_ofa.teachers.load_teacher(source, layers=(layer,))``; its call signature is
    ``teacher(wav (B, N), wav_lengths (B,)) -> TeacherOutput(hidden=[(B, T, D)], lengths)``.
    """

    def __init__(self, source: str, layer: int = 6, device: Optional[str] = None):
        self.source = source
        self.layer = int(layer)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._teacher = None

    def _load(self):
        # Imported here so that the MFCC path never needs the teacher code (or its weights).
        from espnet_ofa.teachers import load_teacher

        teacher = load_teacher(self.source, layers=(self.layer,))
        if hasattr(teacher, "to"):
            teacher = teacher.to(self.device)
        if hasattr(teacher, "eval"):
            teacher.eval()
        return teacher

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> np.ndarray:
        """(N,) 16 kHz waveform -> (T, D) float32 hidden states of the chosen layer."""
        if self._teacher is None:
            self._teacher = self._load()
        x = wav.float().to(self.device)[None, :]
        lengths = torch.tensor([wav.shape[0]], device=self.device)
        out = self._teacher(x, lengths)
        hidden = out.hidden[0][0, : int(out.lengths[0])]
        return hidden.float().cpu().numpy()
