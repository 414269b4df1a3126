"""Frozen SSL frontends whose features were computed beforehand: ``frontend: ofa_cached``
(the OFA model) and ``frontend: ssl_teacher_cached`` (an off-the-shelf SSL model such as the
teacher, `espnet_ofa.frontend.teacher`).

A frozen OFA model at a fixed period gives every utterance the same hidden states in every
epoch, and so does a frozen teacher, so the recipes compute them once
(`espnet_ofa.recipe.feature_cache`) and train the downstream on them. What stays trainable
is what the live frontend learns on top of its frozen model: the softmax weights of
``layer: -1``. So the cache holds every hidden state, stacked, and each cached frontend owns
the same `WeightedLayerSum` under the same name (``layer_mix.weights``): its state dict is
the trainable part of the live frontend's, and a model trained on the cache becomes a
waveform model by renaming the frontend (`espnet_ofa.registration.CACHED_FRONTENDS`,
`espnet_ofa.recipe.feature_cache.to_waveform_model`).

    cached features (B, T', L * D)  [L hidden states of D channels, or D for ``layer: k``]
      -> (B, T', L, D) -> learned weighted sum (``layer: -1``)  | as they are (``layer: k``)
      -> (B, T', D) features, the lengths unchanged
      -> average-pooled by k (``pooled_period``, the pooled rivals): (B, ceil(T' / k), D)

The pooled rivals run their SSL model at 20 ms and pool after the weighted sum, so they
train on the 20 ms cache (pooling and the weighted sum are both linear: the order is the
live frontend's, and the result equal).

Each cached frontend takes its live frontend's options (the checkpoint gives L and D, and
is what the waveform model will load); those that need the live OFA model (a learnable
rate, fine-tuning) are refused with the reason.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Tuple

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend

from espnet_ofa.compression import Rate
from espnet_ofa.frontend.layers import WeightedLayerSum, check_layer
from espnet_ofa.frontend.ofa import (OFAFrontend, ofa_options, parse_fs, resolve_model,
                                     ssl_frame_period)
from espnet_ofa.frontend.pooling import average_pool, pool_factor
from espnet_ofa.frontend.teacher import SSLTeacherFrontend, teacher_options
from espnet_ofa.models.pretrained import load_student


def needs_live_model(options: Dict[str, Any]) -> Optional[str]:
    """Why ``frontend: ofa`` with these options (`ofa_options`) cannot train on features
    computed once, or None when it can."""
    if options["learnable_rate"]:
        return "a learnable rate runs the OFA model at a new period every step"
    if options["rate_sampling"]:
        return "a sampled period runs the OFA model at a new period every batch"
    if options["probe_jitter"]:
        return "a jitter control runs the OFA model at two jittered periods every step"
    if not options["freeze"]:
        return "freeze: false fine-tunes the OFA model"
    return None


class _CachedHiddenStates(AbsFrontend):
    """What the cached frontends share: the layer mix over stacked hidden states, the mask
    past each length and the pool. Subclasses set `num_hidden`, `embed_dim`, `layer`,
    `layer_mix` and `pool` (`_setup`)."""

    def _setup(self, num_hidden: int, embed_dim: int, layer: int, pool: Optional[int],
               model: str = "OFA model") -> None:
        self.num_hidden = num_hidden
        self.embed_dim = embed_dim
        self.layer = check_layer(layer, num_hidden, model=model)
        self.layer_mix = WeightedLayerSum(num_hidden) if self.layer == -1 else None
        self.pool = pool

    def cached_dim(self) -> int:
        """Channels of one cached frame: L * D for ``layer: -1``, D for one layer."""
        return self.embed_dim * (self.num_hidden if self.layer_mix is not None else 1)

    def output_size(self) -> int:
        return self.embed_dim

    def reload_pretrained_parameters(self) -> None:
        """After ESPnet's ``init:`` reset: the layer weights start equal again, as in the
        live frontend's ``reload_pretrained_parameters``."""
        if self.layer_mix is not None:
            self.layer_mix.reset_parameters()

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T', L * D) cached features, (B,) frames -> (B, T', D), (B,) frames."""
        if input.dim() != 3 or input.shape[-1] != self.cached_dim():
            raise ValueError(
                f"{type(self).__name__} expects cached SSL features of shape (batch, frames, "
                f"{self.cached_dim()}), got {tuple(input.shape)}: is the data the "
                "feats.scp that espnet_ofa.bin.feature_cache extracted with this model and "
                "layer (not wav.scp)?"
            )
        if self.layer_mix is None:
            feats = input
        else:
            b, t, _ = input.shape
            stacked = input.reshape(b, t, self.num_hidden, self.embed_dim)
            feats = self.layer_mix(stacked.unbind(dim=2))
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < input_lengths[:, None]
        feats = feats.masked_fill(~valid[..., None], 0.0)
        if self.pool is not None:
            return average_pool(feats, input_lengths, self.pool)
        return feats, input_lengths


class CachedOFAFrontend(_CachedHiddenStates):
    """The trainable part of a frozen ``frontend: ofa``, on precomputed hidden states.

    Args: those of `OFAFrontend` (its signature, defaults included); those that need the
    live model (`needs_live_model`) are refused.

    Shapes: ``forward((B, T', L * D) cached features, (B,) frames) -> ((B, T', D), (B,))``,
    or ``(B, ceil(T' / k), D)`` pooled by k for the pooled rival.
    """

    def __init__(self, **frontend_conf: Any) -> None:
        super().__init__()
        options = ofa_options(frontend_conf)
        why = needs_live_model(options)
        if why:
            raise ValueError(
                "frontend ofa_cached reads features computed once by a frozen OFA model at a "
                f"fixed period, but {why}: use frontend: ofa for this model (s2t.sh does so "
                "by itself)"
            )
        self.fs = parse_fs(options["fs"])
        self.model_path = str(resolve_model(options["model"]))
        student = load_student(self.model_path)
        period = ssl_frame_period(options["frame_period"], options["lam"],
                                  options["pooled_period"])
        self.rate = student.check_rate(Rate(frame_period=period, lam=options["lam"]))
        pool = (None if options["pooled_period"] is None
                else pool_factor(options["pooled_period"], self.rate.frame_period))
        self._setup(student.num_hidden, student.config.embed_dim, options["layer"], pool)

    # ESPnet reads a frontend's options and their defaults from its signature: OFAFrontend's.
    __init__.__signature__ = inspect.signature(OFAFrontend.__init__)


class CachedTeacherFrontend(_CachedHiddenStates):
    """The trainable part of ``frontend: ssl_teacher`` (the layer weights), on the teacher's
    precomputed hidden states at its own 20 ms.

    Args: those of `SSLTeacherFrontend` (its signature, defaults included). The teacher is
    loaded once to read its depth and width; the model keeps none of its weights.

    Shapes: ``forward((B, T', L * D) cached features, (B,) frames) -> ((B, T', D), (B,))``,
    or ``(B, ceil(T' / k), D)`` pooled by k (``pooled_period``).
    """

    def __init__(self, **frontend_conf: Any) -> None:
        super().__init__()
        options = teacher_options(frontend_conf)
        live = SSLTeacherFrontend(**{**options, "pooled_period": None})
        self.fs = live.fs
        self.source = live.source
        self.frame_period = live.frame_period
        self.pooled_period = (None if options["pooled_period"] is None
                              else float(options["pooled_period"]))
        pool = (None if self.pooled_period is None
                else pool_factor(self.pooled_period, self.frame_period))
        self._setup(live.teacher.num_layers + 1, live.output_size(), options["layer"], pool,
                    model="teacher")

    __init__.__signature__ = inspect.signature(SSLTeacherFrontend.__init__)

    def extra_stats(self) -> Dict[str, float]:
        """The frame period the downstream sees, as `SSLTeacherFrontend` reports it."""
        return {"frame_period": self.pooled_period or self.frame_period}
