"""Teachers from fairseq (HuBERT, wav2vec 2.0) and unilm (WavLM) checkpoint files.

fairseq is not needed. A checkpoint is a dict with the weights under ``"model"`` and
the configuration under ``"cfg"`` (fairseq >= 0.10: ``cfg["model"]`` holds the model
fields, ``cfg["task"]["normalize"]`` the waveform normalisation), ``"args"`` (older
fairseq: an ``argparse.Namespace`` with the same field names), or a flat ``"cfg"``
(unilm's WavLM releases). Fine-tuned (CTC) checkpoints are read through their
``w2v_args``; the CTC head is dropped.

The configuration becomes the arguments of ``torchaudio.models.wav2vec2_model`` /
``wavlm_model``, and the weights are renamed to torchaudio's names
(`espnet_ofa.teachers.key_maps`), WavLM's separate q/k/v projections merged into
torchaudio's single one.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torchaudio.models import wav2vec2_model, wavlm_model

from espnet_ofa.teachers.base import Teacher, TeacherLoadError
from espnet_ofa.teachers.key_maps import fairseq_to_torchaudio, merge_wavlm_qkv
from espnet_ofa.teachers.serialization import load_strict, to_plain

# fairseq's Wav2Vec2Config / HubertConfig defaults, for fields a config leaves out.
_DEFAULT_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
_DEFAULTS: Dict[str, Any] = {
    "extractor_mode": "default",
    "conv_feature_layers": _DEFAULT_CONV,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "layer_norm_first": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    # WavLM (unilm WavLMConfig)
    "num_buckets": 320,
    "max_distance": 800,
}

def is_fairseq_checkpoint(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and isinstance(obj.get("model"), Mapping)
        and (obj.get("cfg") is not None or obj.get("args") is not None)
    )


def parse_conv_layers(spec: Any) -> List[Tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` -> [(channels, kernel, stride), ...].

    fairseq stores a Python expression such as ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``
    and ``eval``s it; here only list/tuple literals, ``+`` and ``*`` are accepted.
    """
    if isinstance(spec, (list, tuple)):
        return [tuple(int(v) for v in layer) for layer in spec]

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [evaluate(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = evaluate(node.left), evaluate(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported element {ast.dump(node)}")

    try:
        layers = evaluate(ast.parse(str(spec), mode="eval"))
        return [tuple(int(v) for v in layer) for layer in layers]
    except (SyntaxError, ValueError, TypeError) as err:
        raise TeacherLoadError(f"cannot read conv_feature_layers {spec!r}: {err}") from err


def _configs(ckpt: Mapping[str, Any], path: Path) -> Tuple[Dict[str, Any], Dict[str, Any], bool]:
    """-> (model fields, task fields, fine-tuned?) as plain dicts."""
    cfg = to_plain(ckpt.get("cfg"))
    args = to_plain(ckpt.get("args"))
    if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
        model_cfg, task_cfg = dict(cfg["model"]), dict(cfg.get("task") or {})
    elif isinstance(cfg, Mapping):  # unilm WavLM: one flat config
        model_cfg, task_cfg = dict(cfg), dict(cfg)
    elif isinstance(args, Mapping):
        model_cfg, task_cfg = dict(args), dict(args)
    else:
        raise TeacherLoadError(f"{str(path)!r} has no usable 'cfg' or 'args' configuration")

    finetuned = "w2v_args" in model_cfg or "w2v_path" in model_cfg
    if finetuned:
        inner = to_plain(model_cfg.get("w2v_args"))
        if not isinstance(inner, Mapping):
            raise TeacherLoadError(
                f"{str(path)!r} is a fine-tuned checkpoint without the pre-trained model's "
                f"config (w2v_args); load the pre-trained checkpoint "
                f"{model_cfg.get('w2v_path')!r} instead"
            )
        if isinstance(inner.get("model"), Mapping):
            model_cfg = {**inner["model"]}
            task_cfg = {**(inner.get("task") or {}), **task_cfg}
        else:
            model_cfg = dict(inner)
    return model_cfg, task_cfg, finetuned


def torchaudio_config(model_cfg: Mapping[str, Any], wavlm: bool, path: Path) -> Dict[str, Any]:
    """fairseq model fields -> keyword arguments of wav2vec2_model / wavlm_model."""

    def get(name: str) -> Any:
        value = model_cfg.get(name)
        return _DEFAULTS[name] if value is None else value

    unsupported = []
    if model_cfg.get("layer_type", "transformer") not in (None, "transformer"):
        unsupported.append(f"layer_type={model_cfg['layer_type']!r}")
    if int(model_cfg.get("pos_conv_depth") or 1) != 1:
        unsupported.append(f"pos_conv_depth={model_cfg['pos_conv_depth']}")
    if model_cfg.get("activation_fn", "gelu") not in (None, "gelu"):
        unsupported.append(f"activation_fn={model_cfg['activation_fn']!r}")
    if wavlm and model_cfg.get("gru_rel_pos", True) is False:
        unsupported.append("gru_rel_pos=False")
    if unsupported:
        raise TeacherLoadError(
            f"{str(path)!r}: torchaudio's wav2vec2/HuBERT/WavLM models cannot express "
            f"{', '.join(unsupported)}"
        )
    mode = get("extractor_mode")
    if mode not in ("default", "layer_norm"):
        raise TeacherLoadError(f"{str(path)!r}: unknown extractor_mode {mode!r}")
    config = {
        "extractor_mode": "group_norm" if mode == "default" else "layer_norm",
        "extractor_conv_layer_config": parse_conv_layers(get("conv_feature_layers")),
        "extractor_conv_bias": bool(get("conv_bias")),
        "encoder_embed_dim": int(get("encoder_embed_dim")),
        "encoder_projection_dropout": float(get("dropout_input")),
        "encoder_pos_conv_kernel": int(get("conv_pos")),
        "encoder_pos_conv_groups": int(get("conv_pos_groups")),
        "encoder_num_layers": int(get("encoder_layers")),
        "encoder_num_heads": int(get("encoder_attention_heads")),
        "encoder_attention_dropout": float(get("attention_dropout")),
        "encoder_ff_interm_features": int(get("encoder_ffn_embed_dim")),
        "encoder_ff_interm_dropout": float(get("activation_dropout")),
        "encoder_dropout": float(get("dropout")),
        "encoder_layer_norm_first": bool(get("layer_norm_first")),
        "encoder_layer_drop": float(get("encoder_layerdrop")),
    }
    if wavlm:
        config["encoder_num_buckets"] = int(get("num_buckets"))
        config["encoder_max_distance"] = int(get("max_distance"))
    return config


def convert_state_dict(
    state: Mapping[str, torch.Tensor], config: Mapping[str, Any], wavlm: bool, path: Path
) -> Dict[str, torch.Tensor]:
    """fairseq / unilm parameter names -> torchaudio Wav2Vec2Model names."""
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        try:
            name = fairseq_to_torchaudio(key)
        except KeyError:
            raise TeacherLoadError(
                f"{str(path)!r} has a parameter torchaudio's models do not have: {key!r} "
                "(an architecture variant this loader does not support)"
            ) from None
        if name is not None:  # None: masking, quantiser, label embeddings, CTC head
            converted[name] = value

    conv_dim = config["extractor_conv_layer_config"][-1][0]
    projection = "encoder.feature_projection.projection."
    if config["encoder_embed_dim"] == conv_dim and projection + "weight" not in converted:
        # fairseq leaves out post_extract_proj when the CNN width already equals the
        # encoder's; torchaudio always has one, so make it the identity.
        converted[projection + "weight"] = torch.eye(conv_dim)
        converted[projection + "bias"] = torch.zeros(conv_dim)

    if wavlm:
        try:
            merge_wavlm_qkv(converted, config["encoder_num_layers"])
        except KeyError as err:
            raise TeacherLoadError(f"{str(path)!r}: WavLM attention weight {err} missing") from err
    return converted


def teacher_from_fairseq(
    path: Path,
    ckpt: Mapping[str, Any],
    layers: Sequence[int],
    *,
    normalize_waveform: Optional[bool] = None,
    **teacher_kwargs: Any,
) -> Teacher:
    """A loaded fairseq/unilm checkpoint dict -> Teacher."""
    model_cfg, task_cfg, finetuned = _configs(ckpt, path)
    state = ckpt["model"]
    name = str(model_cfg.get("_name") or model_cfg.get("arch") or "")
    wavlm = (
        name.startswith("wavlm")
        or bool(model_cfg.get("relative_position_embedding"))
        or any(".self_attn.grep_linear." in k for k in state)
    )
    config = torchaudio_config(model_cfg, wavlm, path)
    if wavlm:
        model, factory = wavlm_model(**config, aux_num_out=None), "wavlm_model"
    else:
        model, factory = wav2vec2_model(**config, aux_num_out=None), "wav2vec2_model"
    load_strict(model, convert_state_dict(state, config, wavlm, path), repr(str(path)))
    if normalize_waveform is None:
        normalize_waveform = bool(task_cfg.get("normalize", False))
    kind = "wavlm" if wavlm else (name or "wav2vec2")
    return Teacher(
        model,
        layers,
        normalize_waveform=normalize_waveform,
        source=f"fairseq:{kind}{'(fine-tuned)' if finetuned else ''}:{path}",
        factory=factory,
        factory_kwargs=config,
        **teacher_kwargs,
    )
