"""Pack downstream models (ASR, SLU, ST, ASR transducer), with ``frontend: ofa`` or any other.

ESPnet's ``pack asr`` archives the files it is told about and, on unpacking, rewrites every
YAML string equal to an archived path to where it was unpacked. So the archive must hold the
OFA checkpoint (and its config.yaml) under *exactly* the path that
``frontend_conf.model`` names. Checkpoints are often symlinks (``valid.loss.best.pth`` ->
``3epoch.pth``) that the packer resolves, so the training config is first copied to
``<exp>/pack/config.yaml`` with each file it refers to written as the resolved path the
archive will use. Every file the config refers to (OFA checkpoint, feature statistics,
BPE model, ...) goes into the archive, so no ``--option`` needs to be remembered. A model
with another frontend (a recipe's log-mel baseline) is packed the same way, as an ordinary
ESPnet model.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from espnet_ofa.espnet_tasks import TASKS
from espnet_ofa.zoo.archive import CARD_NAME, PathLike, ZooError, partial_dir, write_model_card


# Config entries about the training run itself (data lists, shape files, output dir): their
# files are not part of the model.
RUN_ONLY_PREFIXES = ("train_", "valid_", "output_dir", "config", "init_param")


def _period_field(frontend_conf: dict) -> str:
    """The model card's frame period: learnt, pooled (fixed), sampled or fixed."""
    if frontend_conf.get("learnable_rate"):
        return "learned"
    if frontend_conf.get("pooled_period") is not None:
        return (f"{frontend_conf['pooled_period']:g} ms, fixed (the OFA model at its finest "
                "period, features average-pooled)")
    period = f"{frontend_conf.get('frame_period')} ms (changeable at inference)"
    sampling = frontend_conf.get("rate_sampling")
    if sampling:
        return f"{period}; trained at periods drawn in [{sampling['low']}, {sampling['high']}] ms"
    return period


def _archive_path(path: Path) -> str:
    """The name espnet2's packer gives a file: resolved, relative to the cwd if inside it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _referenced_files(value: Any, found: List[Path]) -> Any:
    """Copy of a config with each existing file path made canonical; collects the files."""
    if isinstance(value, dict):
        return {k: _referenced_files(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_referenced_files(v, found) for v in value]
    if isinstance(value, str) and ("/" in value or "." in value) and Path(value).is_file():
        found.append(Path(value))
        return _archive_path(Path(value))
    return value


def pack_downstream(
    task: str,
    train_config: PathLike,
    model_file: PathLike,
    outpath: PathLike,
    card_fields: Optional[Dict[str, str]] = None,
    results: Optional[str] = None,
) -> Path:
    """Pack an ESPnet ASR/SLU/ST experiment with its OFA checkpoint (if any) inside.

    Run from the recipe directory (archive paths are relative to it). The archive opens
    with ``Speech2Text.from_pretrained`` / ``Speech2Understand.from_pretrained``.
    """
    from espnet2.main_funcs.pack_funcs import pack

    if task not in TASKS:
        raise ZooError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    train_config, model_file, outpath = Path(train_config), Path(model_file), Path(outpath)
    for path in (train_config, model_file):
        if not path.is_file():
            raise ZooError(f"{path} does not exist: train the {task} model first")
    conf = yaml.safe_load(train_config.read_text(encoding="utf-8"))
    if not isinstance(conf, dict):
        raise ZooError(f"{train_config} is not an ESPnet training config (a YAML mapping)")
    is_ofa = conf.get("frontend") == "ofa"

    files: List[Path] = []
    packed_conf = {key: value if key.startswith(RUN_ONLY_PREFIXES) else _referenced_files(value, files)
                   for key, value in conf.items()}
    if is_ofa:
        ofa_model = Path(conf["frontend_conf"]["model"])
        if ofa_model.suffix in (".pth", ".pt"):
            # load_student reads the config.yaml beside the (resolved) checkpoint.
            files.append(ofa_model.resolve().parent / "config.yaml")
    packed_config = train_config.parent / "pack" / "config.yaml"
    packed_config.parent.mkdir(parents=True, exist_ok=True)
    packed_config.write_text(yaml.safe_dump(packed_conf, sort_keys=False), encoding="utf-8")

    # The meta.yaml keys are the task's Speech2* keywords, so from_pretrained takes them.
    config_key, model_key = TASKS[task].config_key, TASKS[task].model_key
    if is_ofa:
        frontend_conf = conf["frontend_conf"]
        frontend_fields = {
            "SSL frontend": f"OFA model {frontend_conf['model']}",
            "frame period": _period_field(frontend_conf),
        }
    else:
        frontend_fields = {"frontend": f"{conf.get('frontend')} (a baseline without OFA: "
                                       "fixed frame period)"}
    fields = {
        "task": task,
        **frontend_fields,
        "encoder": str(conf.get("encoder")),
        "training data": ", ".join(str(p[0]) for p in conf.get("train_data_path_and_name_and_type", [])),
        **(card_fields or {}),
    }
    outpath.parent.mkdir(parents=True, exist_ok=True)
    with partial_dir(outpath) as tmp:
        card = write_model_card(Path(tmp) / CARD_NAME, f"{task.upper()} model: {outpath.stem}",
                                fields, results)
        partial = Path(tmp) / outpath.name
        pack(files={model_key: model_file}, yaml_files={config_key: packed_config},
             outpath=partial, option=sorted(set(files)))
        with zipfile.ZipFile(partial, "a") as archive:
            archive.write(card, CARD_NAME)
        os.replace(partial, outpath)
    return outpath
