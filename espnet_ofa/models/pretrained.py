"""Load a trained `OFAStudent` from the files `ofa_ssl_train` writes, without its teacher."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Optional, Union

import torch
import yaml

from espnet_ofa.models.student import OFAStudent, build_student

PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A checkpoint or its config is missing or unreadable."""


def _find_config(checkpoint: Path) -> Path:
    for candidate in (checkpoint.parent / "config.yaml", checkpoint.parent.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"no config.yaml next to {checkpoint} (looked in {checkpoint.parent} and its parent); "
        "pass config= the ofa_ssl_train config.yaml of this experiment"
    )


def _read_state(checkpoint: Path) -> dict:
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError,
            pickle.UnpicklingError) as err:
        raise CheckpointError(
            f"cannot read {checkpoint} as a torch checkpoint ({err}); it may be truncated or "
            "not a model file: re-download it or point to another .pth"
        ) from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # ESPnet's resumable checkpoint.pth
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint} holds a {type(state).__name__}, not a state dict")
    return state


def load_student(checkpoint: PathLike, config: Optional[PathLike] = None) -> OFAStudent:
    """Rebuild the student of an ``ofa_ssl_train`` experiment.

    Args:
        checkpoint: a model file (``valid.loss.best.pth``, ``N epoch.pth``) or the
            resumable ``checkpoint.pth`` of an experiment directory.
        config: its ``config.yaml``; found next to the checkpoint by default.

    Returns:
        The student in eval mode.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(
            f"OFA checkpoint {checkpoint} does not exist; train one with "
            "egs2/*/ssl1/run.sh or give the path of an existing .pth"
        )
    config_path = Path(config) if config is not None else _find_config(checkpoint)
    try:
        conf = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"cannot read config {config_path}: {err}") from err
    if not isinstance(conf, dict) or "student_conf" not in conf:
        raise CheckpointError(f"{config_path} is not an ofa_ssl_train config (no student_conf)")
    student = build_student(conf.get("student_preset", "distilhubert"), **conf["student_conf"])

    state = _read_state(checkpoint)
    prefix = "student."
    student_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not student_state:
        raise CheckpointError(f"{checkpoint} has no '{prefix}*' weights: not an OFA model file")
    try:
        student.load_state_dict(student_state)
    except RuntimeError as err:
        raise CheckpointError(
            f"{checkpoint} does not match {config_path}: {err}".splitlines()[0]
        ) from err
    return student.eval()


def save_student(student: OFAStudent, exp_dir: PathLike, filename: str = "valid.loss.best.pth",
                 preset: str = "distilhubert", **config_extra) -> Path:
    """Write ``student`` as ``ofa_ssl_train`` would: ``<exp_dir>/<filename>`` (weights under
    ``student.``) and ``<exp_dir>/config.yaml``; the inverse of `load_student`.

    ``config_extra`` adds entries to config.yaml (e.g. ``teacher=...``).
    """
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    conf = {"student_preset": preset, "student_conf": student.config.to_dict(), **config_extra}
    (exp_dir / "config.yaml").write_text(yaml.safe_dump(conf), encoding="utf-8")
    checkpoint = exp_dir / filename
    torch.save({f"student.{k}": v for k, v in student.state_dict().items()}, checkpoint)
    return checkpoint

