"""Continuous integrate-and-fire (CIF) over padded batches, and its inverse `expand`.

Picture each input frame ``t`` as the interval ``[c[t-1], c[t])`` of the running sum
``c = cumsum(alpha)``. Output frame ``k`` owns the interval ``[k*beta, (k+1)*beta)``;
input frame ``t`` feeds output ``k`` with the weight ``|[c[t-1], c[t]) ∩ [k*beta, (k+1)*beta)|``.
A frame that straddles a firing boundary is split between two outputs. Since a frame
of weight ``alpha[t]`` overlaps at most ``ceil(alpha[t] / beta) + 1`` output intervals,
the whole map is stored as a few *slots* per input frame (output index, weight), and
both directions are a scatter/gather of cost ``O(B * T * C)``: no ``T x T'`` matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from espnet_ofa.compression.checks import (
    alpha_problem,
    check_alpha_layout,
    check_lengths,
    check_lengths_layout,
    check_not_meta,
    explain_alpha,
    explain_lengths,
    lengths_problem,
)

# Tolerance on the fire count: ``floor(sum(alpha) / beta + LENGTH_EPS)``. Float32 alphas
# that were solved to sum to an integer N may land a few ulps below N.
LENGTH_EPS = 1e-3


@dataclass
class CIFOutput:
    """What `cif` returns.

    Attributes:
        frames: (B, T', C) integrated frames; rows past ``lengths`` are zero.
        lengths: (B,) number of output frames per utterance.
        alpha: (B, T) the weights used, zero on padding.
        input_lengths: (B,) valid input frames per utterance.
        slot_index: (B, T, S) output frame fed by each slot of each input frame.
        slot_weight: (B, T, S) weight of that slot; zero for unused slots, padding
            and an unfired tail (unless ``tail_threshold`` emitted it).
    """

    frames: torch.Tensor
    lengths: torch.Tensor
    alpha: torch.Tensor
    input_lengths: torch.Tensor
    slot_index: torch.Tensor
    slot_weight: torch.Tensor

    @property
    def mass(self) -> torch.Tensor:
        """(B,) total weight that reached an output frame."""
        return self.slot_weight.sum(dim=(1, 2))


def _padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _empty_output(x: torch.Tensor, alpha: torch.Tensor, lengths: torch.Tensor) -> CIFOutput:
    """What `cif` gives a batch with no frames at all (B = 0 or T = 0): no output frame."""
    batch, max_len, channels = x.shape
    return CIFOutput(
        frames=x.new_zeros(batch, 0, channels),
        lengths=torch.zeros(batch, dtype=torch.long, device=x.device),
        alpha=alpha,
        input_lengths=lengths,
        slot_index=torch.zeros(batch, max_len, 1, dtype=torch.long, device=x.device),
        slot_weight=x.new_zeros(batch, max_len, 1),
    )


def _check_layout(x: torch.Tensor, alpha: torch.Tensor, lengths: torch.Tensor, beta: float,
                  tail_threshold: Optional[float]) -> None:
    """`cif`'s checks that need no values of the tensors (so no host synchronisation)."""
    if not torch.is_tensor(x) or x.dim() != 3:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"x must be (batch, time, channels), got shape {shape}")
    if not x.is_floating_point():
        # Integer frames would be scaled by fractional weights and truncated to zero.
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}; "
                         "convert it first, e.g. x.float()")
    check_not_meta(x, "x")
    check_alpha_layout(alpha, "alpha", expected_shape=tuple(x.shape[:2]))
    check_lengths_layout(lengths, x.shape[0])
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a positive finite number, got {beta}")
    if tail_threshold is not None and not 0.0 < tail_threshold <= 1.0:
        raise ValueError(f"tail_threshold must be in (0, 1], got {tail_threshold}")


