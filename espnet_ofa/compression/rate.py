"""Rate control: turn the predictor's weights into the weights CIF runs on.

Two ways to ask for a rate, held by one `Rate`:

* ``lam`` (the paper's lambda, as in the authors' code): the weights are
  ``w1 * 1 + w2 * alpha_pred`` with ``w1 = relu(1 - lam)`` and
  ``w2 = relu(lam) - 2 relu(lam - 1)`` (`lam_weights`). On [0, 1] that is
  ``(1 - lam) + lam * alpha_pred``: lam = 0 fires on every input frame, lam = 1 follows the
  predictor. On (1, 2] it is ``(2 - lam) * alpha_pred``: beyond the predictor's own rate,
  down to nothing at lam = 2. So that every non-empty utterance still gives an output frame,
  an utterance whose weights sum below 1 is mixed with uniform weights until they sum to
  exactly 1 (one frame), the same rule as the frame-period mode's ``N >= 1``.
* ``frame_period`` in ms (ours): for each utterance the mixing weight is solved in closed
  form so that ``sum(alpha) = N = round(T * input_period / frame_period)``, i.e. exactly N
  output frames. Since ``sum((1 - l) + l * a) = T - l * (T - sum(a))`` is linear in l,
  ``l = (T - N) / (T - sum(a))``. Periods beyond the predictor's own rate (N < sum(a))
  scale ``alpha_pred`` down by ``N / sum(a)`` instead.

The weights are solved and returned in float64 whatever ``alpha_pred``'s dtype: CIF's fire
count is ``floor(sum(alpha))``, and weights rounded back to bfloat16 (8 bits) or even
float32 (on an hour of audio, 180,000 frames) would move that count by frames. Both modes
are differentiable in ``alpha_pred``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from espnet_ofa.compression.checks import (
    alpha_problem,
    check_alpha,
    check_alpha_layout,
    check_lengths,
    check_lengths_layout,
    check_not_meta,
    explain_alpha,
    explain_lengths,
    lengths_problem,
)
from espnet_ofa.constants import INPUT_PERIOD_MS  # the period of the frames CIF compresses

# The periods the port pretrains over (ms): the default range of pretraining and models.
DEFAULT_PERIOD_RANGE_MS = (INPUT_PERIOD_MS, 90.0)
# The range of the paper's lambda.
LAM_RANGE = (0.0, 2.0)
# The port samples lambda below this: at 2 the predictor's weights vanish.
LAM_SAMPLE_MAX = 2.0 - 1e-5
# The port's period -> lambda mapping ``lam = 9/7 (1 - 20/p)`` assumes that the predictor
# alone fires on average 2/9 times per input frame (90 ms at 20 ms input frames).
PORT_MEAN_ALPHA = 2.0 / 9.0


def _number(value, name: str, what: str) -> float:
    if torch.is_tensor(value) and value.dim() == 0 and value.dtype != torch.bool \
            and not value.is_complex():
        check_not_meta(value, name)
        value = value.item()  # a 0-d tensor, e.g. a period computed with torch
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rate:
    """One rate request: exactly one of ``frame_period`` (ms) and ``lam`` is set.

    Construction checks what holds for any model: exactly one field, a number, finite,
    ``frame_period > 0`` ms and ``lam`` in [0, 2]. What one model (or CIF) can serve is
    checked by `check_within`. Values are stored as floats.
    """

    frame_period: Optional[float] = None
    lam: Optional[float] = None

    def __post_init__(self) -> None:
        if self.frame_period is None and self.lam is None:
            raise ValueError(
                "no rate given: set frame_period (ms, e.g. 60) or lam (the paper's lambda "
                "in [0, 2])"
            )
        if self.frame_period is not None and self.lam is not None:
            raise ValueError(
                "set only one of frame_period and lam (the other null), got "
                f"frame_period={self.frame_period!r}, lam={self.lam!r}"
            )
        if self.frame_period is not None:
            value = _number(self.frame_period, "frame_period", "a number of milliseconds, e.g. 60")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"frame_period must be a finite number of milliseconds > 0, got {value}"
                )
            object.__setattr__(self, "frame_period", value)
        else:
            low, high = LAM_RANGE
            value = _number(self.lam, "lam", f"a number in [{low:g}, {high:g}]")
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"lam must be in [{low:g}, {high:g}] (the paper's lambda), got {value}"
                )
            object.__setattr__(self, "lam", value)

    def check_within(
        self,
        frame_period_range: Tuple[float, float],
        what: str = "the range this model was trained for",
    ) -> "Rate":
        """Raise ValueError if ``frame_period`` lies outside ``[low, high]`` ms; else self.

        ``lam`` passes: any lam in [0, 2] is a valid mix of the predictor's weights, and
        the period it gives depends on the predictor, not on a range in ms.
        """
        if self.frame_period is None:
            return self
        low, high = frame_period_range
        if not low <= self.frame_period <= high:
            raise ValueError(
                f"frame_period {self.frame_period:g} ms is outside {what}, "
                f"[{low:g}, {high:g}] ms; choose a period within it"
            )
        return self

    def __str__(self) -> str:
        return (f"frame_period={self.frame_period:g} ms" if self.frame_period is not None
                else f"lam={self.lam:g}")


def _checked_period(frame_period: float, input_period: float) -> float:
    """A period CIF can produce from ``input_period`` frames: at least one input frame."""
    rate = Rate(frame_period=frame_period)
    rate.check_within((input_period, math.inf),
                      f"the periods CIF reaches from {input_period:g} ms input frames")
    return rate.frame_period


def lam_weights(lam: float) -> Tuple[float, float]:
    """The paper's mix at ``lam``: (weight of uniform ones, weight of alpha_pred).

    ``(relu(1 - lam), relu(lam) - 2 relu(lam - 1))``: (1, 0) at 0, (0, 1) at 1,
    (0, 2 - lam) on (1, 2].
    """
    lam = Rate(lam=lam).lam
    return max(1.0 - lam, 0.0), max(lam, 0.0) - 2.0 * max(lam - 1.0, 0.0)


def lam_to_period(lam: float, mean_alpha: float = PORT_MEAN_ALPHA,
                  input_period: float = INPUT_PERIOD_MS) -> float:
    """The average period (ms) that ``lam`` gives a predictor averaging ``mean_alpha``.

    Exact only on average over data; with the port's 2/9 it inverts the port's mapping
    ``lam = 9/7 (1 - 20/p)`` on [0, 1] (20-90 ms) and continues it on (1, 2] as
    ``p = 90 / (2 - lam)`` (infinite at 2).
    """
    ones, pred = lam_weights(lam)
    mean = ones + pred * mean_alpha
    return input_period / mean if mean > 0 else math.inf


def period_to_lam(frame_period: float, mean_alpha: float = PORT_MEAN_ALPHA,
                  input_period: float = INPUT_PERIOD_MS) -> float:
    """The inverse of `lam_to_period`; the port's ``9/7 (1 - 20/p)`` for 20-90 ms."""
    period = _checked_period(frame_period, input_period)
    if not 0.0 < mean_alpha < 1.0:
        raise ValueError(f"mean_alpha must be in (0, 1), got {mean_alpha}")
    mean = input_period / period
    if mean >= mean_alpha:
        return (1.0 - mean) / (1.0 - mean_alpha)
    return 2.0 - mean / mean_alpha


