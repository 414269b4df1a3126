"""The pooled rival: features of an SSL model at 20 ms, average-pooled to a longer period.

The cheapest way to shorten the sequence a downstream encoder sees, with no special
pretraining (Zaiem et al., ICASSP 2023): run the SSL model at its own 20 ms and average
every ``k`` frames of its output. ``frontend: ofa`` does this with ``pooled_period``, so
the OFA model at 20 ms plus pooling is compared with the same OFA model run at the period
itself, with the same downstream.

Why a strided average pool, not a learnt ``conv2d`` subsampling: it has no parameters and
no compute of its own, so the downstream model, its size and its training are identical
to the OFA downstream's; the only difference left is where the sequence is shortened (after
the SSL model, or inside it by CIF). A convolution would add parameters that the OFA
downstream does not have. Average pooling is also what CIF does with uniform weights.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from espnet_ofa.compression import INPUT_PERIOD_MS


def pool_factor(pooled_period: float, frame_period: Optional[float]) -> int:
    """``pooled_period / frame_period`` as the integer stride of the pool.

    Raises:
        ValueError: no frame period (a ``lam`` rate), or the ratio is not an integer >= 2
            (name both periods and a fix).
    """
    if frame_period is None:
        raise ValueError("frontend_conf.pooled_period needs frame_period (ms), not lam")
    ratio = float(pooled_period) / float(frame_period)
    factor = round(ratio)
    if not (math.isfinite(ratio) and factor >= 2 and abs(ratio - factor) < 1e-6):
        raise ValueError(
            f"pooled_period {pooled_period:g} ms must be an integer multiple (>= 2) of the "
            f"period the SSL model runs at, frame_period {frame_period:g} ms: e.g. "
            f"frame_period: {INPUT_PERIOD_MS:g} with pooled_period: 40, 60 or 80")
    return factor


def average_pool(feats: torch.Tensor, lengths: torch.Tensor,
                 factor: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean of every ``factor`` consecutive valid frames (stride = window = ``factor``).

    Args:
        feats: (B, T, D) frames; rows past each length are ignored.
        lengths: (B,) valid frames.
        factor: frames per pooled frame.

    Returns:
        (B, T', D) pooled frames, zero past each length, and (B,) lengths
        ``ceil(length / factor)``: the last window of an utterance may be partial, and is
        the mean of the frames it holds (padding never enters a mean).
    """
    batch, max_len, dim = feats.shape
    out_lengths = torch.div(lengths + factor - 1, factor, rounding_mode="floor")
    out_len = -(-max_len // factor)
    valid = (torch.arange(max_len, device=feats.device)[None, :] < lengths[:, None])
    pad = out_len * factor - max_len
    summed = torch.nn.functional.pad(feats * valid[..., None].to(feats.dtype), (0, 0, 0, pad))
    counts = torch.nn.functional.pad(valid.to(feats.dtype), (0, pad))
    summed = summed.view(batch, out_len, factor, dim).sum(2)
    counts = counts.view(batch, out_len, factor).sum(2)
    pooled = summed / counts.clamp_min(1.0)[..., None]
    t_out = int(out_lengths.max()) if batch else 0
    return pooled[:, :t_out], out_lengths
