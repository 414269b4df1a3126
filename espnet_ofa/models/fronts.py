"""Waveform fronts of the OFA student: 16 kHz samples -> 20 ms frames, padding-invariant.

Three fronts, chosen by ``StudentConfig.front``:

* ``cnn``: wav2vec 2.0's 7-layer CNN (torchaudio's blocks, so the teacher's CNN loads into
  it unchanged), ~2.4 GMACs per second of audio at 512 channels.
* ``light``: the same kernels and strides with fewer channels in the high-rate layers
  (`light_channels`): the first layers run at 3200-400 Hz and cost the most per channel,
  the last two (100 and 50 Hz) keep the full width. ~0.11 GMACs per second at 512.
* ``mel``: an 80-bin log-mel filterbank (25 ms window, 10 ms hop), per-utterance mean and
  variance normalisation, and two Conv1d (the second of stride 2) to 20 ms; ~0.05 GMACs/s.

Every front returns exactly ``(N - 400) // 320 + 1`` frames for N valid samples (the
standard CNN's count, which the teacher's targets have) and zero on padded frames.

Padding: the first block of a "group_norm" CNN normalises each channel over time. torchaudio
normalises over the padded length, so an utterance's features change with the batch it is
in (and NaN in padding reaches every frame). `masked_group_norm` uses the valid frames
only; `conv_stack` runs a torchaudio conv stack with it, for the student and the teacher
alike. The normalisation keeps ``nn.GroupNorm``'s parameters (``weight``/``bias``), so
torchaudio and fairseq state dicts load unchanged.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torchaudio
from torch import Tensor, nn
from torchaudio.models import wav2vec2_model

from espnet_ofa.constants import SAMPLE_RATE

# The mel front's analysis window and hop (samples at 16 kHz): 25 ms and 10 ms, so that two
# frames of its stride-2 convolution make the CNN's 20 ms and its frame count.
MEL_WINDOW = 400
MEL_HOP = 160
FRONTS = ("cnn", "light", "mel")


def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, T) bool, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_group_norm(x: Tensor, lengths: Optional[Tensor], norm: nn.GroupNorm) -> Tensor:
    """``norm(x)`` with statistics over the first ``lengths`` time steps of each row only.

    Args:
        x: (B, C, T) features; values past ``lengths`` do not matter but must be finite
            (the fronts zero the waveform's padding first, so they are).
        lengths: (B,) valid time steps; None means all (plain group norm).
        norm: the ``nn.GroupNorm`` whose groups, eps and affine parameters apply.
    Returns:
        (B, C, T): normalised valid steps; the padded steps hold finite garbage that callers
        must mask (they are normalised with the valid steps' statistics).
    """
    if lengths is None:
        return norm(x)
    batch, channels, steps = x.shape
    groups, per_group = norm.num_groups, channels // norm.num_groups
    # Statistics in float32 (under bf16 autocast a sum over thousands of steps loses
    # digits), as masked averages over time by one batched matrix product per moment:
    # far cheaper than masking the (B, C, T) tensor.
    xf = x.float()
    weights = (valid_mask(lengths, steps).float()
               / (lengths.clamp_min(1) * per_group).float()[:, None])[:, :, None]  # (B, T, 1)

    def group_mean(values: Tensor) -> Tensor:  # (B, C, T) -> (B, C, 1), per group
        per_channel = torch.bmm(values, weights)
        if per_group == 1:
            return per_channel
        summed = per_channel.reshape(batch, groups, per_group).sum(dim=2, keepdim=True)
        return summed.expand(batch, groups, per_group).reshape(batch, channels, 1)

    centred = xf - group_mean(xf)
    scale = torch.rsqrt(group_mean(centred.square()) + norm.eps)  # (B, C, 1)
    if not norm.affine:
        return (centred * scale).to(x.dtype)
    scale = scale * norm.weight.float()[None, :, None]
    return torch.addcmul(norm.bias.float()[None, :, None], centred, scale).to(x.dtype)


def conv_stack(conv_layers: nn.ModuleList, wav: Tensor, lengths: Optional[Tensor]
               ) -> Tuple[Tensor, Optional[Tensor]]:
    """Run torchaudio ``ConvLayerBlock`` s with padding-invariant normalisation.

    The same computation as torchaudio's ``FeatureExtractor`` except that a GroupNorm sees
    only valid steps; a valid output step reads only valid input steps (the length rule
    below), so each utterance's frames equal those of the utterance run alone.

    Args:
        conv_layers: torchaudio ``ConvLayerBlock`` modules (``.conv``, ``.layer_norm``).
        wav: (B, N) waveforms.
        lengths: (B,) valid samples, or None when every row is full.
    Returns:
        (B, T, C) frames, zero past the lengths, and the (B,) frame counts (None if
        ``lengths`` is None).
    """
    if lengths is not None:
        # NaN/Inf in padding must not reach a valid step through 0 * inf in a convolution.
        wav = wav.masked_fill(~valid_mask(lengths, wav.shape[1]), 0.0)
    x = wav.unsqueeze(1)
    for block in conv_layers:
        x = block.conv(x)
        if lengths is not None:
            lengths = torch.div(lengths - block.kernel_size, block.stride,
                                rounding_mode="floor").add(1).clamp_min(0)
        norm = block.layer_norm
        if isinstance(norm, nn.GroupNorm):
            x = masked_group_norm(x, lengths, norm)
        elif norm is not None:
            x = norm(x)  # torchaudio's per-step LayerNorm: padding cannot reach valid steps
        x = nn.functional.gelu(x)
    x = x.transpose(1, 2)
    if lengths is not None:
        x = x.masked_fill(~valid_mask(lengths, x.shape[1])[..., None], 0.0)
    return x, lengths


def wav2vec2_conv_blocks(conv_layers: Sequence[Sequence[int]], mode: str = "group_norm",
                         bias: bool = False) -> nn.ModuleList:
    """torchaudio's wav2vec 2.0 CNN blocks (``ConvLayerBlock``: ``.conv``, ``.layer_norm``)
    for a geometry, from the public factory ``torchaudio.models.wav2vec2_model``.

    The factory builds a whole model; only ``feature_extractor.conv_layers`` is kept. Its
    encoder is made 1 wide and 0 layers deep, so building and dropping it costs nothing.

    Args:
        conv_layers: (channels, kernel, stride) per layer.
        mode: "group_norm" (a GroupNorm after the first conv) or "layer_norm" (after each).
        bias: conv bias.
    """
    model = wav2vec2_model(
        extractor_mode=mode,
        extractor_conv_layer_config=[tuple(int(v) for v in layer) for layer in conv_layers],
        extractor_conv_bias=bias,
        encoder_embed_dim=1, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=1,
        encoder_pos_conv_groups=1, encoder_num_layers=0, encoder_num_heads=1,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=1,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False,
        encoder_layer_drop=0.0, aux_num_out=None,
    )
    return model.feature_extractor.conv_layers


def light_channels(conv_layers: Sequence[Sequence[int]]) -> Tuple[int, ...]:
    """Default channels of the light front for a CNN geometry.

    The last two layers keep their width; going down, each layer (which runs at twice the
    rate of the one above) gets half the channels, but no fewer than an eighth of the last
    layer's: 512-wide wav2vec 2.0 layers become 64, 64, 64, 128, 256, 512, 512 (about 21x
    fewer MACs).
    """
    top = int(conv_layers[-1][0])
    count = len(conv_layers)
    return tuple(
        max(top >> (count - 2 - i), max(1, top // 8)) if i < count - 2 else int(conv_layers[i][0])
        for i in range(count)
    )


class ConvFront(nn.Module):
    """The ``cnn`` and ``light`` fronts: a wav2vec 2.0-style CNN, padding-invariant.

    ``conv_layers`` is torchaudio's ``FeatureExtractor.conv_layers`` (same state-dict keys),
    so the teacher's ``feature_extractor`` state dict loads into a ``cnn`` front.

    Args:
        conv_layers: (channels, kernel, stride) per layer.
        mode: torchaudio's ``extractor_mode`` ("group_norm" or "layer_norm").
        bias: conv bias.
    """

    def __init__(self, conv_layers: Sequence[Sequence[int]], mode: str = "group_norm",
                 bias: bool = False) -> None:
        super().__init__()
        self.conv_layers = wav2vec2_conv_blocks(conv_layers, mode, bias)
        self.output_dim = int(conv_layers[-1][0])

    def forward(self, wav: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """(B, N) samples, (B,) lengths -> (B, T, C) frames (zero on padding), (B,) frames."""
        return conv_stack(self.conv_layers, wav, lengths)


class MelFront(nn.Module):
    """The ``mel`` front: log-mel filterbank -> masked CMVN -> Conv1d -> Conv1d/2, GELUs.

    Args:
        n_mels: mel bins (80: 0-8 kHz, HTK scale).
        channels: width of both convolutions and of the output.
        sample_rate: must be 16 kHz like the other fronts.
    """

    def __init__(self, n_mels: int = 80, channels: int = 512, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        n_freqs = MEL_WINDOW // 2 + 1
        self.register_buffer("window", torch.hann_window(MEL_WINDOW), persistent=False)
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs, 0.0, sample_rate / 2, n_mels, sample_rate)  # (F, n_mels)
        self.register_buffer("fbank", fbank, persistent=False)
        # One group per bin: per-utterance mean/variance normalisation of each bin (a learnt
        # gain and offset after it), over valid frames only.
        self.norm = nn.GroupNorm(n_mels, n_mels)
        self.conv1 = nn.Conv1d(n_mels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.output_dim = int(channels)

    def log_mel(self, wav: Tensor) -> Tensor:
        """(B, N) -> (B, n_mels, T10) log-mel energies, T10 = (N - 400) // 160 + 1."""
        # The FFT stays in float32 even under bf16 autocast (too few mantissa bits for the
        # dynamic range of a power spectrum).
        with torch.autocast(wav.device.type, enabled=False):
            spec = torch.stft(wav.float(), MEL_WINDOW, MEL_HOP, window=self.window,
                              center=False, return_complex=True)
            power = spec.real.square() + spec.imag.square()  # (B, F, T10)
            mel = torch.matmul(self.fbank.t(), power)
            return torch.log(mel + 1e-6)

    def forward(self, wav: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """(B, N) samples, (B,) lengths -> (B, T, C) frames (zero on padding), (B,) frames.

        T = (N - 400) // 320 + 1: frame t sees samples [320 t - 320, 320 t + 720) (mel
        frames 2t - 2 .. 2t + 2 through the two convolutions), centred where the CNN's
        frame t is.
        """
        if lengths is not None:
            wav = wav.masked_fill(~valid_mask(lengths, wav.shape[1]), 0.0)
            lengths = torch.div(lengths - MEL_WINDOW, MEL_HOP, rounding_mode="floor").add(1)
            lengths = lengths.clamp_min(0)
        x = masked_group_norm(self.log_mel(wav), lengths, self.norm)
        x = self._zero_padding(x, lengths)  # convolutions read one step past the end
        x = self._zero_padding(nn.functional.gelu(self.conv1(x)), lengths)
        if lengths is not None:
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")  # ceil(T10 / 2)
        x = nn.functional.gelu(self.conv2(x))
        return self._zero_padding(x, lengths).transpose(1, 2), lengths

    @staticmethod
    def _zero_padding(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
        if lengths is None:
            return x
        return x.masked_fill(~valid_mask(lengths, x.shape[-1])[:, None, :], 0.0)


def build_front(front: str, conv_layers: Sequence[Sequence[int]], mode: str = "group_norm",
                bias: bool = False, channels: Optional[Sequence[int]] = None,
                n_mels: int = 80, mel_channels: int = 512) -> nn.Module:
    """The front named ``front`` (see the module docstring); ``channels`` sets the light
    front's widths (default `light_channels`)."""
    if front == "cnn":
        return ConvFront(conv_layers, mode, bias)
    if front == "light":
        widths = tuple(channels) if channels is not None else light_channels(conv_layers)
        layers = [(c, k, s) for c, (_, k, s) in zip(widths, conv_layers)]
        return ConvFront(layers, mode, bias)
    if front == "mel":
        return MelFront(n_mels, mel_channels)
    raise ValueError(f"front must be one of {FRONTS}, got {front!r}")