def _valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def target_lengths(
    lengths: torch.Tensor, frame_period: float, input_period: float = INPUT_PERIOD_MS
) -> torch.Tensor:
    """(B,) output frames asked for by ``frame_period``: ``round(T * input_period / period)``,
    at least one for a non-empty utterance."""
    period = _checked_period(frame_period, input_period)
    wanted = torch.round(lengths.double() * input_period / period).long()
    return torch.where(lengths > 0, wanted.clamp_min(1), 0)


def _mix_with_ones(alpha: torch.Tensor, wanted: torch.Tensor,
                   num: torch.Tensor) -> torch.Tensor:
    """Mix (B, T) float64 weights with uniform ones so each row sums to ``wanted``.

    Needs ``sum(alpha) <= wanted <= num`` per row (num: valid frames); the mixing weight
    ``m = (num - wanted) / (num - sum(alpha))`` is the one root of a linear equation.
    Callers zero the padding afterwards.
    """
    gap = num - alpha.sum(dim=1)
    mix = torch.where(gap > 0, (num - wanted) / gap.clamp_min(1e-12), torch.zeros_like(gap))
    mix = mix.clamp(0.0, 1.0)[:, None]
    return (1.0 - mix) + mix * alpha


# What a predictor's weights may be: firing probabilities. Above 1 (e.g. logits passed by
# mistake) the lam mode would fire more often than once per input frame.
ALPHA_PRED_MAX = 1.0


