"""Teachers from Hugging Face model directories (Wav2Vec2, HuBERT, WavLM).

``transformers`` is not needed: ``config.json`` is read as JSON, filled with the Hugging
Face defaults and turned into the arguments of ``torchaudio.models.wav2vec2_model`` /
``wavlm_model`` (`torchaudio_config`), and the weights (``pytorch_model.bin``,
``model.safetensors``, or their sharded ``*.index.json`` forms) are renamed to
torchaudio's names. Hugging Face's encoder names already match torchaudio's Transformer;
only WavLM's q/k/v projections are merged (`espnet_ofa.teachers.key_maps`).

``model.safetensors`` needs the ``safetensors`` package; without it only ``.bin``
weights load, and the error says so.

Waveform normalisation comes from ``preprocessor_config.json`` (``do_normalize``) when
the directory has one; otherwise it is off (pass ``normalize_waveform=True`` for the
models trained with it, e.g. wav2vec 2.0 Large LV-60k, XLS-R).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Optional, Sequence

import torch
from torchaudio.models import wav2vec2_model, wavlm_model

from espnet_ofa.teachers.base import LOCAL_FORMATS_HELP, Teacher, TeacherLoadError
from espnet_ofa.teachers.key_maps import merge_wavlm_qkv
from espnet_ofa.teachers.serialization import load_checkpoint, load_strict

# transformers' Wav2Vec2Config / HubertConfig / WavLMConfig defaults: save_pretrained
# may leave out values equal to these.
_HF_DEFAULTS: Dict[str, Any] = {
    "feat_extract_norm": "group",
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "hidden_size": 768,
    "feat_proj_dropout": 0.0,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "attention_dropout": 0.1,
    "intermediate_size": 3072,
    "activation_dropout": 0.1,
    "hidden_dropout": 0.1,
    "do_stable_layer_norm": False,
    "layerdrop": 0.1,
    "num_buckets": 320,
    "max_bucket_distance": 800,
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "feat_proj_layer_norm": True,
}
MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
# torchaudio argument <- Hugging Face config field (WavLM adds the relative position
# bias's two).
_TORCHAUDIO_ARGS: Dict[str, str] = {
    "extractor_conv_bias": "conv_bias",
    "encoder_embed_dim": "hidden_size",
    "encoder_projection_dropout": "feat_proj_dropout",
    "encoder_pos_conv_kernel": "num_conv_pos_embeddings",
    "encoder_pos_conv_groups": "num_conv_pos_embedding_groups",
    "encoder_num_layers": "num_hidden_layers",
    "encoder_num_heads": "num_attention_heads",
    "encoder_attention_dropout": "attention_dropout",
    "encoder_ff_interm_features": "intermediate_size",
    "encoder_ff_interm_dropout": "activation_dropout",
    "encoder_dropout": "hidden_dropout",
    "encoder_layer_norm_first": "do_stable_layer_norm",
    "encoder_layer_drop": "layerdrop",
}
_WAVLM_ARGS: Dict[str, str] = {
    "encoder_num_buckets": "num_buckets",
    "encoder_max_distance": "max_bucket_distance",
}
# Prefixes of task heads' wrappers (Wav2Vec2ForCTC, HubertForCTC, WavLMForCTC, ...).
_BODY_PREFIXES = ("wav2vec2.", "hubert.", "wavlm.")
# Parameters with no counterpart in a torchaudio encoder: masking, quantiser, heads.
_DROPPED_PREFIXES = ("masked_spec_embed", "quantizer.", "project_hid.", "project_q.", "lm_head.",
                     "dropout_features", "projector.", "classifier.", "layer_weights")
_WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")


def torchaudio_config(cfg: SimpleNamespace, wavlm: bool) -> Dict[str, Any]:
    """A Hugging Face config (defaults filled in) -> keyword arguments of
    ``torchaudio.models.wav2vec2_model`` (``wavlm_model`` when ``wavlm``)."""
    fields = {**_TORCHAUDIO_ARGS, **(_WAVLM_ARGS if wavlm else {})}
    return {
        "extractor_mode": f"{cfg.feat_extract_norm}_norm",  # "group" / "layer"
        "extractor_conv_layer_config": [
            (int(c), int(k), int(s)) for c, k, s in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride)
        ],
        **{arg: getattr(cfg, field) for arg, field in fields.items()},
    }


def is_huggingface_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _safetensors_load(path: Path) -> Dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise TeacherLoadError(
            f"{str(path)!r} is in safetensors format, but the 'safetensors' package is not "
            "installed: pip install safetensors, or provide pytorch_model.bin instead"
        ) from err
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types
        raise TeacherLoadError(f"{str(path)!r} is not a readable safetensors file: {err}") from err


def _load_weights(directory: Path) -> Dict[str, torch.Tensor]:
    """All tensors of the directory's checkpoint, shards merged."""
    for name in _WEIGHT_FILES:
        index = directory / f"{name}.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
            state: Dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_load_file(directory / shard))
            return state
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return _load_file(directory / name)
    raise TeacherLoadError(
        f"Hugging Face directory {str(directory)!r} has config.json but no weights: expected "
        "pytorch_model.bin or model.safetensors (or a sharded *.index.json)\n" + LOCAL_FORMATS_HELP
    )


