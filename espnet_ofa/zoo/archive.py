"""ESPnet model-zoo archives of OFA models: pack, verify, unpack.

An archive is what ``espnet2.bin.pack`` writes (a zip with ``meta.yaml`` listing the model
files and YAML configs); ESPnet's own packer does the packing, so archives of ours open with
``espnet_model_zoo`` and ``Speech2Text.from_pretrained`` like any ESPnet model. What is
added here: the OFA SSL model's own pack (config + weights + model card), an integrity check
that turns a truncated or corrupt download into a clear error, an unpacker that jobs sharing
one model can run at once (`unpack_archive`: one copy per archive content, renamed into
place whole, YAML paths relocated as ESPnet's unpacker does), and the file names of an
unpacked OFA model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Dict, Optional, Sequence

import yaml

from espnet_ofa.fileio import PathLike, current_umask, new_file_mode


# meta.yaml keys of an OFA SSL archive.
OFA_MODEL_KEY = "ofa_model_file"
OFA_CONFIG_KEY = "ofa_train_config"
CARD_NAME = "README.md"


class ZooError(ValueError):
    """A model archive or zoo entry is missing, corrupt or not of the expected kind."""


def sha256sum(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(path: PathLike, sha256: Optional[str] = None) -> Dict:
    """Check that ``path`` is a complete ESPnet model archive; return its ``meta.yaml``.

    Raises:
        ZooError: missing file, checksum mismatch, not a zip (e.g. truncated), a member
            with a bad CRC, or no ``meta.yaml``.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"model archive {path} does not exist; check the path or download it again")
    if sha256 is not None and sha256sum(path) != sha256:
        raise ZooError(
            f"{path} does not match its published sha256 (expected {sha256[:12]}...): the "
            "download is incomplete or altered; delete it and download again"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise ZooError(f"{path}: member {bad} is corrupt (CRC mismatch); download again")
            metas = [n for n in archive.namelist() if Path(n).name == "meta.yaml"]
            if not metas:
                raise ZooError(f"{path} has no meta.yaml: not an ESPnet model archive")
            meta = yaml.safe_load(archive.read(metas[0]))
            members = {_member_name(n) for n in archive.namelist()}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ZooError(
            f"{path} is not a readable zip archive ({err}); it is probably truncated: "
            "delete it and download or pack it again"
        ) from err
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), dict)
                                             for k in ("files", "yaml_files")):
        raise ZooError(f"{path}: meta.yaml lacks 'files'/'yaml_files': not an ESPnet model archive")
    listed = [*meta["files"].values(), *meta["yaml_files"].values()]
    missing = [str(v) for v in listed if _member_name(str(v)) not in members]
    if missing:
        raise ZooError(f"{path}: meta.yaml lists {missing[0]}, which the archive does not hold: "
                       "it is incomplete; pack or download it again")
    return meta


def partial_dir(outpath: Path) -> "tempfile.TemporaryDirectory":
    """A hidden temporary folder beside ``outpath`` to build it in (``.<name>.*.partial``):
    a packer killed mid-way leaves only that, never a half-written file under a name a
    reader or a glob for ``*.zip`` would take."""
    return tempfile.TemporaryDirectory(dir=outpath.parent, prefix=f".{outpath.name}.",
                                       suffix=".partial")


