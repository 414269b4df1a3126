"""The OFA student: a small SSL model that runs at any frame period.

    waveform (16 kHz)
      -> waveform front (20 ms frames): the wav2vec 2.0 CNN, a light CNN or log-mel + convs
                                                                   [espnet_ofa.models.fronts]
      -> feature projection                               [torchaudio.models.wav2vec2_model]
      -> alpha predictor -> rate control -> CIF (or fixed pooling) [espnet_ofa.compression]
      -> Transformer encoder (positional conv + layers)   [torchaudio.models.wav2vec2_model]
      -> one prediction head per distilled teacher layer

The compression sits between the CNN and the Transformer, so the Transformer, which
dominates the cost, runs on the compressed sequence.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchaudio.models import wav2vec2_model

from espnet_ofa.compression import (
    DEFAULT_PERIOD_RANGE_MS,
    CIFOutput,
    Rate,
    alpha_for_lengths,
    cif,
    fixed_rate_alpha,
    rate_alpha,
)
from espnet_ofa.constants import DISTILLED_LAYERS, FRAME_HOP, INPUT_PERIOD_MS, SAMPLE_RATE
from espnet_ofa.data.waveform import as_float32, check_waveform_batch
from espnet_ofa.models.alpha_predictor import AlphaPredictor
from espnet_ofa.models.fronts import FRONTS, MEL_WINDOW, build_front

WAV2VEC2_CONV_LAYERS: Tuple[Tuple[int, int, int], ...] = (
    (512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2)
)


@dataclass
class StudentConfig:
    """Sizes and options of `OFAStudent`; the keys of ``student_conf`` in YAML."""

    # The waveform front (see espnet_ofa.models.fronts): "cnn" (conv_layers, initialised
    # from the teacher's CNN), "light" (conv_layers' kernels and strides, light_channels
    # wide) or "mel" (log-mel, mel_bins, then two mel_channels-wide convolutions).
    front: str = "cnn"
    conv_layers: Sequence[Sequence[int]] = WAV2VEC2_CONV_LAYERS
    light_channels: Optional[Sequence[int]] = None  # None: fronts.light_channels(conv_layers)
    mel_bins: int = 80
    mel_channels: Optional[int] = None  # None: the CNN's output width, conv_layers[-1][0]
    extractor_mode: str = "group_norm"
    conv_bias: bool = False
    embed_dim: int = 768
    num_layers: int = 2
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    predictor_hidden_dim: int = 256
    predictor_kernel_size: int = 5
    # "cif": variable-length compression at any period; "fixed": average pooling baseline.
    compression: str = "cif"
    # Periods (ms) the model was trained for; ofa_ssl_train derives it from rate_conf (in
    # the lam modes with the predictor's mean alpha measured after training, below).
    frame_period_range: Tuple[float, float] = DEFAULT_PERIOD_RANGE_MS
    # The alpha predictor's mean weight per 20 ms frame, measured on data at the end of
    # pretraining (espnet_ofa.models.trained_range); None where it was not measured.
    mean_alpha: Optional[float] = None
    # Period used when forward gets neither frame_period nor lam in "fixed" mode.
    default_frame_period: float = 40.0
    target_layers: Sequence[int] = DISTILLED_LAYERS
    target_dim: int = 768

    def __post_init__(self) -> None:
        self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)
        self.frame_period_range = tuple(float(v) for v in self.frame_period_range)
        self.target_layers = tuple(int(v) for v in self.target_layers)
        if self.light_channels is not None:
            self.light_channels = tuple(int(v) for v in self.light_channels)
        if self.front not in FRONTS:
            raise ValueError(f"front must be one of {', '.join(FRONTS)}, got {self.front!r}")
        if self.light_channels is not None and (
                len(self.light_channels) != len(self.conv_layers)
                or min(self.light_channels) < 1):
            raise ValueError(
                f"light_channels must give one positive width per conv layer "
                f"({len(self.conv_layers)}), got {list(self.light_channels)}; or leave it null"
            )
        if self.mel_channels is None:
            self.mel_channels = int(self.conv_layers[-1][0])
        if self.mel_bins < 1 or self.mel_channels < 1:
            raise ValueError(
                f"mel_bins and mel_channels must be positive, got {self.mel_bins}, {self.mel_channels}")
        if self.compression not in ("cif", "fixed"):
            raise ValueError(f"compression must be 'cif' or 'fixed', got {self.compression!r}")
        if self.mean_alpha is not None:
            self.mean_alpha = float(self.mean_alpha)
            if not 0.0 < self.mean_alpha <= 1.0:
                raise ValueError(f"mean_alpha must be in (0, 1] (a measured mean of the "
                                 f"predictor's weights) or null, got {self.mean_alpha}")
        low, high = self.frame_period_range
        if not (INPUT_PERIOD_MS <= low <= high and math.isfinite(high)):
            raise ValueError(
                f"frame_period_range must satisfy {INPUT_PERIOD_MS:g} <= low <= high < inf "
                f"(ms; {INPUT_PERIOD_MS:g} is the CNN's frame period), got {low, high}"
            )
        stride = 1
        for _, _, s in self.conv_layers:
            stride *= s
        if stride != FRAME_HOP:
            raise ValueError(
                f"conv_layers must have a total stride of {FRAME_HOP} samples "
                f"({INPUT_PERIOD_MS:g} ms at {SAMPLE_RATE // 1000} kHz), got {stride}"
            )

    def to_dict(self) -> dict:
        """Plain (YAML-safe) dict of the config: tuples become lists."""
        def plain(value):
            return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @property
    def receptive_field(self) -> int:
        """Samples the front needs for one output frame."""
        if self.front == "mel":
            return MEL_WINDOW
        field_, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            field_ += (kernel - 1) * jump
            jump *= stride
        return field_


@dataclass
class StudentOutput:
    """What `OFAStudent.forward` returns.

    Attributes:
        hidden: the Transformer's input and each layer's output, (B, T', D) each, at the
            compressed rate (len = num_layers + 1).
        lengths: (B,) valid compressed frames.
        frame_lengths: (B,) valid 20 ms frames before compression.
        alpha_pred: (B, T) the predictor's unmixed weights (None in fixed mode).
        compression: the `CIFOutput` used; its weights compress teacher targets alike.
    """

    hidden: List[torch.Tensor]
    lengths: torch.Tensor
    frame_lengths: torch.Tensor
    alpha_pred: Optional[torch.Tensor]
    compression: CIFOutput = field(repr=False)

    @property
    def last_hidden(self) -> torch.Tensor:
        return self.hidden[-1]


def _attention_mask(lengths: torch.Tensor, max_len: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, T, T) additive mask in torchaudio's convention (a large negative on padding)."""
    pad = torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]
    return (-10000.0 * pad[:, None, None, :].to(dtype)).expand(-1, 1, max_len, max_len)


