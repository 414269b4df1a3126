"""Rate control: turn the predictor's weights into the weights CIF runs on.

Two ways to ask for a rate:

* ``lam`` (the paper's lambda): ``alpha = (1 - lam) + lam * alpha_pred`` for lam in [0, 1];
  lam = 0 fires on every input frame, lam = 1 follows the predictor. For lam in (1, 2]
  ``alpha = alpha_pred / lam``: beyond the predictor's own rate, up to half of it.
* ``frame_period`` in ms (ours): for each utterance the mixing weight is solved in closed
  form so that ``sum(alpha) = N = round(T * input_period / frame_period)``, i.e. exactly N
  output frames. Since ``sum((1 - l) + l * a) = T - l * (T - sum(a))`` is linear in l,
  ``l = (T - N) / (T - sum(a))``. Periods beyond the predictor's own rate (N < sum(a))
  scale ``alpha_pred`` down by ``N / sum(a)`` instead.

Both are differentiable in ``alpha_pred``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from espnet_ofa.compression.checks import (
    check_alpha,
    check_frame_period,
    check_lam,
    check_lengths,
)

INPUT_PERIOD_MS = 20.0


def _valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def target_lengths(
    lengths: torch.Tensor, frame_period: float, input_period: float = INPUT_PERIOD_MS
) -> torch.Tensor:
    """(B,) output frames asked for by ``frame_period``: ``round(T * input_period / period)``,
    at least one for a non-empty utterance."""
    check_frame_period(frame_period, input_period)
    wanted = torch.round(lengths.double() * input_period / frame_period).long()
    return torch.where(lengths > 0, wanted.clamp_min(1), 0)


def rate_alpha(
    alpha_pred: torch.Tensor,
    lengths: torch.Tensor,
    frame_period: Optional[float] = None,
    lam: Optional[float] = None,
    input_period: float = INPUT_PERIOD_MS,
) -> torch.Tensor:
    """Weights for `cif` at the rate asked for by exactly one of ``frame_period``/``lam``.

    Args:
        alpha_pred: (B, T) predictor output in [0, 1].
        lengths: (B,) valid frames.
        frame_period: output frame period in ms (>= ``input_period``).
        lam: the paper's lambda in [0, 2].
        input_period: frame period of ``alpha_pred``'s time axis in ms.

    Returns:
        (B, T) weights, zero on padding.
    """
    if (frame_period is None) == (lam is None):
        raise ValueError("give exactly one of frame_period (ms) or lam; got "
                         f"frame_period={frame_period}, lam={lam}")
    check_alpha(alpha_pred, "alpha_pred")
    batch, max_len = alpha_pred.shape
    check_lengths(lengths, batch, max_len)
    valid = _valid_mask(lengths, max_len)
    alpha_pred = alpha_pred.masked_fill(~valid, 0.0)

    if lam is not None:
        check_lam(lam)
        if lam <= 1.0:
            alpha = (1.0 - lam) + lam * alpha_pred
        else:
            alpha = alpha_pred / lam
        return alpha.masked_fill(~valid, 0.0)

    wanted = target_lengths(lengths, frame_period, input_period).to(alpha_pred.dtype)
    num = lengths.to(alpha_pred.dtype)
    pred_sum = alpha_pred.sum(dim=1)
    # Mixing with uniform weights reaches any sum in [sum(a), T].
    gap = num - pred_sum
    mix = torch.where(gap > 0, (num - wanted) / gap.clamp_min(1e-6), torch.zeros_like(gap))
    mix = mix.clamp(0.0, 1.0)[:, None]
    mixed = (1.0 - mix) + mix * alpha_pred
    scaled = alpha_pred * (wanted / pred_sum.clamp_min(1e-6))[:, None]
    alpha = torch.where((wanted < pred_sum)[:, None], scaled, mixed)
    return alpha.masked_fill(~valid, 0.0)


def fixed_rate_alpha(
    lengths: torch.Tensor,
    max_len: int,
    frame_period: float,
    input_period: float = INPUT_PERIOD_MS,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B, T) constant weights ``input_period / frame_period``: the fixed-rate baseline.

    CIF with these weights is average pooling over windows of ``frame_period /
    input_period`` frames, fractional windows included; for integer multiples of the
    input period it equals ``torch.nn.AvgPool1d``.
    """
    check_frame_period(frame_period, input_period)
    check_lengths(lengths, lengths.shape[0] if torch.is_tensor(lengths) else 0, max_len)
    valid = _valid_mask(lengths, max_len)
    return valid.to(dtype) * (input_period / frame_period)


@dataclass(frozen=True)
class Rate:
    """One rate request: exactly one field is set."""

    frame_period: Optional[float] = None
    lam: Optional[float] = None


class RateSampler:
    """Draws the rate of each pretraining batch, reproducibly from ``seed``.

    Args:
        mode: ``"frame_period"`` (uniform over [low, high] ms) or ``"lam"`` (uniform over
            [low, high], within [0, 2]).
        low, high: range of the uniform distribution.
        seed: seed of the sampler's own generator (independent of torch's global RNG).
    """

    def __init__(self, mode: str = "frame_period", low: float = 20.0, high: float = 90.0,
                 seed: int = 0) -> None:
        if mode == "frame_period":
            check_frame_period(low, INPUT_PERIOD_MS)
            check_frame_period(high, INPUT_PERIOD_MS)
        elif mode == "lam":
            check_lam(low)
            check_lam(high)
        else:
            raise ValueError(f"mode must be 'frame_period' or 'lam', got {mode!r}")
        if low > high:
            raise ValueError(f"low must be <= high, got low={low}, high={high}")
        self.mode, self.low, self.high = mode, float(low), float(high)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, step: Optional[int] = None) -> Rate:
        """Draw the next rate; with ``step``, the rate of that training step instead.

        Drawing by step makes the rate a function of (seed, step) alone, so a resumed
        run that restores its step counter sees the same rates as an uninterrupted one.
        """
        generator = self.generator
        if step is not None:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + step) % 2**63)
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        value = self.low + u * (self.high - self.low)
        return Rate(frame_period=value) if self.mode == "frame_period" else Rate(lam=value)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
