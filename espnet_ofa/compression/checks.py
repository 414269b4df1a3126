"""Argument checks shared by the compression functions.

Every check raises `ValueError` naming the argument and what would be valid, so that a
bad call fails at the API boundary instead of deep inside a scatter or a cumsum.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def check_alpha(
    alpha: torch.Tensor, name: str, expected_shape: Optional[Sequence[int]] = None
) -> None:
    """``alpha`` must be a finite, non-negative (B, T) float tensor."""
    if not torch.is_tensor(alpha) or not alpha.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {type(alpha).__name__}")
    if alpha.dim() != 2:
        raise ValueError(f"{name} must be (batch, time), got shape {tuple(alpha.shape)}")
    if expected_shape is not None and tuple(alpha.shape) != tuple(expected_shape):
        raise ValueError(
            f"{name} has shape {tuple(alpha.shape)} but the input frames need {tuple(expected_shape)}"
        )
    if alpha.numel() == 0:
        return
    if not bool(torch.isfinite(alpha).all()):
        raise ValueError(f"{name} contains NaN or Inf; it must be finite and >= 0")
    if bool((alpha < 0).any()):
        raise ValueError(f"{name} must be >= 0, got a minimum of {float(alpha.min()):.4g}")


def check_lengths(lengths: torch.Tensor, batch: int, max_len: int) -> None:
    """``lengths`` must be (B,) integers in [0, max_len]."""
    if not torch.is_tensor(lengths) or lengths.dim() != 1 or lengths.shape[0] != batch:
        shape = tuple(lengths.shape) if torch.is_tensor(lengths) else type(lengths).__name__
        raise ValueError(f"lengths must be a (batch={batch},) tensor, got {shape}")
    if lengths.is_floating_point() or lengths.is_complex():
        raise ValueError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if batch and bool((lengths < 0).any()):
        raise ValueError("lengths must be >= 0")
    if batch and int(lengths.max()) > max_len:
        raise ValueError(
            f"lengths has a value {int(lengths.max())} longer than the tensor's time axis ({max_len})"
        )