def cif(
    x: torch.Tensor,
    alpha: torch.Tensor,
    lengths: torch.Tensor,
    beta: float = 1.0,
    tail_threshold: Optional[float] = None,
) -> CIFOutput:
    """Integrate ``x`` with weights ``alpha`` and fire every ``beta`` of accumulated weight.

    Args:
        x: (B, T, C) floating-point input frames; B = 0 or T = 0 gives an empty output.
        alpha: (B, T) non-negative weights (float64 keeps `rate_alpha`'s counts exact);
            values on padding are ignored (NaN there included).
        lengths: (B,) valid frames per utterance.
        beta: firing threshold (> 0).
        tail_threshold: when given (inference), an unfired remainder whose weight is at
            least ``tail_threshold * beta`` is emitted as one more frame, rescaled as if
            it had reached ``beta``. ``None`` drops the remainder (training).

    Returns:
        `CIFOutput`; ``frames[b, k] = sum_t w[b, t, k] * x[b, t]`` with
        ``lengths[b] = floor(sum(alpha[b]) / beta + LENGTH_EPS)`` (+1 for an emitted tail).

    One host synchronisation per call: the output's padded length must be known on the
    host, and the checks of ``alpha`` and ``lengths`` travel in the same transfer.
    """
    _check_layout(x, alpha, lengths, beta, tail_threshold)
    batch, max_len, channels = x.shape
    valid = _padding_mask(lengths, max_len)
    alpha = alpha.masked_fill(~valid, 0.0)
    if batch == 0 or max_len == 0:
        check_lengths(lengths, batch, max_len)
        return _empty_output(x, alpha, lengths)
    x = x.masked_fill(~valid[..., None], 0.0)  # NaN/Inf in padding must not leak via 0 * inf

    # Boundaries in float64 and in units of beta: a float32 running sum over thousands of
    # frames drifts by more than the tolerance that decides whether a frame fires.
    end = torch.cumsum(alpha.double(), dim=1) / beta
    start = end - alpha.double() / beta
    total = end[:, -1]
    fired = torch.floor(total + LENGTH_EPS).long()
    remainder = (total - fired).clamp_min(0.0)
    out_lengths = fired.clone()
    if tail_threshold is not None:
        out_lengths = fired + (remainder >= tail_threshold).long() * (remainder > 0).long()

    # The one transfer: whether the arguments are valid, the largest weight (how many
    # output frames one input frame can feed) and the output's padded length.
    problem = lengths_problem(lengths, max_len) | alpha_problem(alpha)
    summary = torch.stack([problem.double(), alpha.detach().max().double(),
                           out_lengths.max().double()]).tolist()
    if summary[0]:
        explain_lengths(lengths, max_len)
        explain_alpha(alpha, "alpha", valid)
    max_alpha, out_max = summary[1] / beta, int(summary[2])

    # Slot j of frame t covers output k = floor(start) + j.
    num_slots = int(math.ceil(max_alpha)) + 1
    first = torch.floor(start).long().clamp_min(0)
    slot_index = first[..., None] + torch.arange(num_slots, device=x.device)
    lower = torch.maximum(start[..., None], slot_index.double())
    upper = torch.minimum(end[..., None], slot_index.double() + 1.0)
    slot_weight = (upper - lower).clamp_min(0.0) * beta

    # The slot that holds the unfired tail: kept (rescaled) only when it is emitted.
    in_output = slot_index < out_lengths[:, None, None]
    is_tail = slot_index >= fired[:, None, None]
    tail_scale = torch.where(remainder > 0, 1.0 / remainder.clamp_min(1e-12), 0.0)
    slot_weight = torch.where(is_tail, slot_weight * tail_scale[:, None, None], slot_weight)
    slot_weight = torch.where(in_output & valid[..., None], slot_weight, 0.0).to(x.dtype)
    # Unused slots point at a spare row past the end, dropped below.
    slot_index = torch.where(in_output, slot_index, out_max).clamp(0, out_max)

    frames = x.new_zeros(batch, out_max + 1, channels)
    contrib = slot_weight[..., None] * x[:, :, None, :]  # (B, T, S, C)
    frames = frames.scatter_add(
        1,
        slot_index.reshape(batch, -1, 1).expand(-1, -1, channels),
        contrib.reshape(batch, -1, channels),
    )[:, :out_max]
    return CIFOutput(
        frames=frames,
        lengths=out_lengths,
        alpha=alpha,
        input_lengths=lengths,
        slot_index=slot_index,
        slot_weight=slot_weight,
    )


def expand(frames: torch.Tensor, cif_out: CIFOutput) -> torch.Tensor:
    """Bring compressed frames back to the input rate of ``cif_out``.

    Each input frame becomes the convex combination of the output frames it fed, in
    proportion to the weight it gave each. Frames that fed nothing (zero alpha, or the
    dropped tail) take the output frame in progress, clamped to the last one.

    Args:
        frames: (B, T', C) frames at the compressed rate (``cif_out.frames`` or any
            features computed from them, e.g. a Transformer's output).
        cif_out: the `CIFOutput` that produced the compressed sequence.

    Returns:
        (B, T, C); zero on padding and for utterances with no output frame.
    """
    batch, out_max = cif_out.frames.shape[:2]
    if frames.dim() != 3 or frames.shape[0] != batch or frames.shape[1] < out_max:
        raise ValueError(
            f"frames must be (batch={batch}, time>={out_max}, channels), got {tuple(frames.shape)}"
        )
    weight, lengths = cif_out.slot_weight, cif_out.lengths
    total = weight.sum(dim=-1, keepdim=True)
    in_progress = torch.zeros_like(weight)
    in_progress[..., 0] = 1.0
    share = torch.where(total > 0, weight / total.clamp_min(1e-12), in_progress)
    keep = _padding_mask(cif_out.input_lengths, weight.shape[1]) & (lengths > 0)[:, None]
    share = share * keep[..., None].to(share.dtype)

    index = torch.minimum(cif_out.slot_index, (lengths - 1).clamp_min(0)[:, None, None])
    batch, num_in, num_slots = index.shape
    channels = frames.shape[-1]
    if batch == 0 or num_in == 0:
        return frames.new_zeros(batch, num_in, channels)
    # One zero row at the end so that utterances with no output frame gather something.
    padded = torch.nn.functional.pad(frames[:, :out_max], (0, 0, 0, 1))
    gathered = torch.gather(padded, 1, index.reshape(batch, -1, 1).expand(-1, -1, channels))
    gathered = gathered.reshape(batch, num_in, num_slots, channels)
    return (share[..., None].to(frames.dtype) * gathered).sum(dim=2)
