"""``frontend: ssl_teacher``: a frozen off-the-shelf SSL model as an ESPnet frontend.

The model a user would take instead of an OFA model: HuBERT, WavLM or wav2vec 2.0 (a
torchaudio bundle, a fairseq, Hugging Face or torchaudio checkpoint) or an ESPnet
hubert_train experiment, such as the teacher an OFA model was distilled from. With
``pooled_period`` it is the pooled rival of Zaiem et al. (ICASSP 2023): the SSL model pays
its full 20 ms sequence, and only the downstream sees a shorter one.

    waveform (B, N) at 16 kHz
      -> teacher (CNN -> Transformer at its 20 ms)                      [frozen, eval mode]
      -> one hidden state (``layer: k``) or a learned weighted sum (``layer: -1``)
      -> (B, T, D) features, T = (N - 400) // 320 + 1 for the standard CNN
      -> average-pooled by k = pooled_period / 20 (``pooled_period``): (B, ceil(T / k), D)

The layer mix and the pool are those of ``frontend: ofa`` (`espnet_ofa.frontend.layers`,
`espnet_ofa.frontend.pooling`), so a downstream on this frontend differs from one on the
OFA model only in the SSL model under it.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Dict, Optional, Tuple, Union

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.frontend.layers import WeightedLayerSum, check_layer
from espnet_ofa.frontend.ofa import parse_fs
from espnet_ofa.frontend.pooling import average_pool, pool_factor
from espnet_ofa.teachers import LOCAL_FORMATS_HELP, Teacher, TeacherLoadError, load_teacher

logger = logging.getLogger(__name__)


def teacher_options(frontend_conf: Dict[str, Any]) -> Dict[str, Any]:
    """``frontend: ssl_teacher``'s options with the defaults of `SSLTeacherFrontend` (its
    signature) filled in; an unknown option is an error that lists the known ones."""
    names = list(inspect.signature(SSLTeacherFrontend.__init__).parameters.values())[1:]
    unknown = sorted(set(frontend_conf) - {p.name for p in names})
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for frontend: ssl_teacher; it takes "
                         f"{[p.name for p in names]}")
    return {**{p.name: p.default for p in names}, **frontend_conf}


class SSLTeacherFrontend(AbsFrontend):
    """A frozen SSL teacher as an ESPnet frontend (``frontend: ssl_teacher``).

    Args:
        fs: sample rate of the data; must be 16 kHz (16000 or "16k").
        source: what `espnet_ofa.teachers.load_teacher` loads: a torchaudio bundle name
            (``HUBERT_BASE``, ``WAVLM_BASE_PLUS``, ...), a fairseq ``.pt``, a Hugging Face
            directory, a torchaudio ``.pth`` or an ESPnet hubert_train experiment
            (e.g. ``../ssl1/exp/hubert_train_hubert_small``).
        teacher_conf: more keyword arguments of ``load_teacher`` (e.g. ``checkpoint`` of
            an ESPnet experiment, ``normalize_waveform``).
        layer: -1 for a learned softmax-weighted sum of all hidden states, or k for hidden
            state k only (0 = the Transformer's input, num_layers = its last layer).
        pooled_period: average-pool the features to this period (ms), an integer multiple
            of the teacher's own (20 ms); None keeps the teacher's period.

    The teacher is frozen: no gradient reaches it and it stays in eval mode (no dropout)
    when the model trains; only the layer weights of ``layer: -1`` learn.

    Shapes: ``forward((B, N) waveforms, (B,) samples) -> ((B, T', D), (B,) frames)``, where
    ``T'`` is the teacher's frame count T, or ``ceil(T / k)`` pooled by k; D =
    `output_size`. Rows past each length are zero.
    """

    def __init__(
        self,
        fs: Union[int, str] = SAMPLE_RATE,
        source: Optional[str] = None,
        teacher_conf: Optional[Dict[str, Any]] = None,
        layer: int = -1,
        pooled_period: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.fs = parse_fs(fs)
        if source is None or str(source).strip() == "":
            raise TeacherLoadError(
                "frontend_conf.source is required: the SSL model to run, e.g. HUBERT_BASE or "
                "../ssl1/exp/hubert_train_hubert_small (the teacher an ssl1 recipe trained)\n"
                f"{LOCAL_FORMATS_HELP}")
        self.source = os.fspath(source)
        self.teacher_conf = dict(teacher_conf or {})
        self.teacher = self._load()
        num_hidden = self.teacher.num_layers + 1
        self.layer = check_layer(layer, num_hidden, model="teacher")
        # Only the hidden states used are computed: the Transformer stops at the deepest.
        self.teacher.layers = tuple(range(num_hidden)) if self.layer == -1 else (self.layer,)
        self.layer_mix = WeightedLayerSum(num_hidden) if self.layer == -1 else None
        self.frame_period = 1000.0 * self.teacher.frame_shift / SAMPLE_RATE
        self.pooled_period = None if pooled_period is None else float(pooled_period)
        self.pool = (None if pooled_period is None
                     else pool_factor(pooled_period, self.frame_period))

    def _load(self) -> Teacher:
        # layers: a placeholder until the depth is known (one hidden state is always there).
        return load_teacher(self.source, layers=(0,), **self.teacher_conf)

    def output_size(self) -> int:
        return self.teacher.hidden_size

    def reload_pretrained_parameters(self) -> None:
        """Restore the teacher's weights after ESPnet's ``init:`` redrew every matrix, and
        restart the layer weights from the plain average."""
        self.teacher.load_state_dict(self._load().state_dict())
        if self.layer_mix is not None:
            self.layer_mix.reset_parameters()
        logger.info("SSL teacher frontend: pretrained weights reloaded from %s", self.source)

    def extra_stats(self) -> Dict[str, float]:
        """The frame period the downstream sees, reported each step like ``frontend: ofa``."""
        return {"frame_period": self.pooled_period or self.frame_period}

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N) 16 kHz waveforms, (B,) samples -> (B, T', D) features, (B,) frames."""
        out = self.teacher(input, input_lengths)  # no_grad and eval mode: Teacher's own
        if out.lengths.numel() and int(out.lengths.min()) == 0:
            raise ValueError(
                f"an utterance of {int(input_lengths.min())} samples is shorter than the "
                f"teacher's receptive field ({self.teacher.receptive_field} samples, "
                f"{1000 * self.teacher.receptive_field / SAMPLE_RATE:g} ms): remove such "
                "utterances from the data (e.g. a minimum duration when preparing it)")
        if self.layer_mix is not None:
            feats = self.layer_mix(out.hidden)
        else:
            feats = out.hidden[0]
        if self.pool is not None:
            return average_pool(feats, out.lengths, self.pool)
        return feats, out.lengths

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, layer={self.layer}, "
                f"pooled_period={self.pooled_period}")