def rate_alpha(
    alpha_pred: torch.Tensor,
    lengths: torch.Tensor,
    frame_period: Optional[float] = None,
    lam: Optional[float] = None,
    input_period: float = INPUT_PERIOD_MS,
    checked: bool = True,
) -> torch.Tensor:
    """Weights for `cif` at the rate asked for by exactly one of ``frame_period``/``lam``.

    Args:
        alpha_pred: (B, T) predictor output in [0, 1], any float dtype.
        lengths: (B,) valid frames.
        frame_period: output frame period in ms (>= ``input_period``).
        lam: the paper's lambda in [0, 2].
        input_period: frame period of ``alpha_pred``'s time axis in ms.
        checked: check the values of ``alpha_pred`` (finite, in [0, 1] on valid frames)
            and ``lengths`` (in [0, T]), at the cost of one host synchronisation. A caller
            whose values are valid by construction (a sigmoid predictor, lengths from the
            feature extractor) passes False: then no synchronisation at all. Types, dtypes
            and shapes are always checked (free).

    Returns:
        (B, T) float64 weights, zero on padding (see the module docstring for why float64).
        A non-empty utterance always gets at least one output frame.
    """
    rate = Rate(frame_period=frame_period, lam=lam)
    check_alpha_layout(alpha_pred, "alpha_pred")
    batch, max_len = alpha_pred.shape
    check_lengths_layout(lengths, batch)
    valid = _valid_mask(lengths, max_len)
    if checked and batch:
        if bool(lengths_problem(lengths, max_len)
                | alpha_problem(alpha_pred, valid, ALPHA_PRED_MAX)):
            explain_lengths(lengths, max_len)
            explain_alpha(alpha_pred, "alpha_pred", valid, ALPHA_PRED_MAX,
                          "; alpha_pred holds the predictor's firing probabilities: apply "
                          "torch.sigmoid to logits first")
    pred = alpha_pred.double().masked_fill(~valid, 0.0)
    num = lengths.double()

    if rate.lam is not None:
        ones, weight = lam_weights(rate.lam)
        alpha = (ones + weight * pred).masked_fill(~valid, 0.0)
        # At least one frame: an utterance whose weights sum below 1 is mixed up to 1.
        too_few = (alpha.sum(dim=1) < 1.0) & (lengths > 0)
        alpha = torch.where(too_few[:, None], _mix_with_ones(alpha, num.clamp_max(1.0), num),
                            alpha)
        return alpha.masked_fill(~valid, 0.0)

    wanted = target_lengths(lengths, rate.frame_period, input_period).double()
    return _summing_to(pred, valid, num, wanted)


