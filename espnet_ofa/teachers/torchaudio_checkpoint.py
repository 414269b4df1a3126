"""Teachers stored as torchaudio state dicts.

The format (one ``torch.save``d dict; plain types and tensors only, so it loads with
``torch.load(weights_only=True)``)::

    {
        "torchaudio_factory": "hubert_base",   # a model function of torchaudio.models
        "factory_kwargs": {...},               # its keyword arguments
        "state_dict": {...},                   # model.state_dict() of what it built
        "normalize_waveform": False,           # optional: per-utterance input norm
    }

Factories: ``wav2vec2_model`` / ``wavlm_model`` (fully configurable), the presets
(``hubert_base``, ``hubert_large``, ``hubert_xlarge``, ``wav2vec2_base``,
``wav2vec2_large``, ``wav2vec2_large_lv60k``, ``wav2vec2_xlsr_300m/1b/2b``,
``wavlm_base``, ``wavlm_large``) and the HuBERT pre-training builders
(``hubert_pretrain_model``, ``hubert_pretrain_base/large/xlarge``), whose
``.wav2vec2`` part becomes the teacher.

A *bare* state dict (e.g. the file a torchaudio bundle downloads, such as
``hubert_fairseq_base_ls960.pth``) works too when the factory is named:
``load_teacher(path, factory="hubert_base")``.

:func:`save_torchaudio_checkpoint` writes the format, e.g. to convert a fairseq
checkpoint that needs ``trust_checkpoint=True`` once into a file that does not.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torchaudio

from espnet_ofa.teachers.base import Teacher, TeacherLoadError
from espnet_ofa.teachers.serialization import is_state_dict, load_strict, to_plain

# Factories whose result is a Wav2Vec2Model (or a HuBERTPretrainModel around one).
FACTORIES = (
    "wav2vec2_model",
    "wavlm_model",
    "hubert_base",
    "hubert_large",
    "hubert_xlarge",
    "wav2vec2_base",
    "wav2vec2_large",
    "wav2vec2_large_lv60k",
    "wav2vec2_xlsr_300m",
    "wav2vec2_xlsr_1b",
    "wav2vec2_xlsr_2b",
    "wavlm_base",
    "wavlm_large",
    "hubert_pretrain_model",
    "hubert_pretrain_base",
    "hubert_pretrain_large",
    "hubert_pretrain_xlarge",
)
FORMAT_KEYS = ("torchaudio_factory", "factory_kwargs", "state_dict")


def build_from_factory(factory: str, factory_kwargs: Optional[Mapping[str, Any]] = None) -> torch.nn.Module:
    """Call ``torchaudio.models.<factory>(**factory_kwargs)``.

    ``aux_num_out`` defaults to None (no CTC head), which ``wavlm_model`` otherwise
    requires positionally.
    """
    if factory not in FACTORIES or not hasattr(torchaudio.models, factory):
        raise TeacherLoadError(
            f"unknown torchaudio factory {factory!r}; use one of {', '.join(FACTORIES)}"
        )
    function = getattr(torchaudio.models, factory)
    kwargs = dict(factory_kwargs or {})
    params = inspect.signature(function).parameters
    if "aux_num_out" in params:
        kwargs.setdefault("aux_num_out", None)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TeacherLoadError(
            f"torchaudio.models.{factory} has no argument(s) {unknown}; it takes "
            f"{sorted(params)}"
        )
    try:
        return function(**kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise TeacherLoadError(
            f"torchaudio.models.{factory}(**{kwargs}) failed: {err}"
        ) from err


def model_from_state_dict(
    factory: str,
    factory_kwargs: Optional[Mapping[str, Any]],
    state_dict: Mapping[str, torch.Tensor],
    what: str,
) -> torch.nn.Module:
    """Build with the factory, load the weights strictly, return the Wav2Vec2Model."""
    model = build_from_factory(factory, factory_kwargs)
    if factory.startswith("hubert_pretrain"):
        prefix = "wav2vec2."
        if all(k.startswith(prefix) for k in state_dict):
            # Only the encoder was saved: the teacher needs no more.
            model = model.wav2vec2
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
            load_strict(model, dict(state_dict), what)
            return model
        load_strict(model, dict(state_dict), what)
        return model.wav2vec2
    load_strict(model, dict(state_dict), what)
    return model


def is_torchaudio_format(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "torchaudio_factory" in obj and "state_dict" in obj


def teacher_from_torchaudio_file(
    path: Path,
    obj: Any,
    layers: Sequence[int],
    *,
    factory: Optional[str] = None,
    factory_kwargs: Optional[Mapping[str, Any]] = None,
    normalize_waveform: Optional[bool] = None,
    **teacher_kwargs: Any,
) -> Teacher:
    """A loaded ``.pth`` (format dict, or bare state dict + ``factory``) -> Teacher."""
    if is_torchaudio_format(obj):
        missing = [k for k in FORMAT_KEYS if k not in obj and k != "factory_kwargs"]
        if missing:
            raise TeacherLoadError(f"{str(path)!r} lacks {missing}")
        factory = factory or obj["torchaudio_factory"]
        kwargs = dict(to_plain(obj.get("factory_kwargs") or {}))
        kwargs.update(factory_kwargs or {})
        state_dict = obj["state_dict"]
        if normalize_waveform is None:
            normalize_waveform = bool(obj.get("normalize_waveform", False))
    elif is_state_dict(obj):
        if factory is None:
            raise TeacherLoadError(
                f"{str(path)!r} is a bare state dict: say which torchaudio model it belongs "
                "to, e.g. load_teacher(path, factory='hubert_base') or factory='wav2vec2_model' "
                f"with factory_kwargs={{...}} (factories: {', '.join(FACTORIES)})"
            )
        kwargs = dict(factory_kwargs or {})
        state_dict = obj
    else:
        raise TeacherLoadError(f"{str(path)!r} is neither a torchaudio checkpoint nor a state dict")
    model = model_from_state_dict(factory, kwargs, state_dict, repr(str(path)))
    return Teacher(
        model,
        layers,
        normalize_waveform=bool(normalize_waveform),
        source=f"torchaudio:{factory}:{path}",
        factory=factory if not factory.startswith("hubert_pretrain") else None,
        factory_kwargs=kwargs if not factory.startswith("hubert_pretrain") else None,
        **teacher_kwargs,
    )


def save_torchaudio_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    factory: Optional[str] = None,
    factory_kwargs: Optional[Mapping[str, Any]] = None,
    normalize_waveform: Optional[bool] = None,
) -> Path:
    """Write ``model`` in the format of this module.

    Args:
        path: the ``.pth`` to write.
        model: a torchaudio ``Wav2Vec2Model``, or a :class:`Teacher` (whose recorded
            factory, arguments and waveform normalisation are used by default).
        factory, factory_kwargs: the ``torchaudio.models`` function and arguments that
            build ``model``.
        normalize_waveform: stored flag; defaults to the teacher's, else False.
    Returns:
        The path written.
    """
    if isinstance(model, Teacher):
        if model.waveform_transform is not None:
            raise ValueError(
                "this teacher applies a waveform transform (from its ESPnet config) that "
                "the torchaudio format cannot store; keep loading it from ESPnet files"
            )
        factory = factory or model.factory
        factory_kwargs = factory_kwargs if factory_kwargs is not None else model.factory_kwargs
        if normalize_waveform is None:
            normalize_waveform = model.normalize_waveform
        model = model.model
    if factory is None:
        raise ValueError("factory is unknown: pass factory= (and factory_kwargs=)")
    if factory not in FACTORIES:
        raise ValueError(f"unknown torchaudio factory {factory!r}; use one of {FACTORIES}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = to_plain(dict(factory_kwargs or {}))
    # Tuples become lists so that the file needs no allowlisted globals.
    kwargs = {k: [list(c) for c in v] if k == "extractor_conv_layer_config" and v else v
              for k, v in kwargs.items()}
    if getattr(model, "aux", None) is None and kwargs.get("aux_num_out") is not None:
        kwargs["aux_num_out"] = None  # a Teacher drops the CTC head it never uses
    torch.save(
        {
            "torchaudio_factory": factory,
            "factory_kwargs": kwargs,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "normalize_waveform": bool(normalize_waveform),
        },
        path,
    )
    return path