def wav2vec2_encoder(in_features: int, config: StudentConfig) -> nn.Module:
    """torchaudio's wav2vec 2.0 encoder (``.feature_projection``: in_features -> embed_dim,
    ``.transformer``) sized by ``config``, from the public ``wav2vec2_model``.

    The factory's CNN only sets the projection's input width: a one-layer 1x1 convolution
    with ``in_features`` channels, dropped here.
    """
    model = wav2vec2_model(
        extractor_mode="group_norm",
        extractor_conv_layer_config=[(int(in_features), 1, 1)],
        extractor_conv_bias=False,
        encoder_embed_dim=config.embed_dim,
        encoder_projection_dropout=config.dropout,
        encoder_pos_conv_kernel=config.pos_conv_kernel,
        encoder_pos_conv_groups=config.pos_conv_groups,
        encoder_num_layers=config.num_layers,
        encoder_num_heads=config.num_heads,
        encoder_attention_dropout=config.attention_dropout,
        encoder_ff_interm_features=config.ffn_dim,
        encoder_ff_interm_dropout=config.activation_dropout,
        encoder_dropout=config.dropout,
        encoder_layer_norm_first=config.layer_norm_first,
        encoder_layer_drop=0.0,
        aux_num_out=None,
    )
    return model.encoder


