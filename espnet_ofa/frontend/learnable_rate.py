"""Adaptive compressing-rate learning: the frame period as a trained parameter.

The period ``p`` (ms) is parametrised as ``p = low + (high - low) * sigmoid(gain * raw)``,
so it never leaves ``[low, high]`` and an optimizer can push it anywhere inside.

Why not plain backpropagation: the frame count ``N = round(T * 20 / p)`` is piecewise
constant in ``p``, and CIF's output count ``floor(sum(alpha))`` is too, so autograd through
the CIF weights sees only how the *content* of a fixed number of frames shifts, never what
one more or one less frame does to the task. In a controlled experiment (see
``docs/frontend.md``) that pathwise gradient moved the rate the wrong way. So its gradient
is estimated from loss *values* instead, by an antithetic central difference (SPSA in one
dimension):

    p+ = p * (1 + delta),  p- = p * (1 - delta)
    dL/dp ~ (L(p+) - L(p-)) / (p+ - p-)

evaluated on the same batch with the same random numbers (dropout, SpecAug) so that the
difference measures the rate and not the noise. The downstream model trains on the mean
``(L(p+) + L(p-)) / 2`` (a small rate jitter around ``p``). The compute penalty
``cost * 20 / p`` (relative Transformer frames against 20 ms) adds its exact slope
``-cost * 20 / p**2``.

The total slope reaches ``raw`` through a surrogate term whose value is zero. Its gradient
is the slope in ``raw``'s units, ``slope * dp/draw``, divided by its running RMS and scaled
to ``GRAD_SCALE``: task losses are sums over tokens and frames of arbitrary scale, and an
unnormalised rate gradient (often > 100) would dominate the global gradient norm that
ESPnet clips (``grad_clip: 5``), shrinking every other gradient. Adam-type optimizers only
see the gradient's sign and consistency, which the normalisation keeps.

CTC feasibility: CTC can only emit a target from at least ``ctc_min_input_lengths`` frames
(its length plus a blank between equal neighbours). With fewer, the loss is infinite, and
ESPnet's CTC (``zero_infinity=True``) counts it as 0, so an utterance that becomes
infeasible at the longer probe would make that probe look *better*. The ESPnet hooks
therefore compare the probes with the CTC term of such an utterance replaced by a finite
penalty that grows with its frame deficit (`infeasible_ctc_value`): the signal "this
period is too long for this utterance" is kept, and pushes the rate back to feasible
periods (``combine(..., compared=...)``); see `espnet_ofa.frontend.espnet_hooks`.

The jitter control (``learn=False``): the same two probes and the same training on their
mean, at a period that is never learnt. It separates what the learnt rate gains from the
period it found from what the +-``delta`` jitter of its probes gains on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import nn

from espnet_ofa.compression import INPUT_PERIOD_MS

# Relative step of the central difference. Large enough that p+ and p- give different frame
# counts on short utterances (1 s = 50 frames: 54 vs 66 ms gives 19 vs 15 frames), small
# enough that the difference still measures the local slope.
DEFAULT_DELTA = 0.1
# Scale between the raw parameter and the sigmoid's argument. Adam moves a parameter by
# about its learning rate per step whatever the gradient's size; with gain 10, a typical
# ESPnet learning rate of 1e-3 moves the sigmoid's argument by 0.01 per step, so the period
# can cross its range in a few hundred to a few thousand steps instead of tens of thousands.
DEFAULT_GAIN = 10.0
# Typical size of the rate's gradient after normalisation: small against the other
# parameters' gradient norm (see the module docstring), any size is the same to Adam.
GRAD_SCALE = 0.1
# Memory of the running RMS of the rate's raw gradient, and the clamp of its ratio to it.
RMS_DECAY = 0.99
RMS_CLAMP = 3.0


@dataclass
class RateStep:
    """What one antithetic rate step measured (for logging).

    Attributes:
        period: the rate's period before the step, ms.
        plus, minus: the two probed periods, ms.
        loss_plus, loss_minus: the downstream loss at each (detached).
        slope: the estimated d(loss + cost)/dp, per ms (negative: longer periods are better).
        grad: the gradient given to ``raw`` (normalised).
        cost: the compute penalty's value.
    """

    period: float
    plus: float
    minus: float
    loss_plus: torch.Tensor
    loss_minus: torch.Tensor
    slope: torch.Tensor
    grad: torch.Tensor
    cost: torch.Tensor


class RngSnapshot:
    """The CPU and current-CUDA-device RNG states, to replay the same random numbers.

    Replaying them for the second probe ("common random numbers") makes dropout/SpecAug
    draw alike in both passes where the shapes allow, lowering the difference's variance.
    """

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda_device = None
        self.cuda = None
        if device is not None and device.type == "cuda":
            self.cuda_device = device
            self.cuda = torch.cuda.get_rng_state(device)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.cuda_device)


def ctc_min_input_lengths(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Fewest CTC input frames that can emit each target.

    A CTC path emits each label at least once and needs a blank between two equal
    neighbouring labels, so the minimum is ``length + number of adjacent repeats``; with
    fewer frames the loss is infinite (or 0 with ``zero_infinity``).

    Args:
        targets: (B, S) padded label ids, or (sum(target_lengths),) concatenated ones (both
            forms `torch.nn.CTCLoss` takes).
        target_lengths: (B,) labels per utterance.

    Returns:
        (B,) long tensor of minimum input lengths.
    """
    target_lengths = target_lengths.long()
    if targets.dim() == 2:
        pos = torch.arange(1, targets.shape[1], device=targets.device)
        within = pos[None, :] < target_lengths[:, None]
        repeats = ((targets[:, 1:] == targets[:, :-1]) & within).sum(1)
        return target_lengths + repeats
    if targets.dim() != 1 or targets.numel() != int(target_lengths.sum()):
        raise ValueError(
            f"CTC targets must be (B, S) padded or 1-D of length sum(target_lengths)="
            f"{int(target_lengths.sum())}; got shape {tuple(targets.shape)}"
        )
    utt = torch.repeat_interleave(torch.arange(len(target_lengths), device=targets.device),
                                  target_lengths)
    repeat = (targets[1:] == targets[:-1]) & (utt[1:] == utt[:-1])
    repeats = torch.zeros_like(target_lengths).index_add_(0, utt[1:], repeat.long())
    return target_lengths + repeats


