"""Argument checks shared by the compression functions.

Every check raises `ValueError` naming the argument and what would be valid, so that a
bad call fails at the API boundary instead of deep inside a scatter or a cumsum.

Checks come in two halves, so that a GPU forward pays at most one host synchronisation
for them:

* what the host knows without looking at the data (type, dtype, device, shape):
  `check_alpha_layout`, `check_lengths_layout`; free;
* what needs the values: `alpha_problem` / `lengths_problem` compute one 0-d bool tensor
  on the tensors' device (no synchronisation); only when it is read as True do
  `explain_alpha` / `explain_lengths` look further (on the error path only) and raise the
  message.

`check_alpha` and `check_lengths` run both halves (one synchronisation each).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def check_not_meta(tensor: torch.Tensor, name: str) -> None:
    """A meta tensor has a shape but no values: name it instead of failing inside torch."""
    if tensor.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device (a shape without data, e.g. from a model built "
            "under torch.device('meta') or init_empty_weights); move real data to a device: "
            "load the weights with model.to_empty(device='cpu') + load_state_dict, and pass "
            "tensors with values"
        )


def check_alpha_layout(
    alpha: torch.Tensor, name: str, expected_shape: Optional[Sequence[int]] = None
) -> None:
    """``alpha`` must be a (B, T) floating-point tensor with data (no synchronisation)."""
    if not torch.is_tensor(alpha):
        raise ValueError(f"{name} must be a floating-point tensor, got {type(alpha).__name__}")
    if not alpha.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got a tensor of dtype "
                         f"{alpha.dtype}; convert it first, e.g. {name}.float()")
    check_not_meta(alpha, name)
    if alpha.dim() != 2:
        raise ValueError(f"{name} must be (batch, time), got shape {tuple(alpha.shape)}")
    if expected_shape is not None and tuple(alpha.shape) != tuple(expected_shape):
        raise ValueError(
            f"{name} has shape {tuple(alpha.shape)} but the input frames need {tuple(expected_shape)}"
        )


def alpha_problem(alpha: torch.Tensor, valid: Optional[torch.Tensor] = None,
                  upper: Optional[float] = None) -> torch.Tensor:
    """0-d bool tensor: True if some valid frame of ``alpha`` is NaN/Inf, < 0 or > ``upper``.

    ``valid`` (B, T) marks the frames that count (padding may hold anything).
    """
    bad = ~torch.isfinite(alpha) | (alpha < 0)
    if upper is not None:
        bad = bad | (alpha > upper)
    if valid is not None:
        bad = bad & valid
    return bad.any()


def explain_alpha(alpha: torch.Tensor, name: str, valid: Optional[torch.Tensor] = None,
                  upper: Optional[float] = None, upper_hint: str = "") -> None:
    """Raise the message for the first problem `alpha_problem` finds (error path only)."""
    if valid is None:
        valid = torch.ones_like(alpha, dtype=torch.bool)
    where = "" if bool(valid.all()) else " within its valid frames"
    values = alpha[valid]
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains NaN or Inf{where}; it must be finite and >= 0")
    if bool((values < 0).any()):
        raise ValueError(f"{name} must be >= 0, got a minimum of {float(values.min()):.4g}")
    if upper is not None and bool((values > upper).any()):
        raise ValueError(f"{name} must be <= {upper:g}, got a maximum of "
                         f"{float(values.max()):.4g}{upper_hint}")


def check_alpha(
    alpha: torch.Tensor, name: str, expected_shape: Optional[Sequence[int]] = None,
    valid: Optional[torch.Tensor] = None, upper: Optional[float] = None, upper_hint: str = "",
) -> None:
    """``alpha`` must be a finite, non-negative (B, T) float tensor (on ``valid`` frames,
    and <= ``upper`` when given). One host synchronisation."""
    check_alpha_layout(alpha, name, expected_shape)
    if alpha.numel() and bool(alpha_problem(alpha, valid, upper)):
        explain_alpha(alpha, name, valid, upper, upper_hint)


def check_lengths_layout(lengths: torch.Tensor, batch: int) -> None:
    """``lengths`` must be a (B,) integer tensor with data (no synchronisation)."""
    if not torch.is_tensor(lengths) or lengths.dim() != 1 or lengths.shape[0] != batch:
        shape = tuple(lengths.shape) if torch.is_tensor(lengths) else type(lengths).__name__
        raise ValueError(f"lengths must be a (batch={batch},) tensor, got {shape}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    check_not_meta(lengths, "lengths")


def lengths_problem(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """0-d bool tensor: True if some length lies outside [0, max_len]."""
    return ((lengths < 0) | (lengths > max_len)).any()


def explain_lengths(lengths: torch.Tensor, max_len: int) -> None:
    """Raise the message for the problem `lengths_problem` finds (error path only)."""
    if bool((lengths < 0).any()):
        raise ValueError("lengths must be >= 0")
    if int(lengths.max()) > max_len:
        raise ValueError(
            f"lengths has a value {int(lengths.max())} longer than the tensor's time axis ({max_len})"
        )


def check_lengths(lengths: torch.Tensor, batch: int, max_len: int) -> None:
    """``lengths`` must be (B,) integers in [0, max_len]. One host synchronisation."""
    check_lengths_layout(lengths, batch)
    if batch and bool(lengths_problem(lengths, max_len)):
        explain_lengths(lengths, max_len)