class OFAStudent(nn.Module):
    """Once-for-all student SSL model. See the module docstring for the layout."""

    def __init__(self, config: Optional[StudentConfig] = None, **overrides) -> None:
        super().__init__()
        config = config or StudentConfig(**overrides)
        self.config = config
        # Named feature_extractor for every front: a "cnn" front has torchaudio's layout
        # under it, so checkpoints and the teacher's CNN load as before.
        self.feature_extractor = build_front(
            config.front, config.conv_layers, config.extractor_mode, config.conv_bias,
            channels=config.light_channels, n_mels=config.mel_bins,
            mel_channels=config.mel_channels,
        )
        # The projection and the Transformer of torchaudio's wav2vec 2.0 encoder; the
        # compression goes between the two, so they are kept as separate modules.
        encoder = wav2vec2_encoder(self.feature_extractor.output_dim, config)
        self.feature_projection = encoder.feature_projection
        self.transformer = encoder.transformer
        self.alpha_predictor = (
            AlphaPredictor(config.embed_dim, config.predictor_hidden_dim, config.predictor_kernel_size)
            if config.compression == "cif" else None
        )
        self.heads = nn.ModuleList(
            nn.Linear(config.embed_dim, config.target_dim) for _ in config.target_layers
        )

    @property
    def output_size(self) -> int:
        return self.config.embed_dim

    @property
    def num_hidden(self) -> int:
        """Hidden states returned by forward: the Transformer's input and each layer."""
        return self.config.num_layers + 1

    def check_waveforms(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> torch.Tensor:
        """`check_waveform_batch`'s rules at the cost of one host synchronisation.

        A batch that passes costs one device-to-host copy of a flag (the fast path of
        inference); only a bad batch runs the full check, which names the problem.
        Returns ``wav``, as float32 when it was float64 or a numpy array.
        """
        wav = as_float32(wav)
        if (torch.is_tensor(wav) and wav.is_floating_point() and wav.dim() == 2
                and wav.shape[0] > 0 and wav.device.type != "meta" and torch.is_tensor(wav_lengths)
                and wav_lengths.device.type != "meta"
                and wav_lengths.dim() == 1 and wav_lengths.shape[0] == wav.shape[0]
                and not (wav_lengths.is_floating_point() or wav_lengths.is_complex())):
            lengths = wav_lengths.to(wav.device)
            valid = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]
            bad = ((lengths < self.config.receptive_field) | (lengths > wav.shape[1])).any()
            bad = bad | (valid & ~torch.isfinite(wav)).any()
            if not bool(bad):
                return wav
        check_waveform_batch(wav, wav_lengths, min_samples=self.config.receptive_field)
        raise AssertionError("check_waveforms and check_waveform_batch disagree")  # a bug

    def enable_compile(self, backend: str = "inductor") -> None:
        """Run the front, the projection and the Transformer through `torch.compile`.

        Dynamic shapes, so batch and utterance lengths do not recompile (CIF, whose output
        length depends on the data, stays eager between them). Where compiling fails (no
        C++ compiler, an unsupported platform), a warning says so and the part runs eagerly.
        Parameters and state-dict keys are unchanged.
        """
        self._compiled = {
            name: CompiledOrEager(fn, f"the student's {name}", backend)
            for name, fn in (("front", self.feature_extractor),
                             ("projection", self.feature_projection), ("encode", self.encode))
        }

    def _call(self, name: str, fn, *args):
        compiled = getattr(self, "_compiled", None)
        return compiled[name](*args) if compiled else fn(*args)

    def check_rate(self, rate: Rate) -> Rate:
        """Return ``rate`` if this model can serve it, else raise ValueError naming the fix."""
        rate.check_within(self.config.frame_period_range)
        if rate.lam is not None and self.config.compression == "fixed":
            raise ValueError("lam needs the alpha predictor; a 'fixed' model takes frame_period")
        return rate

    def resolve_rate(self, frame_period: Optional[float] = None,
                     lam: Optional[float] = None) -> Rate:
        """The checked `Rate` of a request; neither field asks for the model's default:
        the predictor's own rate (lam = 1) for "cif", ``default_frame_period`` for "fixed"."""
        if frame_period is None and lam is None:
            if self.alpha_predictor is None:
                return self.check_rate(Rate(frame_period=self.config.default_frame_period))
            return self.check_rate(Rate(lam=1.0))
        return self.check_rate(Rate(frame_period=frame_period, lam=lam))

    def compression_weights(
        self, frames: torch.Tensor, lengths: torch.Tensor,
        frame_period: Optional[float] = None, lam: Optional[float] = None,
        output_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(alpha for CIF in float64, unmixed alpha_pred or None), both (B, T).

        float64: the fire count is decided on these weights (see espnet_ofa.compression.rate).
        Unchecked (no host synchronisation): a sigmoid's output and the extractor's lengths
        are valid by construction, and `cif` checks the weights in the one transfer that
        sizes its output.
        ``output_lengths`` (B,) replaces the counts the rate would give (see `forward`).
        """
        rate = self.resolve_rate(frame_period, lam)
        if output_lengths is not None:
            alpha_pred = None
            if self.alpha_predictor is not None:
                alpha_pred = self.alpha_predictor(frames, lengths)
            # A fixed-rate model pools uniformly: uniform predictions, scaled to the counts.
            pred = alpha_pred if alpha_pred is not None else torch.ones(
                frames.shape[:2], dtype=torch.float64, device=frames.device)
            return alpha_for_lengths(pred, lengths, output_lengths), alpha_pred
        if self.alpha_predictor is None:
            return fixed_rate_alpha(lengths, frames.shape[1], rate.frame_period,
                                    checked=False), None
        alpha_pred = self.alpha_predictor(frames, lengths)
        return rate_alpha(alpha_pred, lengths, frame_period=rate.frame_period,
                          lam=rate.lam, checked=False), alpha_pred

    def encode(self, frames: torch.Tensor, lengths: torch.Tensor) -> List[torch.Tensor]:
        """(B, T', D) compressed frames -> [input to layer 1, output of each layer]."""
        mask = _attention_mask(lengths, frames.shape[1], frames.dtype)
        transformer = self.transformer
        # What torchaudio's Transformer runs before its first layer (as the teacher does):
        # positional conv, its layer norm when layer_norm_first, dropout.
        x = frames + transformer.pos_conv_embed(frames)
        if transformer.layer_norm_first:
            x = transformer.layer_norm(x)
        x = transformer.dropout(x)
        hidden = [x]
        for layer in transformer.layers:
            x, _ = layer(x, mask)
            hidden.append(x)
        return hidden

    def forward(
        self,
        wav: torch.Tensor,
        wav_lengths: torch.Tensor,
        frame_period: Optional[float] = None,
        lam: Optional[float] = None,
        output_lengths: Optional[torch.Tensor] = None,
    ) -> StudentOutput:
        """Run the model at the asked rate.

        Args:
            wav: (B, N) 16 kHz mono waveforms, zero-padded.
            wav_lengths: (B,) valid samples.
            frame_period: output frame period in ms, within ``frame_period_range``
                (each utterance of T input frames of ``INPUT_PERIOD_MS`` (20 ms) gets
                ``round(T * INPUT_PERIOD_MS / frame_period)``).
            lam: the paper's lambda in [0, 2] instead. Neither: the predictor's own rate
                ("cif") or ``default_frame_period`` ("fixed").
            output_lengths: (B,) output frames per utterance, each in [1, T], instead of
                the counts the rate gives (the rate is still checked): for a caller with
                its own length rule, such as s3prl's (`espnet_ofa.integrations.s3prl`).
        """
        wav = self.check_waveforms(wav, wav_lengths)
        rate = self.resolve_rate(frame_period, lam)  # before the CNN's cost
        feats, frame_lengths = self._call("front", self.feature_extractor, wav, wav_lengths)
        frames = self._call("projection", self.feature_projection, feats)
        # The weights and CIF in float32 even under autocast: output lengths are floor(sum
        # of alpha), which bf16's 8-bit mantissa would miss by a frame.
        with torch.autocast(wav.device.type, enabled=False):
            frames = frames.float()
            alpha, alpha_pred = self.compression_weights(frames, frame_lengths,
                                                         rate.frame_period, rate.lam,
                                                         output_lengths)
            compressed = cif(frames, alpha, frame_lengths)
        hidden = self._call("encode", self.encode, compressed.frames, compressed.lengths)
        return StudentOutput(
            hidden=hidden,
            lengths=compressed.lengths,
            frame_lengths=frame_lengths,
            alpha_pred=alpha_pred,
            compression=compressed,
        )

    def predict(self, last_hidden: torch.Tensor) -> List[torch.Tensor]:
        """(B, T', D) -> one (B, T', target_dim) prediction per target teacher layer."""
        return [head(last_hidden) for head in self.heads]


class CompiledOrEager:
    """``torch.compile(fn, dynamic=True)``, falling back to ``fn`` (with a warning) when
    compiling fails. Not a Module: the wrapped module's parameters stay where they are.
    Used by `OFAStudent.enable_compile` and the benchmarks' ``--compile``."""

    def __init__(self, fn, name: str, backend: str) -> None:
        self.eager, self.name, self.backend = fn, name, backend
        try:
            self.compiled = torch.compile(fn, dynamic=True, backend=backend)
        except Exception as err:  # e.g. torch.compile unsupported on this Python
            self._give_up(err)

    def _give_up(self, err: Exception) -> None:
        warnings.warn(f"torch.compile is unavailable for {self.name} "
                      f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                      "running it eagerly", RuntimeWarning, stacklevel=3)
        self.compiled = None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as err:  # compile errors surface on the first call; a real
                self._give_up(err)    # error in fn raises again below, eagerly
        return self.eager(*args)


TINY_PRESET = dict(
    conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)],
    embed_dim=64, num_layers=2, num_heads=2, ffn_dim=128, pos_conv_kernel=16, pos_conv_groups=4,
    predictor_hidden_dim=32, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    target_layers=(1, 2), target_dim=64,
)


# "distilhubert" is StudentConfig's defaults; "tiny" keeps the 20 ms CNN geometry at 64-d.
PRESETS = {"distilhubert": {}, "tiny": TINY_PRESET}


def build_student(preset: str = "distilhubert", **overrides) -> OFAStudent:
    """Build a student from a named preset plus YAML overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown student preset {preset!r}; choose one of {sorted(PRESETS)}")
    return OFAStudent(StudentConfig(**{**PRESETS[preset], **overrides}))
