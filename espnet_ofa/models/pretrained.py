"""Load a trained `OFAStudent` from the files `ofa_ssl_train` writes, without its teacher."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Iterable, Mapping, Optional, Tuple

import torch
import yaml

from espnet_ofa.fileio import PathLike, zip_problem
from espnet_ofa.models.student import OFAStudent, build_student


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


# The first bytes of what torch.save writes: a zip (the default format since torch 1.6) or,
# in the legacy format, a pickle (protocol 2+ starts with 0x80).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _check_torch_file(checkpoint: Path) -> None:
    """``CheckpointError`` unless ``checkpoint`` starts like a file torch.save wrote."""
    with open(checkpoint, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(f"{checkpoint} is empty, not a torch checkpoint; it was cut off "
                              "while being written or copied: copy or download it again")
    if not head.startswith(_TORCH_MAGIC):
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "data"
        raise CheckpointError(
            f"{checkpoint} is not a torch checkpoint (it holds {kind}: {head[:24]!r}...): "
            "another kind of file, or a damaged/truncated copy; give the .pth file that "
            "ofa_ssl_train wrote (e.g. exp/ofa/valid.loss.best.pth) or a packed .zip"
        )


def check_checkpoint_integrity(checkpoint: PathLike) -> None:
    """``CheckpointError`` if a record of a zip-format checkpoint changed after torch.save.

    torch.save stores a CRC-32 of every record (tensor data included) but torch.load does
    not check it, so a few overwritten bytes in a weight would load as wrong numbers.
    Records saved without a checksum (CRC 0, torch's ``set_crc32_options(False)``) and the
    legacy pickle format cannot be checked and pass.
    """
    checkpoint = Path(checkpoint)
    if not zipfile.is_zipfile(checkpoint):
        return
    problem = zip_problem(checkpoint)
    if problem is not None:
        raise CheckpointError(
            f"{checkpoint} is damaged: {problem} (bytes changed after torch.save wrote it: a "
            "disk error, a broken copy, a killed writer); copy, download or train it again"
        )


def nonfinite_tensors(named: Iterable[Tuple[str, torch.Tensor]]) -> list:
    """Names of the floating-point tensors that hold NaN or Inf."""
    return [name for name, value in named
            if torch.is_tensor(value) and value.is_floating_point()
            and value.device.type != "meta" and not bool(torch.isfinite(value).all())]


def check_finite_weights(state: Mapping[str, torch.Tensor], source: str) -> None:
    """``CheckpointError`` naming the weights of ``source`` that hold NaN or Inf."""
    bad = nonfinite_tensors(state.items())
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"{source} has weights that are NaN or Inf ({shown}): the file is damaged or its "
            "training diverged; use an earlier checkpoint (e.g. another *epoch.pth), or copy "
            "or download it again"
        )


def _read_state(checkpoint: Path) -> dict:
    _check_torch_file(checkpoint)
    check_checkpoint_integrity(checkpoint)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError,
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
    if checkpoint.is_dir():
        found = sorted(p.name for p in checkpoint.glob("*.pth"))[:5]
        hint = f" ({', '.join(found)} are in it)" if found else ""
        raise CheckpointError(
            f"OFA checkpoint {checkpoint} is a directory{hint}; give the .pth file itself, "
            f"e.g. {checkpoint / 'valid.loss.best.pth'}"
        )
    if not checkpoint.is_file():
        raise CheckpointError(
            f"OFA checkpoint {checkpoint} does not exist; train one with "
            "egs2/*/ssl1/run.sh or give the path of an existing .pth"
        )
    config_path = Path(config) if config is not None else _find_config(checkpoint)
    try:
        conf = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CheckpointError(f"cannot read config {config_path}: {err}; give the config.yaml "
                              "that ofa_ssl_train wrote beside the checkpoint") from err
    if not isinstance(conf, dict) or "student_conf" not in conf:
        raise CheckpointError(f"{config_path} is not an ofa_ssl_train config (no student_conf)")
    student_conf = conf["student_conf"]
    if not isinstance(student_conf, dict):
        raise CheckpointError(
            f"{config_path}: student_conf must be a mapping of StudentConfig fields, got "
            f"{student_conf!r}; use student_conf: {{}} for the preset's defaults, or the "
            "config.yaml that ofa_ssl_train wrote for this checkpoint"
        )
    try:
        student = build_student(conf.get("student_preset", "distilhubert"), **student_conf)
    except TypeError as err:  # an unknown StudentConfig field
        raise CheckpointError(f"{config_path}: student_conf does not fit StudentConfig ({err}); "
                              "fix or remove that field") from err

    state = _read_state(checkpoint)
    prefix = "student."
    student_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not student_state:
        raise CheckpointError(f"{checkpoint} has no '{prefix}*' weights: not an OFA model file")
    check_finite_weights(student_state, str(checkpoint))
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