def check_rate_range(rate_range: Sequence[float],
                     limits: Optional[Tuple[float, float]] = None) -> Tuple[float, float]:
    """``rate_range`` as ``(low, high)`` ms if it is an interval inside ``limits`` (the
    periods the model was trained for; default: any from the input period up); otherwise
    ValueError saying what to change."""
    if len(rate_range) != 2:
        raise ValueError(f"rate_range must be [low, high] in ms, got {rate_range!r}")
    low, high = (float(v) for v in rate_range)
    lowest, highest = limits if limits else (INPUT_PERIOD_MS, math.inf)
    if not (max(lowest, INPUT_PERIOD_MS) <= low < high <= highest and math.isfinite(high)):
        raise ValueError(
            f"rate_range [{low:g}, {high:g}] ms must be an interval (low < high) inside the "
            f"range the OFA model was trained for, within the periods it can run at: "
            f"[{max(lowest, INPUT_PERIOD_MS):g}, {highest:g}] ms; narrow rate_range"
        )
    return low, high


def infeasible_ctc_value(reference: torch.Tensor, need: torch.Tensor, deficit: torch.Tensor,
                         vocab_size: int) -> torch.Tensor:
    """The value compared in place of a CTC loss that is infinite (too few frames).

    ``max(reference, need * log V) + deficit * log V``: at the feasibility limit a CTC
    model whose outputs are uniform over the ``V`` labels has one path, of loss
    ``need * log V`` (it knows nothing of the utterance); each missing frame adds what one
    more uniform frame costs. Finite, at least what the utterance costs where it is
    feasible, and growing with the deficit: a period that leaves more frames missing
    compares worse, and losing an utterance costs as much as not knowing it.

    Args:
        reference: (B,) the same utterance's loss where it is feasible (the other probe), or
            0 where it is feasible at neither.
        need: (B,) `ctc_min_input_lengths` of the targets.
        deficit: (B,) frames missing: ``max(0, need - input_lengths)``.
        vocab_size: the CTC output size ``V`` (blank included).
    """
    log_v = math.log(max(int(vocab_size), 2))
    floor = need.to(reference.dtype) * log_v
    return torch.maximum(reference, floor) + deficit.to(reference.dtype) * log_v


