"""`load_teacher`: one entry point that recognises the kind of source it is given."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import yaml

from espnet_ofa.constants import DISTILLED_LAYERS
from espnet_ofa.fileio import file_sha1
from espnet_ofa.teachers.base import LOCAL_FORMATS_HELP, Teacher, TeacherLoadError
from espnet_ofa.teachers.bundles import KNOWN_BUNDLES, bundle_names, find_bundle, teacher_from_bundle
from espnet_ofa.teachers.espnet_hubert import find_checkpoint, is_espnet_source, teacher_from_espnet
from espnet_ofa.teachers.fairseq_checkpoint import is_fairseq_checkpoint, teacher_from_fairseq
from espnet_ofa.teachers.huggingface import is_huggingface_dir, teacher_from_huggingface
from espnet_ofa.teachers.serialization import is_state_dict, load_checkpoint
from espnet_ofa.teachers.torchaudio_checkpoint import (
    is_torchaudio_format,
    teacher_from_torchaudio_file,
)

FORMATS = ("bundle", "fairseq", "huggingface", "torchaudio", "espnet")
# Keyword arguments each kind of source understands, beyond the common ones.
_SOURCE_KWARGS: Dict[str, tuple] = {
    "bundle": ("dl_kwargs",),
    "fairseq": ("trust_checkpoint",),
    "huggingface": (),
    "torchaudio": ("factory", "factory_kwargs", "trust_checkpoint"),
    "espnet": ("checkpoint",),
}


def _check_kwargs(kind: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    allowed = _SOURCE_KWARGS[kind]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"load_teacher got keyword argument(s) {unknown} that a {kind} source does not "
            f"take; it accepts {list(allowed) + ['normalize_waveform', 'cnn_per_utterance']}"
        )
    return kwargs


def _is_espnet_checkpoint(path: Path) -> bool:
    """A .pth next to an ESPnet torchaudio_hubert config.yaml."""
    config = path.parent / "config.yaml"
    if path.suffix != ".pth" or not config.is_file():
        return False
    try:
        return (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("encoder") == "torchaudio_hubert"
    except (OSError, yaml.YAMLError, AttributeError):
        return False


def load_teacher(
    source: str | os.PathLike,
    layers: Sequence[int] = DISTILLED_LAYERS,
    *,
    format: Optional[str] = None,
    normalize_waveform: Optional[bool] = None,
    cnn_per_utterance: Optional[bool] = None,
    **kwargs: Any,
) -> Teacher:
    """Load a frozen SSL teacher from any supported source.

    Args:
        source: a torchaudio bundle name (``HUBERT_BASE``, ``HUBERT_LARGE``,
            ``WAVLM_BASE``, ``WAVLM_BASE_PLUS``, ``WAV2VEC2_BASE``, case-insensitive;
            any other ``Wav2Vec2Bundle`` of ``torchaudio.pipelines`` works too), or a
            path: a fairseq/unilm ``.pt``, a Hugging Face model directory, a torchaudio
            ``.pth`` (see :mod:`espnet_ofa.teachers.torchaudio_checkpoint`), or an
            ESPnet hubert_train experiment directory / ``config.yaml`` / ``.pth``.
        layers: hidden layers to return: 0 = input of the first Transformer layer,
            k = output of layer k, negative = from the end.
        format: skip detection: one of ``bundle``, ``fairseq``, ``huggingface``,
            ``torchaudio``, ``espnet``.
        normalize_waveform: override the per-utterance waveform normalisation the
            source implies (fairseq ``task.normalize``, Hugging Face ``do_normalize``,
            Large bundles).
        cnn_per_utterance: see :class:`~espnet_ofa.teachers.Teacher`.
        **kwargs: per source: ``dl_kwargs`` (bundle); ``trust_checkpoint`` (fairseq or
            torchaudio files that pickle non-tensor objects: only for trusted files);
            ``factory``, ``factory_kwargs`` (torchaudio bare state dict);
            ``checkpoint`` (ESPnet: which ``.pth``).
    Returns:
        A frozen :class:`~espnet_ofa.teachers.Teacher`.
    Raises:
        TeacherLoadError: the source is missing, corrupt, unknown or unsupported (the
            message says what to do instead); a ``ValueError`` for impossible layers.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    common = dict(normalize_waveform=normalize_waveform, cnn_per_utterance=cnn_per_utterance)

    if isinstance(source, str) and format in (None, "bundle"):
        name = find_bundle(source)
        if name is not None:
            return teacher_from_bundle(name, layers, **_check_kwargs("bundle", kwargs), **common)
        if format == "bundle":
            raise TeacherLoadError(
                f"{source!r} is not a torchaudio bundle; known: {', '.join(bundle_names())}"
            )

    path = Path(source).expanduser()
    if not path.exists():
        raise _not_found(str(source))
    kind = format
    if kind is None:
        kind, path = _kind_of_path(path, kwargs)

    if kind == "huggingface":
        if path.is_file():
            path = path.parent
        return teacher_from_huggingface(path, layers, **_check_kwargs(kind, kwargs), **common)
    if kind == "espnet":
        if path.is_file() and path.suffix not in (".yaml", ".yml"):  # the .pth itself
            kwargs.setdefault("checkpoint", str(path))
            path = path.parent
        return teacher_from_espnet(path, layers, **_check_kwargs(kind, kwargs), **common)
    if kind == "bundle":  # a path given with format="bundle"
        raise TeacherLoadError(f"{str(path)!r} is a path, not a torchaudio bundle name")

    # A single checkpoint file: its content says what it is.
    obj = load_checkpoint(path, trust_checkpoint=bool(kwargs.get("trust_checkpoint", False)))
    if kind is None:
        kind = _kind_of_checkpoint(path, obj, kwargs)
    kwargs = dict(_check_kwargs(kind, kwargs))
    kwargs.pop("trust_checkpoint", None)
    if kind == "fairseq":
        if not is_fairseq_checkpoint(obj):
            raise TeacherLoadError(f"{str(path)!r} is not a fairseq checkpoint (no 'model' with 'cfg'/'args')")
        return teacher_from_fairseq(path, obj, layers, **kwargs, **common)
    return teacher_from_torchaudio_file(path, obj, layers, **kwargs, **common)


