"""Losses of OFA pretraining: layer distillation and alpha supervision."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def layer_distill_loss(
    pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor, cos_weight: float = 1.0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DistilHuBERT's per-layer loss: L1 plus ``-log sigmoid(cos)``, over valid frames.

    Args:
        pred, target: (B, T, D).
        lengths: (B,) valid frames.

    Returns:
        (total, l1, cos_term), scalars; ``total = l1 + cos_weight * cos_term``.
    """
    mask = valid_mask(lengths, pred.shape[1])
    count = mask.sum().clamp_min(1)
    l1 = ((pred - target).abs().mean(-1) * mask).sum() / count
    cos = F.cosine_similarity(pred, target, dim=-1)
    cos_term = (-F.logsigmoid(cos) * mask).sum() / count
    return l1 + cos_weight * cos_term, l1, cos_term


def pseudo_alpha(boundaries: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Alpha targets from segment ends: ``1 / len`` on each frame of a segment.

    Args:
        boundaries: (B, K) exclusive end frame of each segment, ascending, padded with
            -1; the last end of an utterance is its number of frames.
        num_frames: T.

    Returns:
        (B, T) targets whose cumulative sum reaches k exactly at the end of segment k;
        zero past an utterance's last boundary.
    """
    ends = torch.where(boundaries < 0, torch.iinfo(boundaries.dtype).max, boundaries)
    frames = torch.arange(num_frames, device=boundaries.device).expand(boundaries.shape[0], -1)
    segment = torch.searchsorted(ends.contiguous(), frames.contiguous(), right=True)  # (B, T)
    has_segment = segment < (boundaries >= 0).sum(dim=1, keepdim=True)
    end = torch.gather(ends, 1, segment.clamp(max=ends.shape[1] - 1))
    padded_ends = torch.cat([ends.new_zeros(ends.shape[0], 1), ends], dim=1)
    start = torch.gather(padded_ends, 1, segment.clamp(max=ends.shape[1]))
    target = 1.0 / (end - start).clamp_min(1).float()
    return torch.where(has_segment, target, 0.0)


def alpha_losses(
    alpha_pred: torch.Tensor, boundaries: torch.Tensor, lengths: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Supervision of the *unmixed* predictor output by pseudo boundaries.

    Args:
        alpha_pred: (B, T) predictor output.
        boundaries: (B, K) segment ends as in `pseudo_alpha`; ends past ``lengths`` are
            clipped (the boundary tool and the CNN may disagree by a frame at the end).
        lengths: (B,) valid frames.

    Returns:
        (frame-level L1 to the pseudo alpha, boundary loss ``|cumsum(alpha)[end_k - 1] - k|``),
        computed in float32 at least whatever ``alpha_pred``'s dtype.
    """
    # At least float32: a bf16/fp16 running sum (8/11 bits) cannot count past a few hundred
    # frames by ones, and the boundary loss compares it with integers.
    alpha_pred = alpha_pred.to(torch.promote_types(alpha_pred.dtype, torch.float32))
    num_frames = alpha_pred.shape[1]
    limit = lengths[:, None].to(boundaries.dtype)
    boundaries = torch.where(boundaries >= 0, torch.minimum(boundaries, limit), boundaries)
    mask = valid_mask(lengths, num_frames)
    target = pseudo_alpha(boundaries, num_frames).to(alpha_pred.dtype)
    l1 = ((alpha_pred - target).abs() * mask).sum() / mask.sum().clamp_min(1)

    present = (boundaries > 0)
    counts = torch.cumsum(alpha_pred * mask, dim=1)
    reached = torch.gather(counts, 1, (boundaries - 1).clamp_min(0))
    expected = torch.cumsum(present.to(alpha_pred.dtype), dim=1)
    boundary = ((reached - expected).abs() * present).sum() / present.sum().clamp_min(1)
    return l1, boundary
