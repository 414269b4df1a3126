"""Reading checkpoint files safely, and turning their configs into plain Python.

``torch.load`` runs with ``weights_only=True`` (no arbitrary code from the pickle).
Checkpoints that pickle other objects (fairseq's omegaconf ``DictConfig``, numpy RNG
states in ``extra_state``) are refused unless the caller says the file is trusted,
like ESPnet's own ``safe_torch_load`` policy: no silent fallback to unsafe loading.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict

import torch

from espnet_ofa.teachers.base import LOCAL_FORMATS_HELP, TeacherLoadError


def load_checkpoint(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> Any:
    """``torch.load`` to CPU with clear errors for missing, corrupt and unsafe files.

    Args:
        path: the file.
        trust_checkpoint: allow ``weights_only=False`` (only for files you trust: a
            pickle can run arbitrary code) when the safe load finds non-tensor objects.
    Raises:
        TeacherLoadError: missing, unreadable, corrupt, or needing trust.
    """
    path = Path(path)
    if not path.is_file():
        raise TeacherLoadError(f"teacher checkpoint {str(path)!r} does not exist\n{LOCAL_FORMATS_HELP}")
    try:
        # argparse.Namespace is how old fairseq checkpoints store 'args'; it only
        # carries attributes, so it is safe to allow.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise _corrupt(path, err) from err
        if not trust_checkpoint:
            raise TeacherLoadError(
                f"{str(path)!r} pickles Python objects beyond tensors (e.g. fairseq's "
                "omegaconf config), which torch.load only reads with weights_only=False, "
                "and that can run arbitrary code. If you trust the file, pass "
                "trust_checkpoint=True (--teacher_conf trust_checkpoint=true); or convert it "
                "once with espnet_ofa.teachers.save_torchaudio_checkpoint.\n"
                f"torch said: {_first_line(err)}"
            ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise _corrupt(path, err) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # anything a broken pickle may raise
        raise _corrupt(path, err) from err


def _first_line(err: BaseException) -> str:
    """The informative part of a (long, multi-paragraph) torch.load error."""
    text = " ".join(str(err).split())
    match = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if match:
        text = match.group(1)
    return (text[:300] + "...") if len(text) > 300 else (text or type(err).__name__)


def _corrupt(path: Path, err: BaseException) -> TeacherLoadError:
    return TeacherLoadError(
        f"{str(path)!r} is not a readable PyTorch checkpoint (corrupt, truncated, or not a "
        f"checkpoint at all: {type(err).__name__}: {_first_line(err)}). Re-download or "
        f"re-export it.\n{LOCAL_FORMATS_HELP}"
    )


def to_plain(obj: Any) -> Any:
    """Config objects (omegaconf, argparse.Namespace, nested) -> dicts/lists/scalars."""
    try:  # omegaconf is optional; fairseq checkpoints pickled with it need it anyway
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:
        pass
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of str -> tensor."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    )


def load_strict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what did not match.

    A teacher left partly at random initialisation would silently give useless targets,
    so every loader insists on an exact match.
    """
    expected_keys = model.state_dict().keys()
    # Old-style weight norm names (fairseq, older transformers) for torch's
    # parametrized weight norm (torchaudio's positional conv).
    renamed = {}
    for key, value in state_dict.items():
        for old, new in ((".weight_g", ".parametrizations.weight.original0"),
                         (".weight_v", ".parametrizations.weight.original1")):
            if key.endswith(old) and key[: -len(old)] + new in expected_keys:
                key = key[: -len(old)] + new
        renamed[key] = value
    state_dict = renamed
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        expected = set(model.state_dict())
        given = set(state_dict)
        missing = sorted(expected - given)
        unexpected = sorted(given - expected)
        raise TeacherLoadError(
            f"the weights of {what} do not fit the model built from its config: "
            f"missing {_short(missing)}, unexpected {_short(unexpected)} "
            f"({' '.join(str(err).split())[:600]}). Is the config from the same model as "
            "the weights?"
        ) from err


def _short(keys: list, limit: int = 6) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
