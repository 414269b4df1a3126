"""The alpha predictor: one CIF weight per 20 ms frame."""

from __future__ import annotations

import torch
from torch import nn


class AlphaPredictor(nn.Module):
    """Conv1d -> LayerNorm -> ReLU -> Linear -> sigmoid, as in the authors' port.

    Args:
        input_dim: channels of the frames it reads.
        hidden_dim: channels of the convolution.
        kernel_size: odd temporal context of the convolution, in frames.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 256, kernel_size: int = 5) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.conv = nn.Conv1d(input_dim, hidden_dim, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(hidden_dim)
        self.proj = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frames and (B,) lengths -> (B, T) weights in (0, 1), zero on padding."""
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        # Zero the padding first: the convolution would otherwise read it at the edges.
        h = self.conv(x.masked_fill(~valid[..., None], 0.0).transpose(1, 2)).transpose(1, 2)
        alpha = torch.sigmoid(self.proj(torch.relu(self.norm(h)))).squeeze(-1)
        return alpha.masked_fill(~valid, 0.0)