def _load_file(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return _safetensors_load(path)
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise TeacherLoadError(f"{str(path)!r} does not hold a state dict")
    return state


def convert_state_dict(
    state: Dict[str, torch.Tensor], num_layers: int, wavlm: bool, directory: Path
) -> Dict[str, torch.Tensor]:
    """Hugging Face names -> torchaudio Wav2Vec2Model names."""
    converted: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        for prefix in _BODY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if key.startswith(_DROPPED_PREFIXES):
            continue
        # Newer transformers save the positional conv's weight norm as a
        # parametrization; torchaudio's torch hook understands weight_g / weight_v.
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        if key.startswith("feature_extractor."):
            converted[key] = value
        elif key.startswith("feature_projection."):
            converted["encoder." + key] = value
        elif key.startswith("encoder."):
            converted["encoder.transformer." + key[len("encoder."):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise TeacherLoadError(
            f"{str(directory)!r} has weights a torchaudio encoder does not have: "
            f"{unknown[:6]} (an adapter or a head this loader does not know)"
        )
    if wavlm:
        try:
            merge_wavlm_qkv(converted, num_layers)
        except KeyError as err:
            raise TeacherLoadError(f"{str(directory)!r}: WavLM attention weight {err} missing") from err
    return converted


def teacher_from_huggingface(
    directory: Path,
    layers: Sequence[int],
    *,
    normalize_waveform: Optional[bool] = None,
    **teacher_kwargs: Any,
) -> Teacher:
    """A Hugging Face model directory -> Teacher."""
    try:
        raw = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TeacherLoadError(f"{str(directory / 'config.json')!r} is not valid JSON: {err}") from err
    model_type = str(raw.get("model_type", "")).lower()
    if model_type not in MODEL_TYPES:
        raise TeacherLoadError(
            f"{str(directory)!r}: model_type {model_type!r} is not supported; a Hugging Face "
            f"teacher must be one of {MODEL_TYPES}"
        )
    cfg = SimpleNamespace(**{**_HF_DEFAULTS, **{k: v for k, v in raw.items() if v is not None}})
    unsupported = [
        f"{name}={getattr(cfg, name)!r}"
        for name, ok in (
            ("hidden_act", cfg.hidden_act == "gelu"),
            ("feat_extract_activation", cfg.feat_extract_activation == "gelu"),
            ("feat_proj_layer_norm", cfg.feat_proj_layer_norm),
            ("conv_pos_batch_norm", not getattr(cfg, "conv_pos_batch_norm", False)),
            ("add_adapter", not getattr(cfg, "add_adapter", False)),
        )
        if not ok
    ]
    if unsupported:
        raise TeacherLoadError(
            f"{str(directory)!r}: torchaudio's models cannot express {', '.join(unsupported)}"
        )
    wavlm = model_type == "wavlm"
    config = torchaudio_config(cfg, wavlm)
    factory = "wavlm_model" if wavlm else "wav2vec2_model"
    model = (wavlm_model if wavlm else wav2vec2_model)(**config, aux_num_out=None)
    state = convert_state_dict(_load_weights(directory), config["encoder_num_layers"], wavlm, directory)
    load_strict(model, state, repr(str(directory)))

    if normalize_waveform is None:
        pre = directory / "preprocessor_config.json"
        normalize_waveform = bool(json.loads(pre.read_text()).get("do_normalize", False)) if pre.is_file() else False
    return Teacher(
        model,
        layers,
        normalize_waveform=normalize_waveform,
        source=f"huggingface:{model_type}:{directory}",
        factory=factory,
        factory_kwargs=config,
        **teacher_kwargs,
    )
