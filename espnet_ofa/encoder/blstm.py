"""``encoder: blstm``: ESPnet's ``encoder: rnn`` (bidirectional LSTM layers, each followed by
a projection) computed without packed sequences, with dropout only in training.

ESPnet's ``rnn`` encoder (``RNNEncoder`` with its default ``use_projection: true``, i.e.
the legacy ``RNNP``) has two costs that this one removes:

* It packs every layer's input (``pack_padded_sequence``). On a CPU a packed LSTM runs
  step by step outside oneDNN's fused kernel, and its backward pass is about 8x slower than
  that of the same LSTM on a padded batch (B=16, T=120, 128 units: 0.21 vs 0.03 s); it is
  most of a training step on cached OFA features. Here the forward direction runs on the
  padded batch as it is (padding comes after every utterance, so it never reaches a real
  frame), and the backward direction is a forward LSTM over each utterance reversed within
  its own length (`reverse_within_lengths`): the same function as the packed BLSTM, on
  padded tensors.
* It applies its between-layer dropout with ``F.dropout(x, p)``, whose ``training``
  argument defaults to true, so decoding is random (two calls on the same input in
  ``eval()`` differ). Here dropout follows ``self.training``.

The parameters are those of ESPnet's encoder (an LSTM per direction and layer, a
projection per layer) under their own names; a checkpoint trained with ``encoder: rnn``
(``rnn_type: lstm``, ``bidirectional: true``, projection on, no subsampling) loads into it
(`espnet_rnn_key_renames`), so an existing model can be decoded deterministically.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of a padded batch reversed in time within its own length; the padding
    stays where it is (so applying it twice gives ``x`` back).

    Args:
        x: (B, T, D) padded batch.
        lengths: (B,) valid frames per sequence.

    Returns:
        (B, T, D): ``out[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]``, else
        ``x[b, t]``.
    """
    return _gather_time(x, reversal_index(lengths, x.size(1), x.device))


def reversal_index(lengths: torch.Tensor, max_len: int, device: torch.device) -> torch.Tensor:
    """(B, T) time index of `reverse_within_lengths`: ``lengths[b] - 1 - t`` inside a length,
    ``t`` past it. Computed once per batch and shared by every layer and direction."""
    t = torch.arange(max_len, device=device)
    lengths = lengths.to(device)[:, None]
    return torch.where(t < lengths, lengths - 1 - t, t)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (B, T, D), index: (B, T) -> (B, T, D) with ``out[b, t] = x[b, index[b, t]]``."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.size(2)))


class BLSTMLayer(torch.nn.Module):
    """One bidirectional LSTM layer and its projection: (B, T, D_in) -> (B, T, D_out)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.forward_lstm = torch.nn.LSTM(input_size, hidden_size, batch_first=True)
        self.backward_lstm = torch.nn.LSTM(input_size, hidden_size, batch_first=True)
        self.projection = torch.nn.Linear(2 * hidden_size, output_size)

    def forward(self, x: torch.Tensor, reversal: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D_in), reversal: (B, T) `reversal_index` of the batch's lengths ->
        (B, T, D_out); frames past a length are not meaningful (the encoder zeroes them)."""
        ahead, _ = self.forward_lstm(x)
        behind, _ = self.backward_lstm(_gather_time(x, reversal))
        both = torch.cat([ahead, _gather_time(behind, reversal)], dim=-1)
        return self.projection(both)


class BLSTMEncoder(AbsEncoder):
    """Stacked `BLSTMLayer`s: layer, projection, then ``tanh(dropout(.))`` between layers (not
    after the last), padding zeroed at the end; the same function as ESPnet's ``encoder:
    rnn`` with ``rnn_type: lstm``, ``bidirectional: true``, ``use_projection: true`` and no
    subsampling.

    Args:
        input_size: feature dimension of the frontend (after normalisation).
        num_layers: bidirectional layers.
        hidden_size: LSTM units per direction.
        output_size: projection size of every layer (the encoder's output dimension).
        dropout: dropout before the tanh between layers, in training only.
    """

    def __init__(self, input_size: int, num_layers: int = 2, hidden_size: int = 320,
                 output_size: int = 320, dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"encoder_conf num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"encoder_conf dropout must be in [0, 1), got {dropout}")
        sizes = [input_size] + [output_size] * (num_layers - 1)
        self.layers = torch.nn.ModuleList(
            BLSTMLayer(size, hidden_size, output_size) for size in sizes)
        self.dropout = torch.nn.Dropout(dropout)
        self._output_size = output_size
        self.register_load_state_dict_pre_hook(_accept_espnet_rnn_keys)

    def output_size(self) -> int:
        return self._output_size

    def forward(self, xs_pad: torch.Tensor, ilens: torch.Tensor,
                prev_states: Optional[torch.Tensor] = None,
                ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        """xs_pad: (B, T, input_size), ilens: (B,) -> ((B, T, output_size), ilens, None)."""
        if prev_states is not None:
            raise ValueError("encoder: blstm keeps no state between calls (prev_states must "
                             "be None); use ESPnet's encoder: rnn for stateful decoding")
        x = xs_pad
        reversal = reversal_index(ilens, x.size(1), x.device)
        for i, layer in enumerate(self.layers):
            x = layer(x, reversal)
            if i < len(self.layers) - 1:
                x = torch.tanh(self.dropout(x))
        t = torch.arange(x.size(1), device=x.device)
        padding = t[None, :] >= ilens.to(x.device)[:, None]
        return x.masked_fill(padding[:, :, None], 0.0), ilens, None


# ESPnet's RNNP names, within encoder: rnn: enc.0.birnn{i}.{weight,bias}_{ih,hh}_l0[_reverse]
# and enc.0.bt{i}.{weight,bias}.
_ESPNET_LSTM = re.compile(r"enc\.0\.birnn(\d+)\.((?:weight|bias)_(?:ih|hh)_l0)(_reverse)?$")
_ESPNET_PROJECTION = re.compile(r"enc\.0\.bt(\d+)\.(weight|bias)$")


def espnet_rnn_key_renames(state: Dict[str, torch.Tensor], prefix: str = "") -> Dict[str, str]:
    """The `BLSTMEncoder` key of each ``encoder: rnn`` key under ``prefix`` in ``state``
    (old key -> new key; keys of other modules are not listed)."""
    renames = {}
    for key in state:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        lstm = _ESPNET_LSTM.match(rest)
        projection = _ESPNET_PROJECTION.match(rest)
        if lstm:
            direction = "backward_lstm" if lstm.group(3) else "forward_lstm"
            renames[key] = f"{prefix}layers.{lstm.group(1)}.{direction}.{lstm.group(2)}"
        elif projection:
            renames[key] = f"{prefix}layers.{projection.group(1)}.projection.{projection.group(2)}"
    return renames


def _accept_espnet_rnn_keys(module: torch.nn.Module, state: Dict[str, torch.Tensor],
                            prefix: str, *args) -> None:
    """load_state_dict pre-hook: rename ``encoder: rnn`` keys to ours, in place."""
    for old, new in espnet_rnn_key_renames(state, prefix).items():
        state[new] = state.pop(old)