def _summing_to(pred: torch.Tensor, valid: torch.Tensor, num: torch.Tensor,
                wanted: torch.Tensor) -> torch.Tensor:
    """(B, T) float64 weights from ``pred`` whose valid part sums to ``wanted`` per row."""
    pred_sum = pred.sum(dim=1)
    # Mixing with uniform weights reaches any sum in [sum(a), T]; below, scale down.
    mixed = _mix_with_ones(pred, wanted, num)
    scaled = pred * (wanted / pred_sum.clamp_min(1e-12))[:, None]
    alpha = torch.where((wanted < pred_sum)[:, None], scaled, mixed)
    return alpha.masked_fill(~valid, 0.0)


def alpha_for_lengths(alpha_pred: torch.Tensor, lengths: torch.Tensor,
                      output_lengths: torch.Tensor) -> torch.Tensor:
    """Weights for `cif` that give each utterance exactly ``output_lengths`` frames.

    What `rate_alpha` does for ``frame_period``, with the counts given instead of derived
    from a period: for callers whose length rule is not ``round(T * 20 / period)`` (the
    s3prl upstream follows s3prl's).

    Args:
        alpha_pred: (B, T) predictor output in [0, 1].
        lengths: (B,) valid frames.
        output_lengths: (B,) integers, each in [1, lengths] (0 for an empty utterance).

    Returns:
        (B, T) float64 weights, zero on padding.
    """
    check_alpha(alpha_pred, "alpha_pred")
    batch, max_len = alpha_pred.shape
    check_lengths(lengths, batch, max_len)
    if (not torch.is_tensor(output_lengths) or output_lengths.shape != lengths.shape
            or output_lengths.is_floating_point() or output_lengths.is_complex()):
        raise ValueError(f"output_lengths must be a (batch={batch},) integer tensor, got "
                         f"{getattr(output_lengths, 'dtype', type(output_lengths).__name__)} "
                         f"{tuple(getattr(output_lengths, 'shape', ()))}")
    output_lengths = output_lengths.to(lengths.device)
    if bool(((output_lengths > lengths) | (output_lengths < 0)
             | ((output_lengths == 0) & (lengths > 0))).any()):
        raise ValueError(
            f"output_lengths {output_lengths.tolist()} must be in [1, frames] for the input "
            f"frames {lengths.tolist()}: CIF makes at most one output frame per input frame")
    valid = _valid_mask(lengths, max_len)
    pred = alpha_pred.double().masked_fill(~valid, 0.0)
    return _summing_to(pred, valid, lengths.double(), output_lengths.double())


def fixed_rate_alpha(
    lengths: torch.Tensor,
    max_len: int,
    frame_period: float,
    input_period: float = INPUT_PERIOD_MS,
    dtype: torch.dtype = torch.float64,
    checked: bool = True,
) -> torch.Tensor:
    """(B, T) constant weights ``input_period / frame_period``: the fixed-rate baseline.

    CIF with these weights is average pooling over windows of ``frame_period /
    input_period`` frames, fractional windows included; for integer multiples of the
    input period it equals ``torch.nn.AvgPool1d``. float64 by default, for the reason
    given in the module docstring. ``checked``: as in `rate_alpha` (False: no host
    synchronisation; the lengths' type and shape are still checked).
    """
    period = _checked_period(frame_period, input_period)
    batch = lengths.shape[0] if torch.is_tensor(lengths) else 0
    if checked:
        check_lengths(lengths, batch, max_len)
    else:
        check_lengths_layout(lengths, batch)
    valid = _valid_mask(lengths, max_len)
    return valid.to(dtype) * (input_period / period)


# Sampler modes -> (default low, default high). "frame_period", "log_frame_period" and
# "lam_from_period" take their range in ms, the others in lambda.
SAMPLER_MODES = {
    "frame_period": DEFAULT_PERIOD_RANGE_MS,
    "log_frame_period": DEFAULT_PERIOD_RANGE_MS,
    "lam": (0.0, 1.0),
    "lam_from_period": DEFAULT_PERIOD_RANGE_MS,
    "lam_beyond": (1.0, 2.0),
    "lam_both": (0.0, 2.0),
}
# The modes that draw the period itself (served exactly by `rate_alpha`).
PERIOD_MODES = ("frame_period", "log_frame_period")


