"""The frozen teacher: one interface over every supported source of SSL weights.

Every loader in this package ends by building a torchaudio
:class:`~torchaudio.models.Wav2Vec2Model` (HuBERT, wav2vec 2.0 and WavLM all share
that class) and wrapping it in :class:`Teacher`, so the distillation code sees one
thing whatever the checkpoint came from.

Layer numbering (``Teacher.layers``): ``0`` is the input to the first Transformer
layer, i.e. CNN -> feature projection -> convolutional positional embedding (-> the
encoder layer norm for post-LN "Base" models); ``k >= 1`` is the raw output of
Transformer layer ``k`` as torchaudio's ``extract_features`` returns it (for pre-LN
"Large" models this is *before* the final encoder layer norm). Negative indices count
from the end (``-1`` is the last layer). This is the numbering of Hugging Face's
``output_hidden_states`` too: checked against transformers 5.17 for wav2vec 2.0
(post- and pre-LN), HuBERT and WavLM, whose ``hidden_states[k]`` equal ``hidden[k]``
here to 4e-6.

Padding: the CNN normalises over valid samples only and the Transformer ignores padded
frames (attention mask; for WavLM a key padding mask, which torchaudio's own
``extract_features`` cannot apply to WavLM), so an utterance's hidden states do not depend
on the batch it is in.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from espnet_ofa.constants import DISTILLED_LAYERS
from espnet_ofa.models.fronts import conv_stack

# One line per accepted local format; appended to load errors so that a user who hits
# one knows what else would work (e.g. offline, instead of a bundle name).
LOCAL_FORMATS_HELP = """\
Accepted teacher sources for load_teacher(source, layers, ...):
  * a torchaudio bundle name: HUBERT_BASE, HUBERT_LARGE, WAVLM_BASE, WAVLM_BASE_PLUS,
    WAV2VEC2_BASE (or any other torchaudio.pipelines Wav2Vec2Bundle); downloads once
  * a fairseq / unilm checkpoint file (.pt: a dict with 'cfg' or 'args' and 'model'),
    e.g. hubert_base_ls960.pt, wav2vec_small.pt, WavLM-Base+.pt
  * a Hugging Face model directory: config.json + pytorch_model.bin (or
    model.safetensors, which needs the 'safetensors' package)
  * a torchaudio checkpoint (.pth): {'torchaudio_factory': 'hubert_base', 'factory_kwargs':
    {...}, 'state_dict': {...}} as written by espnet_ofa.teachers.save_torchaudio_checkpoint,
    or a bare torchaudio state dict with load_teacher(path, factory='hubert_base')
  * an ESPnet hubert_train experiment (encoder torchaudio_hubert): its directory or
    config.yaml, with valid.loss.best.pth / latest.pth there or checkpoint='x.pth'"""


class TeacherLoadError(ValueError):
    """A teacher source could not be loaded; the message names the problem and a fix."""


@dataclass
class TeacherOutput:
    """What :meth:`Teacher.forward` returns.

    Attributes:
        hidden: one (B, T, D) tensor per entry of ``Teacher.layers``, in that order,
            at the teacher's frame rate (20 ms for the standard CNN, where
            ``T = (N - 400) // 320 + 1`` for N padded samples). Frames at or past
            ``lengths`` are zero.
        lengths: (B,) int64 number of valid frames per utterance.
    """

    hidden: List[Tensor]
    lengths: Tensor


def _conv_specs(model: torch.nn.Module) -> List[Tuple[int, int]]:
    """(kernel, stride) of each conv layer of a torchaudio FeatureExtractor."""
    return [
        (int(block.conv.kernel_size[0]), int(block.conv.stride[0]))
        for block in model.feature_extractor.conv_layers
    ]


def normalize_waveform(wav: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance zero mean, unit variance over the valid samples.

    fairseq normalises each utterance before padding (``F.layer_norm(wav, wav.shape)``)
    for the models trained with ``normalize: true`` (HuBERT/wav2vec 2.0 Large, XLSR,
    WavLM Large). torchaudio's bundle wrapper normalises the whole padded batch as one
    tensor instead, which mixes utterances; this does it per utterance.

    Args:
        wav: (B, N) padded waveforms.
        lengths: (B,) valid samples.
    Returns:
        (B, N) normalised waveforms, zero past ``lengths``.
    """
    mask = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]
    count = lengths.clamp_min(1).to(wav.dtype)[:, None]
    wav = wav.masked_fill(~mask, 0.0)
    mean = wav.sum(dim=1, keepdim=True) / count
    var = ((wav - mean).masked_fill(~mask, 0.0) ** 2).sum(dim=1, keepdim=True) / count
    return ((wav - mean) / torch.sqrt(var + eps)).masked_fill(~mask, 0.0)


