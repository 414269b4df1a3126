"""Which hidden states of the SSL model a downstream task sees."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class WeightedLayerSum(nn.Module):
    """A learned softmax-weighted sum of hidden states (the SUPERB "featurizer").

    Args:
        num_layers: how many hidden states are mixed.

    The weights start equal (zero logits), so training starts from the plain average.
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weights.zero_()

    def forward(self, hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, T, D)] * num_layers -> (B, T, D)."""
        if len(hidden) != self.weights.numel():
            raise ValueError(
                f"expected {self.weights.numel()} hidden states, got {len(hidden)}"
            )
        norm = torch.softmax(self.weights, dim=0).to(hidden[0].dtype)
        # A running sum instead of torch.stack: no (L, B, T, D) copy of every layer.
        out = norm[0] * hidden[0]
        for w, h in zip(norm[1:], hidden[1:]):
            out = out + w * h
        return out


def check_layer(layer: int, num_hidden: int, model: str = "OFA model") -> int:
    """``layer`` is -1 (weighted sum) or the index of one hidden state in [0, num_hidden);
    ``model`` names what has them in the error."""
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise ValueError(f"layer must be an integer, got {layer!r}")
    if layer != -1 and not 0 <= layer < num_hidden:
        raise ValueError(
            f"layer {layer} does not exist: this {model} has {num_hidden} hidden states "
            f"(0 = the Transformer's input, {num_hidden - 1} = its last layer); use one of "
            f"0..{num_hidden - 1}, or -1 for a learned weighted sum of all of them"
        )
    return layer