class RateSampler:
    """Draws the rate of each pretraining batch, reproducibly from ``seed`` (and the step).

    Modes (``low``/``high`` default to the usual range of each):

    * ``"frame_period"`` (ours): a period ``p ~ U(low, high)`` ms, served exactly per
      utterance by `rate_alpha`. Default 20-90 ms.
    * ``"log_frame_period"``: ``log p ~ U(log low, log high)``, served the same way: the
      same share of draws in each ratio of periods (20-30 ms as often as 60-90 ms), so
      more of them near the short end than ``"frame_period"`` gives. Default 20-90 ms.
    * ``"lam"`` (the paper's): ``lam = low + (high - low) * Beta(beta, beta)`` within
      [0, 1]; ``beta = 1`` is uniform. Default [0, 1].
    * ``"lam_from_period"`` (the port's): ``p ~ U(low, high)`` ms mapped to
      ``lam = 9/7 (1 - 20/p)`` (`period_to_lam`), right only on average over data.
    * ``"lam_beyond"``: lam in (1, 2] as ``lam`` draws it, below ``2 - 1e-5``
      (`LAM_SAMPLE_MAX`), where the weights would vanish. Default (1, 2).
    * ``"lam_both"``: with probability ``beyond_prob`` a draw from (1, high) as in
      ``lam_beyond``, else from [low, 1] as in ``lam``. Default [0, 2).

    Args:
        mode, low, high: see above.
        seed: seed of the sampler's own generator (independent of torch's global RNG).
        beta: the Beta distribution's parameter ``a`` (``Beta(a, a)``) in the lam modes.
        beyond_prob: share of draws above 1 in ``"lam_both"``.
    """

    def __init__(self, mode: str = "frame_period", low: Optional[float] = None,
                 high: Optional[float] = None, seed: int = 0, beta: float = 1.0,
                 beyond_prob: float = 0.5) -> None:
        if mode not in SAMPLER_MODES:
            raise ValueError(f"mode must be one of {', '.join(SAMPLER_MODES)}, got {mode!r}")
        default_low, default_high = SAMPLER_MODES[mode]
        low = default_low if low is None else low
        high = default_high if high is None else high
        if mode in (*PERIOD_MODES, "lam_from_period"):
            low = _checked_period(low, INPUT_PERIOD_MS)
            high = _checked_period(high, INPUT_PERIOD_MS)
        else:
            low, high = Rate(lam=low).lam, Rate(lam=high).lam
            bounds = {"lam": (0.0, 1.0, 0.0, 1.0), "lam_beyond": (1.0, 2.0, 1.0, 2.0),
                      "lam_both": (0.0, 1.0, 1.0, 2.0)}[mode]
            if not (bounds[0] <= low <= bounds[1] and bounds[2] <= high <= bounds[3]):
                raise ValueError(
                    f"rate_conf mode {mode!r} needs low in [{bounds[0]:g}, {bounds[1]:g}] and "
                    f"high in [{bounds[2]:g}, {bounds[3]:g}], got low={low:g}, high={high:g}; "
                    "use mode lam for lam in [0, 1], lam_beyond for (1, 2], lam_both for both"
                )
            high = min(high, LAM_SAMPLE_MAX)
        if low > high:
            raise ValueError(f"low must be <= high, got low={low:g}, high={high:g}")
        beta = _number(beta, "beta", "a positive number (the Beta(a, a) parameter)")
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a positive finite number, got {beta}")
        beyond_prob = _number(beyond_prob, "beyond_prob", "a probability in [0, 1]")
        if not 0.0 <= beyond_prob <= 1.0:
            raise ValueError(f"beyond_prob must be in [0, 1], got {beyond_prob}")
        self.mode, self.low, self.high = mode, float(low), float(high)
        self.beta, self.beyond_prob = beta, beyond_prob
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        # numpy's generator: it draws Beta variates from a generator of its own (torch's
        # Beta sampler takes none), and seeds from (seed, step) without collisions.
        self.generator = np.random.default_rng(self.seed)

    def _draw(self, generator: np.random.Generator) -> Rate:
        def uniform() -> float:
            return float(generator.random())

        def beta_on(low: float, high: float) -> float:
            return low + float(generator.beta(self.beta, self.beta)) * (high - low)

        if self.mode == "frame_period":
            return Rate(frame_period=self.low + uniform() * (self.high - self.low))
        if self.mode == "log_frame_period":
            return Rate(frame_period=self.low * (self.high / self.low) ** uniform())
        if self.mode == "lam_from_period":
            return Rate(lam=period_to_lam(self.low + uniform() * (self.high - self.low)))
        if self.mode == "lam_both":
            beyond = uniform() < self.beyond_prob
            return Rate(lam=beta_on(1.0, self.high) if beyond else beta_on(self.low, 1.0))
        return Rate(lam=beta_on(self.low, self.high))

    def sample(self, step: Optional[int] = None) -> Rate:
        """Draw the next rate; with ``step``, the rate of that training step instead.

        Drawing by step makes the rate a function of (seed, step) alone, so a resumed
        run that restores its step counter sees the same rates as an uninterrupted one.
        """
        generator = self.generator
        if step is not None:
            generator = np.random.default_rng([self.seed, int(step)])
        return self._draw(generator)

    @property
    def lam_range(self) -> Optional[Tuple[float, float]]:
        """(low, high) lambda drawn; None in the modes that draw periods (`PERIOD_MODES`)."""
        if self.mode in PERIOD_MODES:
            return None
        if self.mode == "lam_from_period":
            return period_to_lam(self.low), period_to_lam(self.high)
        return self.low, self.high

    @property
    def frame_period_range(self) -> Tuple[float, float]:
        """(low, high) ms this sampler trains a model for, before its predictor is measured:
        `period_range` with the port's assumed mean alpha (what a student is built with)."""
        return self.period_range()

    def period_range(self, mean_alpha: Optional[float] = None) -> Tuple[float, float]:
        """(low, high) ms this sampler trains a model for: what its checkpoint records.

        The periods themselves in the `PERIOD_MODES`. Lambda has no period of its own:
        in the lam modes the periods are those the lambda range gives a predictor whose
        weights average ``mean_alpha`` per input frame (`lam_to_period`). ``mean_alpha``
        is measured at the end of pretraining (`espnet_ofa.models.trained_range`); None
        assumes the port's 2/9, under which ``"lam_from_period"`` trains exactly its
        periods, lam [0, 1] gives 20-90 ms and lam_beyond's (1, 2 - 1e-5) 90 ms to 9e6 ms.
        """
        if self.mode in PERIOD_MODES or (self.mode == "lam_from_period" and mean_alpha is None):
            return self.low, self.high
        if mean_alpha is None:
            mean_alpha = PORT_MEAN_ALPHA
        mean_alpha = _number(mean_alpha, "mean_alpha", "the predictor's mean weight in (0, 1]")
        if not 0.0 < mean_alpha <= 1.0:
            raise ValueError(
                f"mean_alpha must be in (0, 1] (the predictor's mean weight per input frame), "
                f"got {mean_alpha}; a predictor that never fires serves no period")
        low, high = self.lam_range
        return lam_to_period(low, mean_alpha), lam_to_period(high, mean_alpha)

    def valid_rate(self) -> Rate:
        """The fixed rate of validation batches (comparable across epochs): mid-range (the
        median period of the draws in the `PERIOD_MODES`)."""
        if self.mode == "frame_period":
            return Rate(frame_period=(self.low + self.high) / 2)
        if self.mode == "log_frame_period":
            return Rate(frame_period=math.sqrt(self.low * self.high))
        low, high = self.lam_range
        return Rate(lam=(low + high) / 2)

    def state_dict(self) -> dict:
        return {"generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.generator.bit_generator.state = state["generator"]

