"""An OFA SSL model as a Hugging Face ``transformers`` model (``trust_remote_code``).

`espnet_ofa.export.huggingface` writes this module into an exported model directory as
``modeling_ofa.py``, with its ``espnet_ofa`` imports rewritten to the copies of the student's
modules written beside it, so that the directory needs only torch, torchaudio and
transformers. In this package it is an ordinary module (the tests use it as one).

    model = AutoModel.from_pretrained(DIR, trust_remote_code=True)
    out = model(input_values, attention_mask=mask, frame_period=40.0)   # or lam=0.5
    out.last_hidden_state   (B, T', D), zero past each length
    out.hidden_states       the Transformer's input and each layer's output, (B, T', D) each
    out.output_lengths      (B,) round(T * 20 / frame_period), T = (N - 400) // 320 + 1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from espnet_ofa.models.student import SAMPLE_RATE, OFAStudent, StudentConfig


class OFAConfig(PretrainedConfig):
    """The student's `StudentConfig` fields (``student_conf``) and the audio's sample rate."""

    model_type = "espnet_ofa"

    def __init__(self, student_conf: Optional[dict] = None, sampling_rate: int = SAMPLE_RATE,
                 **kwargs) -> None:
        self.student_conf = dict(student_conf or {})
        self.sampling_rate = int(sampling_rate)
        super().__init__(**kwargs)

    @property
    def frame_period_range(self) -> Tuple[float, float]:
        """(low, high) ms the model was trained for."""
        return StudentConfig(**self.student_conf).frame_period_range


@dataclass
class OFAModelOutput(ModelOutput):
    """What `OFAModel.forward` returns; rows past ``output_lengths`` are zero."""

    last_hidden_state: Optional[torch.Tensor] = None
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    output_lengths: Optional[torch.Tensor] = None


def lengths_from_attention_mask(attention_mask: torch.Tensor, num_samples: int) -> torch.Tensor:
    """(B, N) 1/0 (or bool) mask of valid samples, ones first -> (B,) valid samples."""
    if attention_mask.dim() != 2 or attention_mask.shape[1] != num_samples:
        raise ValueError(
            f"attention_mask must be (batch, {num_samples}) like input_values, got shape "
            f"{tuple(attention_mask.shape)}")
    valid = attention_mask.bool()
    lengths = valid.sum(dim=1)
    positions = torch.arange(num_samples, device=valid.device)[None, :]
    if bool((valid != (positions < lengths[:, None])).any()):
        raise ValueError(
            "attention_mask must mark each utterance's valid samples as a run of ones at the "
            "start followed by zeros (right padding), as the feature extractor returns it")
    return lengths


class OFAModel(PreTrainedModel):
    """A once-for-all SSL model whose output frame period is chosen per call.

    ``forward(input_values (B, N) 16 kHz, attention_mask (B, N), frame_period= ms | lam=)``.
    With neither rate, the model runs at its rate predictor's own rate (lam = 1).
    """

    config_class = OFAConfig
    base_model_prefix = "ofa"
    main_input_name = "input_values"

    def __init__(self, config: OFAConfig) -> None:
        super().__init__(config)
        # The distillation heads are not part of the exported model: no targets. Built on
        # the CPU even inside from_pretrained's meta-device context: the mel front computes
        # its filterbank (a non-persistent buffer, not in the weights file) at construction.
        with torch.device("cpu"):
            self.student = OFAStudent(
                StudentConfig(**{**config.student_conf, "target_layers": ()}))
        # from_pretrained replaces non-persistent buffers with empty tensors and asks
        # _init_weights to fill them again: keep what the constructors computed.
        self._computed_buffers = {
            (id(module), name): buffer.detach().clone()
            for module in self.modules()
            for name, buffer in module.named_buffers(recurse=False)
            if name in module._non_persistent_buffers_set
        }
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Weights come from the checkpoint; computed buffers are restored."""
        for name in module._non_persistent_buffers_set:
            value = self._computed_buffers.get((id(module), name))
            if value is not None:
                buffer = getattr(module, name)
                with torch.no_grad():
                    buffer.copy_(value.to(buffer.device, buffer.dtype))

    @property
    def frame_period_range(self) -> Tuple[float, float]:
        return self.student.config.frame_period_range

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        frame_period: Optional[float] = None,
        lam: Optional[float] = None,
        sampling_rate: Optional[int] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        """(B, N) waveforms at 16 kHz (zero-padded on the right) -> `OFAModelOutput`.

        Args:
            input_values: (B, N) float waveforms, or (N,) for one utterance.
            attention_mask: (B, N), 1 on valid samples; None: every sample is valid.
            frame_period: output frame period in ms, within ``frame_period_range``.
            lam: the OFA paper's lambda in [0, 2], instead of ``frame_period``.
            sampling_rate: the audio's rate in Hz, checked against the model's 16 kHz.
            output_hidden_states: False leaves ``hidden_states`` out (None: included).
        """
        if sampling_rate is not None and int(sampling_rate) != self.config.sampling_rate:
            raise ValueError(
                f"sampling_rate={sampling_rate}: this OFA model reads "
                f"{self.config.sampling_rate} Hz audio; resample first (e.g. "
                f"torchaudio.functional.resample(wav, {sampling_rate}, "
                f"{self.config.sampling_rate}))")
        if torch.is_tensor(input_values) and input_values.dim() == 1:
            input_values = input_values[None, :]
            if attention_mask is not None and attention_mask.dim() == 1:
                attention_mask = attention_mask[None, :]
        if not torch.is_tensor(input_values) or input_values.dim() != 2:
            shape = tuple(input_values.shape) if torch.is_tensor(input_values) else type(
                input_values).__name__
            raise ValueError(f"input_values must be a (batch, samples) mono waveform tensor, "
                             f"got {shape}; mix multi-channel audio down to mono first")
        if attention_mask is None:
            lengths = torch.full((input_values.shape[0],), input_values.shape[1],
                                 dtype=torch.long, device=input_values.device)
        else:
            lengths = lengths_from_attention_mask(attention_mask.to(input_values.device),
                                                  input_values.shape[1])
        out = self.student(input_values, lengths, frame_period=frame_period, lam=lam)
        valid = (torch.arange(out.hidden[0].shape[1], device=out.lengths.device)[None, :]
                 < out.lengths[:, None])[..., None]
        hidden = tuple(h.masked_fill(~valid, 0.0) for h in out.hidden)
        result = OFAModelOutput(
            last_hidden_state=hidden[-1],
            hidden_states=None if output_hidden_states is False else hidden,
            output_lengths=out.lengths)
        use_dict = self.config.return_dict if return_dict is None else return_dict
        return result if use_dict else result.to_tuple()