class Teacher(torch.nn.Module):
    """Frozen SSL teacher: eval mode, ``requires_grad`` False, forward under no_grad.

    Args:
        model: a torchaudio ``Wav2Vec2Model`` (HuBERT, wav2vec 2.0 or WavLM).
        layers: which hidden layers :meth:`forward` returns (see the module docstring
            for the numbering); negative indices count from the end.
        normalize_waveform: normalise each utterance to zero mean / unit variance
            before the CNN (the models trained that way need it).
        waveform_transform: optional ``(wav, lengths) -> (wav, lengths)`` applied to a
            copy of the input first (e.g. ESPnet's ``UtteranceMVN`` that an ESPnet
            hubert_train model saw during training).
        cnn_per_utterance: run the CNN on each utterance's valid samples alone, one
            call per utterance. Off by default: the batched CNN gives the same frames (its
            first block, a group norm over time in "group_norm" models such as
            HuBERT/wav2vec 2.0 Base, uses each utterance's valid steps only, see
            `espnet_ofa.models.fronts.masked_group_norm`), so a teacher target does not
            depend on the batch it landed in either way; kept for checking that.
        source: a human-readable description of where the weights came from.
        factory, factory_kwargs: the ``torchaudio.models`` function and arguments that
            rebuild ``model`` (when known), so that
            :func:`~espnet_ofa.teachers.save_torchaudio_checkpoint` can write the teacher
            in the plain, pickle-free torchaudio format.

    Attributes:
        layers: the resolved (non-negative) layer indices.
        hidden_size: D, the Transformer width.
        num_layers: number of Transformer layers of the model.
        feature_extractor: the model's CNN waveform encoder (torchaudio
            ``FeatureExtractor``), so a student can copy its weights.
        receptive_field, frame_shift: of the CNN, in samples (400 and 320 standard).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layers: Sequence[int] = DISTILLED_LAYERS,
        *,
        normalize_waveform: bool = False,
        waveform_transform: Optional[Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]] = None,
        cnn_per_utterance: bool = False,
        source: str = "",
        factory: Optional[str] = None,
        factory_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        if not (hasattr(model, "feature_extractor") and hasattr(model, "encoder")):
            raise TypeError(
                f"Teacher needs a torchaudio Wav2Vec2Model, got {type(model).__name__}"
            )
        self.model = model
        # The CTC head of fine-tuned models is never used for hidden states.
        if getattr(model, "aux", None) is not None:
            model.aux = None
        self.waveform_transform = waveform_transform
        self.normalize_waveform = bool(normalize_waveform)
        self.source = source
        self.factory = factory
        self.factory_kwargs = dict(factory_kwargs) if factory_kwargs is not None else None
        self.num_layers = len(model.encoder.transformer.layers)
        self.hidden_size = int(model.encoder.feature_projection.projection.out_features)
        self.layers = self._resolve_layers(layers)

        specs = _conv_specs(model)
        self.frame_shift = 1
        self.receptive_field = 1
        for kernel, stride in reversed(specs):
            self.receptive_field = (self.receptive_field - 1) * stride + kernel
        for _, stride in specs:
            self.frame_shift *= stride
        self.cnn_per_utterance = bool(cnn_per_utterance)
        self._is_wavlm = hasattr(model.encoder.transformer.layers[0].attention, "rel_attn_embed")

        for param in self.parameters():
            param.requires_grad_(False)
        super().train(False)

    def _resolve_layers(self, layers: Sequence[int]) -> Tuple[int, ...]:
        if isinstance(layers, int) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise ValueError(f"layers must be a non-empty sequence of ints, got {layers!r}")
        resolved = []
        for layer in layers:
            try:  # ints, numpy ints, 0-d integer tensors; not bools or floats
                if isinstance(layer, bool):
                    raise TypeError
                layer = operator.index(layer)
            except TypeError:
                raise ValueError(f"layers must be ints, got {layer!r} in {list(layers)}") from None
            index = layer + self.num_layers + 1 if layer < 0 else layer
            if not 0 <= index <= self.num_layers:
                raise ValueError(
                    f"teacher layer {layer} does not exist: this model has {self.num_layers} "
                    f"Transformer layers, so layers must lie in 0..{self.num_layers} "
                    f"(0 = input of the first layer) or -{self.num_layers + 1}..-1; "
                    f"pass e.g. layers={tuple(range(1, self.num_layers + 1))}"
                )
            resolved.append(index)
        return tuple(resolved)

    @property
    def feature_extractor(self) -> torch.nn.Module:
        """The CNN waveform encoder: (B, N) samples -> (B, T, C) frames."""
        return self.model.feature_extractor

    def train(self, mode: bool = True) -> "Teacher":
        """Stay in eval mode whatever is asked: a frozen teacher never runs dropout."""
        return super().train(False)

    def num_frames(self, wav_lengths: Tensor) -> Tensor:
        """(B,) samples -> (B,) frames the CNN gives (0 below the receptive field)."""
        frames = wav_lengths.to(torch.int64)
        for kernel, stride in _conv_specs(self.model):
            frames = torch.div(frames - kernel, stride, rounding_mode="floor") + 1
            frames = frames.clamp_min(0)
        return frames

    def _check_inputs(self, wav: Tensor, wav_lengths: Tensor) -> None:
        if not torch.is_tensor(wav) or wav.dim() != 2 or not wav.is_floating_point():
            shape = tuple(wav.shape) if torch.is_tensor(wav) else type(wav).__name__
            raise ValueError(f"wav must be a (batch, samples) float tensor, got {shape}")
        if (
            not torch.is_tensor(wav_lengths)
            or wav_lengths.dim() != 1
            or wav_lengths.shape[0] != wav.shape[0]
            or wav_lengths.is_floating_point()
        ):
            got = (
                f"{tuple(wav_lengths.shape)} {wav_lengths.dtype}"
                if torch.is_tensor(wav_lengths)
                else type(wav_lengths).__name__
            )
            raise ValueError(
                f"wav_lengths must be a ({wav.shape[0]},) integer tensor, got {got}"
            )
        if wav.shape[0] and (
            int(wav_lengths.min()) < 0 or int(wav_lengths.max()) > wav.shape[1]
        ):
            raise ValueError(
                f"wav_lengths must lie in [0, {wav.shape[1]}] (the padded length), "
                f"got {wav_lengths.tolist()}"
            )

    def _cnn(self, wav: Tensor, wav_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, N) -> (B, T, C) CNN frames and (B,) frame counts."""
        if not self.cnn_per_utterance:
            # torchaudio's FeatureExtractor would normalise over the padding too.
            return conv_stack(self.model.feature_extractor.conv_layers, wav, wav_lengths)
        frame_lengths = self.num_frames(wav_lengths)
        max_frames = int(self.num_frames(torch.tensor([wav.shape[1]]))[0])
        channels = self.model.feature_extractor.conv_layers[-1].conv.out_channels
        feats = wav.new_zeros(wav.shape[0], max_frames, channels)
        for i, (n, t) in enumerate(zip(wav_lengths.tolist(), frame_lengths.tolist())):
            if t > 0:  # too short for one frame: stays zero, length 0
                feats[i, :t] = self.model.feature_extractor(wav[i : i + 1, :n], None)[0][0]
        return feats, frame_lengths

    @torch.no_grad()
    def forward(self, wav: Tensor, wav_lengths: Tensor) -> TeacherOutput:
        """Hidden states of the requested layers.

        Args:
            wav: (B, N) 16 kHz waveforms, zero padded.
            wav_lengths: (B,) valid samples per utterance.
        Returns:
            :class:`TeacherOutput`: ``hidden`` is one (B, T, D) tensor per entry of
            ``self.layers``; ``lengths`` is (B,) frames. An utterance shorter than
            ``receptive_field`` samples gets 0 frames.
        """
        self._check_inputs(wav, wav_lengths)
        param = next(self.model.parameters())
        wav = wav.to(device=param.device, dtype=param.dtype)
        wav_lengths = wav_lengths.to(device=param.device, dtype=torch.int64)
        if self.waveform_transform is not None:
            # ESPnet's normalisers work in place: never touch the caller's tensor.
            wav, wav_lengths = self.waveform_transform(wav.clone(), wav_lengths)
        if self.normalize_waveform:
            wav = normalize_waveform(wav, wav_lengths)

        feats, lengths = self._cnn(wav, wav_lengths)
        states = self._encode(feats, lengths, deepest=max(self.layers))
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None]
        # Padded frames hold whatever attention produced there; zero them so targets
        # never carry garbage.
        hidden = [states[k].masked_fill(~valid[:, :, None], 0.0) for k in self.layers]
        return TeacherOutput(hidden=hidden, lengths=lengths)

    def _encode(self, feats: Tensor, lengths: Tensor, deepest: int) -> Dict[int, Tensor]:
        """(B, T, C) CNN frames -> {layer: (B, T, D)} for layers 0..deepest.

        The same computation as torchaudio's ``Wav2Vec2Model.extract_features``, run
        layer by layer here for three reasons: layer 0 (which torchaudio does not
        return) comes for free, nothing past ``deepest`` runs, and WavLM gets a padding
        mask: torchaudio's WavLM attention rejects the attention mask its Transformer
        passes, so torchaudio cannot run WavLM on a padded batch at all.
        """
        encoder = self.model.encoder
        transformer = encoder.transformer
        batch, frames, _ = feats.shape
        padding = torch.arange(frames, device=feats.device)[None, :] >= lengths[:, None]
        x = encoder.feature_projection(feats)
        # Zero the padding before the positional conv sees it (as torchaudio does).
        x = x.masked_fill(padding[:, :, None], 0.0)
        x = x + transformer.pos_conv_embed(x)
        # torchaudio's Transformer.layer_norm_first is True for post-LN ("Base")
        # models: their encoder layer norm comes before the layers, the pre-LN ones'
        # at the very end (which intermediate layers never see). Dropout: eval mode.
        if transformer.layer_norm_first:
            x = transformer.layer_norm(x)
        states = {0: x}
        if self._is_wavlm:
            attention_mask = None
            # Additive float, like the relative position bias it is added to.
            extra = {"key_padding_mask": -10000.0 * padding.to(x.dtype)}
        else:
            # Additive (B, 1, T, T) mask of torchaudio's Encoder (a broadcast view).
            attention_mask = (-10000.0 * padding[:, None, None, :].to(x.dtype)).expand(
                batch, 1, frames, frames
            )
            extra = {}
        position_bias = None  # WavLM's relative position bias, made by its first layer
        for k, layer in enumerate(transformer.layers[:deepest], start=1):
            x, position_bias = layer(x, attention_mask, position_bias=position_bias, **extra)
            states[k] = x
        return states

    def extra_repr(self) -> str:
        return (
            f"source={self.source!r}, layers={self.layers}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, normalize_waveform={self.normalize_waveform}, "
            f"cnn_per_utterance={self.cnn_per_utterance}"
        )