def relative_compute(period: torch.Tensor | float) -> torch.Tensor | float:
    """Transformer frames relative to 20 ms frames: ``20 / period`` (1 at 20 ms)."""
    return INPUT_PERIOD_MS / period


class LearnableRate(nn.Module):
    """A frame period in ``[low, high]`` ms trained with the downstream loss.

    Args:
        init_period: starting period, ms (clamped just inside ``[low, high]``).
        low, high: the range the period may take, ms.
        cost: weight of the compute penalty ``cost * 20 / p``.
        limits: the periods the model can run at (the probes ``p * (1 +- delta)`` are
            clamped into them); defaults to ``(low, high)``.
        delta: relative step of the central difference.
        gain: scale of the raw parameter (see ``DEFAULT_GAIN``).
        learn: False for the jitter control (see the module docstring): the probes and
            the mean objective run, the period stays at ``init_period``.

    State: ``raw`` (a 0-dim parameter) is what is learnt; the buffers ``grad_sq`` and
    ``num_steps`` hold the running RMS of its gradient (saved too, so a resumed run goes on
    with the same normalisation).
    """

    def __init__(
        self,
        init_period: float,
        low: float,
        high: float,
        cost: float = 0.0,
        limits: Optional[Tuple[float, float]] = None,
        delta: float = DEFAULT_DELTA,
        gain: float = DEFAULT_GAIN,
        learn: bool = True,
    ) -> None:
        super().__init__()
        self.learn = bool(learn)
        self.low, self.high = check_rate_range((low, high), limits)
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"rate_cost must be a finite number >= 0, got {cost}")
        if not 0.0 < delta < 0.5:
            raise ValueError(f"delta must be in (0, 0.5), got {delta}")
        self.cost = float(cost)
        self.limits = (float(limits[0]), float(limits[1])) if limits else (self.low, self.high)
        self.delta = float(delta)
        self.gain = float(gain)
        self.raw = nn.Parameter(torch.zeros(()), requires_grad=self.learn)
        self.register_buffer("grad_sq", torch.zeros(()))
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        self.init_period = float(init_period)
        self.reset(init_period)

    def extra_repr(self) -> str:
        return (f"period={self.value:.2f} ms, range=[{self.low:g}, {self.high:g}], "
                f"cost={self.cost:g}, delta={self.delta:g}, gain={self.gain:g}"
                + ("" if self.learn else ", fixed (jitter control)"))

    @torch.no_grad()
    def reset(self, period: Optional[float] = None) -> None:
        """Set the period to ``period`` ms (default: the initial one)."""
        period = self.init_period if period is None else float(period)
        span = self.high - self.low
        # Keep strictly inside: the sigmoid reaches the bounds only at +-infinity.
        frac = min(max((period - self.low) / span, 1e-3), 1.0 - 1e-3)
        self.raw.fill_(math.log(frac / (1.0 - frac)) / self.gain)
        self.grad_sq.zero_()
        self.num_steps.zero_()

    def period(self) -> torch.Tensor:
        """0-dim period in ms, differentiable in ``raw``."""
        return self.low + (self.high - self.low) * torch.sigmoid(self.gain * self.raw)

    @property
    def value(self) -> float:
        """The period in ms as a float."""
        return float(self.period().detach())

    def probes(self) -> Tuple[float, float]:
        """``(p+, p-)``: the central difference's periods, clamped into ``limits``."""
        p = self.value
        plus = min(p * (1.0 + self.delta), self.limits[1])
        minus = max(p * (1.0 - self.delta), self.limits[0])
        if plus - minus < 1e-6:  # degenerate limits; never with a range of positive width
            raise ValueError(f"cannot probe around {p} ms within {self.limits}")
        return plus, minus

    def cost_term(self) -> torch.Tensor:
        """0-dim ``cost * 20 / p``, differentiable in ``raw``."""
        return self.cost * relative_compute(self.period())

    def _period_per_raw(self) -> float:
        """dp/draw at the current value."""
        frac = torch.sigmoid(self.gain * self.raw.detach()).item()
        return (self.high - self.low) * self.gain * frac * (1.0 - frac)

    @torch.no_grad()
    def _normalise(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad`` over its running RMS (bias-corrected), clamped, times GRAD_SCALE."""
        self.num_steps += 1
        self.grad_sq.mul_(RMS_DECAY).add_((1.0 - RMS_DECAY) * grad.square())
        mean_sq = self.grad_sq / (1.0 - RMS_DECAY ** self.num_steps.double()).float()
        ratio = grad / mean_sq.sqrt().clamp_min(1e-12)
        return GRAD_SCALE * ratio.clamp(-RMS_CLAMP, RMS_CLAMP)

    def combine(
        self,
        loss_plus: torch.Tensor,
        loss_minus: torch.Tensor,
        plus: float,
        minus: float,
        compared: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, RateStep]:
        """The training objective from the losses at the two probes.

        Args:
            loss_plus, loss_minus: downstream losses (any broadcastable shape, e.g. ESPnet's
                (1,)) at ``plus`` and ``minus`` ms, with their graphs.
            plus, minus: the probed periods (from `probes`).
            compared: the values whose difference estimates the task's slope, if not the
                losses themselves: e.g. the losses without utterances that CTC cannot emit
                at one of the probes (see the module docstring). The model still trains on
                the losses.

        Returns:
            ``(objective, step)``: ``objective = (L+ + L-) / 2 + cost * 20 / p`` in value; its
            gradient trains the model on both probes and gives ``raw`` the normalised
            estimate of ``d(loss + cost)/draw`` (see the module docstring).
        """
        period = float(self.period().detach())
        value_plus, value_minus = compared if compared is not None else (loss_plus, loss_minus)
        task_slope = (value_plus.detach().sum() - value_minus.detach().sum()) / (plus - minus)
        slope = task_slope - self.cost * relative_compute(period) / period
        cost = self.cost_term().detach()
        if not self.learn:  # the jitter control: the probes' mean, no step of the period
            objective = 0.5 * (loss_plus + loss_minus) + cost
            return objective, RateStep(period=period, plus=plus, minus=minus,
                                       loss_plus=loss_plus.detach(),
                                       loss_minus=loss_minus.detach(), slope=slope,
                                       grad=torch.zeros(()), cost=cost)
        grad = self._normalise(slope * self._period_per_raw())
        surrogate = grad * (self.raw - self.raw.detach())  # value 0, d/draw = grad
        objective = 0.5 * (loss_plus + loss_minus) + cost + surrogate
        step = RateStep(
            period=period, plus=plus, minus=minus,
            loss_plus=loss_plus.detach(), loss_minus=loss_minus.detach(),
            slope=slope, grad=grad, cost=cost,
        )
        return objective, step

    def objective(
        self,
        loss_at: Callable[[float], torch.Tensor],
        device: Optional[torch.device] = None,
    ) -> Tuple[torch.Tensor, RateStep]:
        """Run ``loss_at`` at both probes (same random numbers) and `combine` them.

        Args:
            loss_at: ``period_ms -> loss``; runs the model on the current batch at that
                period and returns the downstream loss with its graph.
            device: where the model runs, to replay its CUDA random numbers too.
        """
        plus, minus = self.probes()
        rng = RngSnapshot(device)
        loss_plus = loss_at(plus)
        rng.restore()
        loss_minus = loss_at(minus)
        return self.combine(loss_plus, loss_minus, plus, minus)
