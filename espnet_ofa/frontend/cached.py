"""``frontend: ofa_cached``: a frozen OFA frontend whose SSL features were computed beforehand.

A frozen OFA model at a fixed period gives every utterance the same hidden states in every
epoch, so the recipes compute them once (`espnet_ofa.recipe.feature_cache`) and train the
downstream on them. What stays trainable is what ``frontend: ofa`` learns on top of a
frozen model: the softmax weights of ``layer: -1``. So the cache holds every hidden state,
stacked, and this frontend owns the same `WeightedLayerSum` under the same name
(``layer_mix.weights``): its state dict is the trainable part of `OFAFrontend`'s, and a
model trained on the cache becomes a waveform model by renaming the frontend to ``ofa``
(`espnet_ofa.recipe.feature_cache.to_waveform_model`).

    cached features (B, T', L * D)  [L hidden states of D channels, or D for ``layer: k``]
      -> (B, T', L, D) -> learned weighted sum (``layer: -1``)  | as they are (``layer: k``)
      -> (B, T', D) features, the lengths unchanged
      -> average-pooled by k (the pooled rival, ``pooled_period``): (B, ceil(T' / k), D)

The pooled rival runs the SSL model at 20 ms and pools after the weighted sum, so it trains
on the 20 ms cache (pooling and the weighted sum are both linear: the order is the live
frontend's, and the result equal).

Its options are those of ``frontend: ofa`` (the checkpoint gives L and D, and is what the
waveform model will load); those that need the live model (a learnable rate, fine-tuning)
are refused with the reason.
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


class CachedOFAFrontend(AbsFrontend):
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
        self.pool = (None if options["pooled_period"] is None
                     else pool_factor(options["pooled_period"], self.rate.frame_period))
        self.num_hidden = student.num_hidden
        self.embed_dim = student.config.embed_dim
        self.layer = check_layer(options["layer"], self.num_hidden)
        self.layer_mix = WeightedLayerSum(self.num_hidden) if self.layer == -1 else None

    # ESPnet reads a frontend's options and their defaults from its signature: OFAFrontend's.
    __init__.__signature__ = inspect.signature(OFAFrontend.__init__)

    def cached_dim(self) -> int:
        """Channels of one cached frame: L * D for ``layer: -1``, D for one layer."""
        return self.embed_dim * (self.num_hidden if self.layer_mix is not None else 1)

    def output_size(self) -> int:
        return self.embed_dim

    def reload_pretrained_parameters(self) -> None:
        """After ESPnet's ``init:`` reset: the layer weights start equal again, as in
        `OFAFrontend.reload_pretrained_parameters`."""
        if self.layer_mix is not None:
            self.layer_mix.reset_parameters()

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T', L * D) cached features, (B,) frames -> (B, T', D), (B,) frames."""
        if input.dim() != 3 or input.shape[-1] != self.cached_dim():
            raise ValueError(
                f"ofa_cached expects cached OFA features of shape (batch, frames, "
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