def weights_fingerprint(source: str | os.PathLike) -> str:
    """A digest of what `load_teacher` reads ``source``'s weights from, to tell whether a
    source changed between two runs (a retrained ESPnet teacher keeps its folder's name).

    A path: the SHA-1 of its files (an ESPnet experiment: config.yaml and the checkpoint
    `load_teacher` picks, so a rerun that only rewrites logs or averaged models keeps it;
    any other folder: every file in it). A bundle name: the name (torchaudio's weights for
    a name are fixed).
    """
    path = Path(source)
    if not path.exists():
        return f"name {source}"
    if path.is_dir():
        files = ([path / "config.yaml", find_checkpoint(path)] if is_espnet_source(path)
                 else sorted(p for p in path.rglob("*") if p.is_file()))
    else:
        files = [path]
    digest = hashlib.sha1()
    for file in files:
        name = file.relative_to(path) if path.is_dir() else file.name
        digest.update(f"{name} {file_sha1(file)}\n".encode())
    return digest.hexdigest()


def _not_found(text: str) -> TeacherLoadError:
    """The error for a source that is no bundle and no existing path."""
    if os.sep not in text and "/" not in text and not Path(text).suffix:
        return TeacherLoadError(
            f"unknown teacher {text!r}: neither a torchaudio bundle name (e.g. "
            f"{', '.join(KNOWN_BUNDLES)}; all {len(bundle_names())} Wav2Vec2Bundle names "
            f"of torchaudio.pipelines work) nor an existing file or directory\n"
            f"{LOCAL_FORMATS_HELP}"
        )
    return TeacherLoadError(f"teacher source {text!r} does not exist\n{LOCAL_FORMATS_HELP}")


def _kind_of_path(path: Path, kwargs: Dict[str, Any]) -> Tuple[Optional[str], Path]:
    """The kind of source an existing path is, and the path to load it from (a Hugging Face
    file's directory; an ESPnet .pth's experiment, the .pth then in ``kwargs``); None: a
    checkpoint file whose content tells (`_kind_of_checkpoint`)."""
    if path.is_dir():
        if is_huggingface_dir(path):
            return "huggingface", path
        if is_espnet_source(path):
            return "espnet", path
        raise TeacherLoadError(
            f"directory {str(path)!r} has neither config.json (a Hugging Face model) "
            f"nor config.yaml (an ESPnet experiment)\n{LOCAL_FORMATS_HELP}"
        )
    if is_espnet_source(path):
        return "espnet", path
    if path.name == "config.json" or path.suffix == ".safetensors" or (
        path.suffix == ".bin" and (path.parent / "config.json").is_file()
    ):
        return "huggingface", path.parent
    if _is_espnet_checkpoint(path) and "factory" not in kwargs:
        kwargs.setdefault("checkpoint", str(path))
        return "espnet", path.parent
    return None, path


def _kind_of_checkpoint(path: Path, obj: Any, kwargs: Dict[str, Any]) -> str:
    """torchaudio or fairseq, from a loaded checkpoint file's content."""
    if is_torchaudio_format(obj) or "factory" in kwargs:
        return "torchaudio"
    if is_fairseq_checkpoint(obj):
        return "fairseq"
    if is_state_dict(obj):
        return "torchaudio"  # a bare state dict: needs factory=, which says so
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise TeacherLoadError(
        f"{str(path)!r} loads, but its content ({keys}) is no known teacher format\n"
        f"{LOCAL_FORMATS_HELP}"
    )