def write_model_card(path: PathLike, title: str, fields: Dict[str, str],
                     results: Optional[str] = None) -> Path:
    """A Markdown model card: a title, one line per field, and the results table."""
    lines = [f"# {title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in fields.items()]
    if results:
        lines += ["", "## Results", "", results.strip()]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pack_ofa_ssl(
    config: PathLike,
    model_file: PathLike,
    outpath: PathLike,
    card_fields: Optional[Dict[str, str]] = None,
    results: Optional[str] = None,
    extra_files: Sequence[PathLike] = (),
) -> Path:
    """Pack an ``ofa_ssl_train`` model (config.yaml + weights + card) into a zoo zip.

    Paths inside the archive are relative to the current directory, as with
    ``espnet2.bin.pack``, so run it from the recipe directory. The zip is written to a
    temporary name and moved into place: an interrupted pack leaves no partial archive.
    """
    from espnet2.main_funcs.pack_funcs import pack

    from espnet_ofa.models.pretrained import load_student

    config, model_file, outpath = Path(config), Path(model_file), Path(outpath)
    student = load_student(model_file, config)  # refuse to pack what cannot be loaded
    low, high = student.config.frame_period_range
    conf = yaml.safe_load(config.read_text(encoding="utf-8"))
    fields = {
        "model": "OFA student SSL model (once-for-all sequence compression)",
        "frame period range": f"{low:g}-{high:g} ms, chosen at inference",
        "student": f"{student.config.num_layers} layers x {student.config.embed_dim}-d, "
                   f"{student.config.compression} compression",
        "teacher": str(conf.get("teacher")),
        "training data": ", ".join(str(p[0]) for p in conf.get("train_data_path_and_name_and_type", [])),
        **(card_fields or {}),
    }
    outpath.parent.mkdir(parents=True, exist_ok=True)
    with partial_dir(outpath) as tmp:
        card = write_model_card(Path(tmp) / CARD_NAME, f"OFA SSL model: {outpath.stem}", fields,
                                results)
        partial = Path(tmp) / outpath.name
        # espnet2's pack stores paths relative to the current directory where it can.
        pack(files={OFA_MODEL_KEY: model_file}, yaml_files={OFA_CONFIG_KEY: config},
             outpath=partial, option=list(extra_files))
        # The card goes to the archive's top level, under its own name.
        with zipfile.ZipFile(partial, "a") as archive:
            archive.write(card, CARD_NAME)
        os.replace(partial, outpath)
    return outpath


def unpacked_ofa_model(files: Dict[str, str]) -> Path:
    """The OFA checkpoint of an unpacked archive (its config.yaml sits next to it)."""
    if OFA_MODEL_KEY not in files:
        raise ZooError(
            f"this archive holds {sorted(files)}, not an OFA SSL model ({OFA_MODEL_KEY}); "
            "for a downstream ASR/SLU/ST model use Speech2Text.from_pretrained instead"
        )
    model = Path(files[OFA_MODEL_KEY])
    config = Path(files[OFA_CONFIG_KEY])
    if config.parent != model.parent:
        raise ZooError(f"archive keeps {config.name} apart from {model.name}; repack it")
    return model


def _member_path(root: Path, name: str, archive: Path) -> Path:
    """Where member ``name`` goes under ``root``; refuses names that would leave it."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise ZooError(f"{archive}: member {name!r} would be written outside the unpack "
                       "folder; the archive is not safe to open")
    return root.joinpath(*parts)


def _extract(archive: Path, tmp: Path, final: Path) -> Dict:
    """Extract ``archive`` into ``tmp``, with YAML paths pointing into ``final``; return
    its ``meta.yaml``.

    As ESPnet's unpacker does, every string in a ``yaml_files`` config equal to an archive
    member's name is rewritten to where that member will be once ``tmp`` is renamed to
    ``final``. (ESPnet's packer stores a file from outside the current directory under its
    absolute path, which zip keeps without the leading ``/``: both spellings are matched.)
    """
    from espnet2.main_funcs.pack_funcs import find_path_and_change_it_recursive

    with zipfile.ZipFile(archive) as zf:
        names = [info.filename for info in zf.infolist() if not info.is_dir()]
        meta = yaml.safe_load(zf.read(next(n for n in names if PurePosixPath(n).name == "meta.yaml")))
        yaml_members = {_member_name(v) for v in meta["yaml_files"].values()}
        for name in names:
            out = _member_path(tmp, name, archive)
            out.parent.mkdir(parents=True, exist_ok=True)
            if _member_name(name) in yaml_members:
                conf = yaml.safe_load(zf.read(name))
                for other in names:
                    for spelling in (other, "/" + other):
                        conf = find_path_and_change_it_recursive(conf, spelling, str(final / other))
                out.write_text(yaml.safe_dump(conf), encoding="utf-8")
            else:
                with zf.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(out, new_file_mode())
    return meta


def _member_name(value: str) -> str:
    """The zip member name of a path in ``meta.yaml`` (absolute ones lose their ``/``)."""
    return str(PurePosixPath(value)).lstrip("/")


def unpacked_files(root: Path, meta: Dict) -> Dict[str, str]:
    """``meta.yaml``'s config and model keys -> their paths under the unpack folder ``root``."""
    return {key: str(root / _member_name(value))
            for key, value in [*meta["yaml_files"].items(), *meta["files"].items()]}


# Written last into an unpack folder: its presence means the folder is complete.
UNPACKED_MARKER = ".espnet_ofa_meta.yaml"


def _complete(target: Path) -> bool:
    """Whether every file its ``meta.yaml`` lists is still in an unpack folder."""
    try:
        meta = yaml.safe_load((target / UNPACKED_MARKER).read_text(encoding="utf-8"))
        files = unpacked_files(target, meta)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return False
    return all(Path(path).is_file() for path in files.values())


def _discard(target: Path) -> None:
    """Remove an incomplete unpack folder (a file in it was deleted) so it is unpacked again.

    Renamed aside first, so that the folder name is free at once and a concurrent job that
    finds the same gap discards it only once (its rename fails: the folder is gone).
    """
    stale = target.with_name(f".{target.name[:16]}.{os.getpid()}.stale")
    try:
        os.rename(target, stale)
    except OSError:
        return  # another job moved it first
    shutil.rmtree(stale, ignore_errors=True)


def unpack_archive(archive: PathLike, cachedir: PathLike, sha256: Optional[str] = None) -> Dict[str, str]:
    """Unpack a model archive once into ``<cachedir>/<sha256>``; reuse it afterwards.

    Jobs that share one model (DDP workers, parallel decoding jobs) may all call this at
    once: each extracts into its own temporary folder beside the target and renames it
    into place; the first rename wins and the others discard their copy, so nobody reads a
    half-extracted model or has it rewritten under them, and an interrupted unpack leaves
    only a hidden ``.partial`` folder. The folder is named by the archive's checksum, so a
    changed archive at the same path is unpacked afresh; a folder missing one of the
    archive's files (deleted from the cache) is unpacked again.

    Args:
        archive: a zip model archive (checked with `verify_archive` before extracting).
        cachedir: the folder holding unpacked models.
        sha256: the archive's checksum if already known (saves reading it again).

    Returns:
        ``meta.yaml``'s ``yaml_files`` and ``files`` keys mapped to the unpacked paths.
    """
    archive = Path(archive)
    digest = sha256 or sha256sum(archive)
    cachedir = Path(cachedir).expanduser().absolute()
    target = cachedir / digest
    if (target / UNPACKED_MARKER).is_file() and not _complete(target):
        _discard(target)
    if not (target / UNPACKED_MARKER).is_file():
        verify_archive(archive)
        cachedir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}.", suffix=".partial", dir=cachedir))
        try:
            meta = _extract(archive, tmp, target)
            (tmp / UNPACKED_MARKER).write_text(yaml.safe_dump(meta), encoding="utf-8")
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide a shared cache
            try:
                os.rename(tmp, target)
            except OSError as err:
                if not (target / UNPACKED_MARKER).is_file():  # not a concurrent unpack's
                    raise ZooError(f"cannot move the unpacked {archive} into {target} ({err}); "
                                   f"delete {target} and load the model again") from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    meta = yaml.safe_load((target / UNPACKED_MARKER).read_text(encoding="utf-8"))
    return unpacked_files(target, meta)
