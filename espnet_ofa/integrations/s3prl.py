"""The s3prl upstream ``ofa_local``: an OFA SSL model for s3prl's `S3PRLUpstream`/`Featurizer`
(and so for ESPnet's ``frontend: s3prl``).

    S3PRLUpstream("ofa_local", path_or_url="exp/ofa/valid.loss.best.pth",   # or a .zip, a zoo name
                  extra_conf={"frame_period": 40})                         # or {"lam": 0.5}

Installing espnet_ofa registers it: the import hook of `espnet_ofa.registration` adds
`ofa_local` to ``s3prl.hub`` when s3prl imports it, so ``S3PRLUpstream.available_names()``
lists it; no s3prl file is changed.

**Lengths.** s3prl never asks an upstream for its output lengths: `S3PRLUpstream` computes
them from the waveform lengths alone, ``floor((N - 1) / stride) + 1`` (= ``ceil(N / stride)``)
with the integer ``stride`` (samples) that ``get_downsample_rates`` returns, and trims or
pads (repeating the last frame) every upstream's output to that. An OFA model runs at
any period, and ``frontend: ofa``'s count, ``round(T * 20 / p)`` with
``T = (N - 400) // 320 + 1``, is not a function of ``ceil(N / stride)``. So this upstream
follows s3prl's rule instead, exactly: CIF is solved for ``ceil(N / stride)`` frames per
utterance (`espnet_ofa.compression.alpha_for_lengths`), so every frame s3prl counts as valid
is a real output of the model, and the padding beyond it is zero. Consequences:

* the period must be a whole number of samples (``stride = 16 * frame_period``: a multiple
  of 1/16 ms, e.g. 40 or 42.5), since s3prl's stride is an integer;
* the count is ``round(T * 20 / p)`` or one more (up to two more below 50 ms), never fewer;
* where s3prl's count exceeds the utterance's 20 ms frames (every utterance at 20 ms;
  utterances under about 0.1 s below 50 ms) the waveform is extended with zeros by the
  few samples the CNN needs for that many frames, as s3prl itself pads short inputs;
* ``lam`` has no fixed stride: ``{lam: L}`` runs at the period the OFA paper's mapping gives
  it (`espnet_ofa.compression.lam_to_period`, rounded to a whole sample), and says so in
  the log.

s3prl gives an upstream no sample rate; the audio must be 16 kHz (``extra_conf:
{sample_rate: 16000}`` is checked when given).
"""

from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from espnet_ofa.compression import INPUT_PERIOD_MS, Rate, lam_to_period
from espnet_ofa.models.student import SAMPLE_RATE

logger = logging.getLogger(__name__)

UPSTREAM_NAME = "ofa_local"
SAMPLES_PER_MS = SAMPLE_RATE // 1000
HOP = int(INPUT_PERIOD_MS * SAMPLES_PER_MS)  # samples per 20 ms input frame


def s3prl_lengths(num_samples: Tensor, stride: int) -> Tensor:
    """(B,) samples -> (B,) frames by s3prl's rule, ``floor((N - 1) / stride) + 1``."""
    return torch.div(num_samples - 1, stride, rounding_mode="floor") + 1


def stride_of(frame_period: float) -> int:
    """The integer stride (samples) of ``frame_period`` ms; ValueError if it has none."""
    samples = frame_period * SAMPLES_PER_MS
    if abs(samples - round(samples)) > 1e-6:
        low, high = math.floor(samples) / SAMPLES_PER_MS, math.ceil(samples) / SAMPLES_PER_MS
        raise ValueError(
            f"frame_period {frame_period:g} ms is {samples:g} samples; s3prl's length rule needs "
            f"a whole number of samples per frame: use a multiple of 1/{SAMPLES_PER_MS} ms, "
            f"e.g. {low:g} or {high:g}")
    return int(round(samples))


