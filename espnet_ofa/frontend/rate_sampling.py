"""One downstream model for every frame period: the period drawn per training batch.

With ``frontend_conf.rate_sampling: {low: 20, high: 90}`` each training forward of the OFA
frontend runs at a period drawn uniformly from [low, high] ms, so the downstream model
learns features at every period of the range and can be decoded at any of them (with
``set_rate``, ``ESPNET_OFA_FRAME_PERIOD`` or the recipe's decode stage).
``distribution: log_uniform`` draws the period's logarithm uniformly instead: as many
batches at 20-30 ms as at 60-90 ms, for a model that must also serve the short periods.

The draws are those of the pretraining `RateSampler`: a function of ``(seed, draw index)``
only. The index is a buffer of the frontend, saved in ESPnet's checkpoints, so a resumed
run draws the same periods as an uninterrupted one, and every DDP rank draws the same
period (equal work per step). Validation and decoding run at the configured
``frame_period`` unless told otherwise: a fixed period keeps the validation loss
comparable across epochs.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import torch
from torch import nn

from espnet_ofa.compression.rate import Rate, RateSampler

_KEYS = ("low", "high", "seed", "distribution")
# rate_sampling's distribution -> the `RateSampler` mode that draws it.
DISTRIBUTIONS = {"uniform": "frame_period", "log_uniform": "log_frame_period"}


class SampledRate(nn.Module):
    """Periods drawn in ``[low, high]`` ms, reproducibly and resumably.

    Args:
        low, high: the range, ms (inside the range the OFA model was trained for).
        seed: the sampler's seed.
        distribution: ``uniform`` in the period, or ``log_uniform`` (uniform in its
            logarithm: more draws near ``low``).

    State: ``num_draws`` (a buffer: saved and restored with the model).
    """

    def __init__(self, low: float, high: float, seed: int = 0,
                 distribution: str = "uniform") -> None:
        super().__init__()
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"rate_sampling distribution must be one of "
                             f"{', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        self.distribution = distribution
        self.sampler = RateSampler(DISTRIBUTIONS[distribution], low=low, high=high, seed=seed)
        self.register_buffer("num_draws", torch.zeros((), dtype=torch.long))
        self.last: Optional[float] = None

    @property
    def range(self) -> Tuple[float, float]:
        return self.sampler.low, self.sampler.high

    def extra_repr(self) -> str:
        return (f"range=[{self.sampler.low:g}, {self.sampler.high:g}] ms, "
                f"distribution={self.distribution}, seed={self.sampler.seed}")

    def draw(self) -> Rate:
        """The period of the next training batch (advances the draw index)."""
        rate = self.sampler.sample(step=int(self.num_draws))
        self.num_draws += 1
        self.last = rate.frame_period
        return rate


def build_sampled_rate(conf: Mapping, trained_range: Tuple[float, float],
                       default_seed: int) -> SampledRate:
    """``frontend_conf.rate_sampling`` -> a `SampledRate`, checked against the model.

    Raises:
        ValueError: unknown keys, a missing bound, or a range outside ``trained_range``.
    """
    if not isinstance(conf, Mapping):
        raise ValueError(f"rate_sampling must be a mapping like {{low: 20, high: 90}}, "
                         f"got {conf!r}")
    unknown = sorted(set(conf) - set(_KEYS))
    if unknown:
        raise ValueError(f"rate_sampling: unknown key(s) {unknown}; use {', '.join(_KEYS)}")
    if "low" not in conf or "high" not in conf:
        raise ValueError("rate_sampling needs low and high (ms), e.g. {low: 20, high: 90}")
    low, high = float(conf["low"]), float(conf["high"])
    if not (trained_range[0] <= low < high <= trained_range[1]):
        raise ValueError(
            f"rate_sampling [{low:g}, {high:g}] ms must be an interval inside the range this "
            f"OFA model was trained for, [{trained_range[0]:g}, {trained_range[1]:g}] ms")
    seed = conf.get("seed")
    return SampledRate(low, high, default_seed if seed is None else seed,
                       conf.get("distribution") or "uniform")
