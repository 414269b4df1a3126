"""Parameter names of fairseq / unilm / Hugging Face checkpoints -> torchaudio's.

torchaudio's ``Wav2Vec2Model`` (built by the public ``wav2vec2_model`` / ``wavlm_model``)
names its parameters ``feature_extractor.conv_layers.<i>.{conv,layer_norm}``,
``encoder.feature_projection.*`` and ``encoder.transformer.*``; these names are what its
published checkpoints and ours store. The maps here are the project's own, so loading
does not depend on torchaudio's private importers.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

import torch

_LAYER = r"encoder\.layers\.(\d+)\."
_TA_LAYER = r"encoder.transformer.layers.\1."

# fairseq (and unilm's WavLM) name -> torchaudio name, tried in order on the whole key.
_FAIRSEQ_RULES: Tuple[Tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        # The CNN: fairseq's blocks are Sequential(conv, dropout, norm[, gelu]); the norm is
        # a GroupNorm on block 0 ("default" mode) or a Sequential(transpose, LayerNorm, ...).
        (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)",
         r"feature_extractor.conv_layers.\1.conv.\2"),
        (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)",
         r"feature_extractor.conv_layers.0.layer_norm.\1"),
        (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
         r"feature_extractor.conv_layers.\1.layer_norm.\2"),
        (r"layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
        (r"post_extract_proj\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
        (r"encoder\.pos_conv\.0\.(bias|weight_g|weight_v)",
         r"encoder.transformer.pos_conv_embed.conv.\1"),
        (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
        (_LAYER + r"self_attn\.((?:q|k|v|out)_proj\.(?:weight|bias))", _TA_LAYER + r"attention.\2"),
        # WavLM's gated relative position bias.
        (_LAYER + r"self_attn\.grep_linear\.(weight|bias)", _TA_LAYER + r"attention.gru_rel_pos_linear.\2"),
        (_LAYER + r"self_attn\.grep_a", _TA_LAYER + r"attention.gru_rel_pos_const"),
        (_LAYER + r"self_attn\.relative_attention_bias\.weight", _TA_LAYER + r"attention.rel_attn_embed.weight"),
        (_LAYER + r"self_attn_layer_norm\.(weight|bias)", _TA_LAYER + r"layer_norm.\2"),
        (_LAYER + r"fc1\.(weight|bias)", _TA_LAYER + r"feed_forward.intermediate_dense.\2"),
        (_LAYER + r"fc2\.(weight|bias)", _TA_LAYER + r"feed_forward.output_dense.\2"),
        (_LAYER + r"final_layer_norm\.(weight|bias)", _TA_LAYER + r"final_layer_norm.\2"),
    )
)
# Pre-training and fine-tuning parts with no place in an encoder: the mask embedding,
# the quantiser and its projection, HuBERT's label embeddings and projection, CTC head.
_FAIRSEQ_DROPPED = re.compile(r"(mask_emb|quantizer\.|project_q\.|final_proj\.|label_embs_concat|proj\.)")


def fairseq_to_torchaudio(key: str) -> Optional[str]:
    """A fairseq / unilm parameter name -> torchaudio's, or None for a dropped part.

    Fine-tuned models' ``w2v_encoder.w2v_model.`` prefix is stripped.
    Raises:
        KeyError: a name no rule knows (an architecture variant torchaudio cannot hold).
    """
    for prefix in ("w2v_encoder.", "w2v_model."):
        key = key[len(prefix):] if key.startswith(prefix) else key
    if _FAIRSEQ_DROPPED.match(key):
        return None
    for pattern, replacement in _FAIRSEQ_RULES:
        if pattern.fullmatch(key):
            return pattern.sub(replacement, key)
    raise KeyError(key)


def merge_wavlm_qkv(state: Dict[str, torch.Tensor], num_layers: int,
                    prefix: str = "encoder.transformer.") -> Dict[str, torch.Tensor]:
    """Separate q/k/v projections -> the single ``in_proj`` of torchaudio's WavLM attention.

    torchaudio's WavLM layer wraps ``torch.nn.MultiheadAttention`` (``attention.attention``),
    which stores q, k and v stacked in that order. Changes ``state`` in place and returns it.
    Raises:
        KeyError: a projection of some layer is missing.
    """
    for i in range(num_layers):
        at = f"{prefix}layers.{i}.attention."
        for kind in ("weight", "bias"):
            parts = [state.pop(f"{at}{name}_proj.{kind}") for name in ("q", "k", "v")]
            state[f"{at}attention.in_proj_{kind}"] = torch.cat(parts)
            state[f"{at}attention.out_proj.{kind}"] = state.pop(f"{at}out_proj.{kind}")
    return state