class OFAUpstream(nn.Module):
    """An s3prl upstream expert around an OFA student.

    Args:
        ckpt: the OFA model: a .pth (config.yaml beside it), a packed .zip or a zoo name
            (s3prl's ``path_or_url``).
        frame_period: output frame period in ms, a whole number of samples, within the
            model's trained range.
        lam: the paper's lambda instead (run at its period, see the module docstring).
        sample_rate: the audio's rate when known; anything but 16 kHz is refused.
        refresh: s3prl's re-download flag; packed models are verified by checksum instead.

    ``forward(list of (N_b,) waveforms) -> {"hidden_states": [(B, T', D)] * (layers + 1)}``.
    """

    def __init__(self, ckpt: Optional[str] = None, frame_period: Optional[float] = None,
                 lam: Optional[float] = None, sample_rate: int = SAMPLE_RATE,
                 refresh: bool = False) -> None:
        super().__init__()
        from espnet_ofa.frontend.ofa import _prepare_student, resolve_model
        from espnet_ofa.models.pretrained import load_student

        if isinstance(sample_rate, bool) or sample_rate != SAMPLE_RATE:
            raise ValueError(
                f"ofa_local: sample_rate={sample_rate!r}: OFA models read {SAMPLE_RATE} Hz "
                f"audio; resample the data to 16 kHz (e.g. `sox in.wav -r 16000 out.wav`)")
        if frame_period is None and lam is None:
            raise ValueError("ofa_local needs extra_conf {frame_period: P} (ms, e.g. 40) or "
                             "{lam: L}: s3prl needs a fixed frame rate")
        try:
            student = load_student(resolve_model(ckpt))
        except ValueError as err:  # CheckpointError, ZooError: the message has the fix
            raise type(err)(f"ofa_local path_or_url={ckpt!r}: {err}") from None
        rate = student.check_rate(Rate(frame_period=frame_period, lam=lam))
        if rate.lam is not None:
            nominal = lam_to_period(rate.lam)
            if not math.isfinite(nominal):
                raise ValueError(f"ofa_local: lam={rate.lam:g} has no finite frame period; "
                                 "s3prl needs one: use lam < 2 or frame_period")
            period = round(nominal * SAMPLES_PER_MS) / SAMPLES_PER_MS
            student.check_rate(Rate(frame_period=period))
            logger.info("ofa_local: lam=%g runs at %g ms (lam_to_period, whole samples): "
                        "s3prl needs a fixed stride", rate.lam, period)
        else:
            period = rate.frame_period
        self.frame_period = float(period)
        self.stride = stride_of(self.frame_period)
        self.student = _prepare_student(student, -1)
        self.receptive_field = student.config.receptive_field

    def get_downsample_rates(self, key: str) -> int:
        """Samples per output frame, for every key (s3prl's API)."""
        return self.stride

    def train(self, mode: bool = True) -> "OFAUpstream":
        super().train(mode)
        if not any(p.requires_grad for p in self.student.parameters()):
            # Frozen (e.g. ESPnet's freeze_param): a fixed feature extractor, no dropout.
            self.student.eval()
        return self

    def forward(self, wavs: List[Tensor]) -> Dict[str, List[Tensor]]:
        """List of (N_b,) 16 kHz waveforms -> every hidden state, (B, max count, D) each.

        Utterance b has exactly ``floor((N_b - 1) / stride) + 1`` valid frames (zero after).
        """
        if len(wavs) == 0:
            raise ValueError("ofa_local got an empty list of waveforms; pass at least one "
                             "(N,) 16 kHz waveform")
        lengths = torch.tensor([len(w) for w in wavs], device=wavs[0].device)
        counts = s3prl_lengths(lengths, self.stride)
        # Samples the front needs for `counts` frames; shorter utterances get zeros appended
        # (never one under the receptive field: the student's check names that).
        needed = (counts - 1) * HOP + self.receptive_field
        run_lengths = torch.where(lengths >= self.receptive_field,
                                  torch.maximum(lengths, needed), lengths)
        batch = pad_sequence(list(wavs), batch_first=True)
        extra = int(run_lengths.max()) - batch.shape[1]
        if extra > 0:
            batch = nn.functional.pad(batch, (0, extra))
        out = self.student(batch, run_lengths, frame_period=self.frame_period,
                           output_lengths=counts)
        valid = (torch.arange(out.hidden[0].shape[1], device=counts.device)[None, :]
                 < counts[:, None])[..., None]
        return {"hidden_states": [h.masked_fill(~valid, 0.0) for h in out.hidden]}


def ofa_local(ckpt: Optional[str] = None, *args, **kwargs) -> OFAUpstream:
    """s3prl hub entry: ``S3PRLUpstream("ofa_local", path_or_url=..., extra_conf=...)``."""
    if args:
        raise TypeError(f"ofa_local takes its options by name (extra_conf), got {args!r}")
    return OFAUpstream(ckpt, **kwargs)


def register_hub(hub) -> None:
    """Add `ofa_local` to s3prl's ``s3prl.hub`` module (what ``available_names`` lists)."""
    setattr(hub, UPSTREAM_NAME, ofa_local)
