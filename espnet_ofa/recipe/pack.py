"""Pack an OFA pretraining experiment (``ssl.sh`` stage 9): a zip of config + model.

The zip holds ``meta.yaml`` (what is inside and how it was made), the experiment's
``config.yaml`` and the model file, under ``exp/<name>/``, so that unpacking it anywhere
gives a directory ``load_student``/``frontend_conf.model`` can read directly. The model
zoo issue will refine the format (and teach ``frontend: ofa`` to read such zips).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Union

import yaml

PathLike = Union[str, os.PathLike]


def pack_ssl(exp: PathLike, out: PathLike, model: str = "valid.loss.best.pth") -> Path:
    """Zip ``<exp>/config.yaml`` and ``<exp>/<model>`` into ``out`` (atomically)."""
    exp, out = Path(exp), Path(out)
    config, model_path = exp / "config.yaml", exp / model
    for f in (config, model_path):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found; run the OFA training stage first")
    conf = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    import espnet

    import espnet_ofa

    name = exp.name
    meta = {
        "task": "ofa_ssl",
        "files": {"config": f"exp/{name}/config.yaml", "model_file": f"exp/{name}/{model}"},
        "student_preset": conf.get("student_preset"),
        "frame_period_range": (conf.get("student_conf") or {}).get("frame_period_range"),
        "teacher": conf.get("teacher"),
        "espnet_ofa_version": espnet_ofa.__version__,
        "espnet_version": getattr(espnet, "__version__", "unknown"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("meta.yaml", yaml.safe_dump(meta, sort_keys=False))
            z.write(config, meta["files"]["config"])
            z.write(model_path, meta["files"]["model_file"])
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
