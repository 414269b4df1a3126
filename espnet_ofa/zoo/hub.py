"""Find, download and publish OFA model archives.

A model is named by any of:

* a local archive path (``exp/ofa.zip``) or an http(s) URL of one;
* a name in a *local zoo*: a directory with ``index.yaml`` (name -> file, sha256, card)
  written by `publish`; zoos are searched in ``zoo_dirs`` and ``$ESPNET_OFA_ZOO``
  (``:``-separated), which works offline;
* a name in the package's table (`MODEL_TABLE`, ``espnet_ofa/zoo/models.yaml``);
* a Hugging Face repository id (``owner/name``), when online.

`espnet_model_zoo`'s ``ModelDownloader`` downloads and unpacks; this module adds the
lookup in our zoos, the integrity check, and errors that say what to do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from espnet_ofa.zoo.archive import PathLike, ZooError, sha256sum, verify_archive

ZOO_ENV = "ESPNET_OFA_ZOO"
INDEX_NAME = "index.yaml"
TABLE_PATH = Path(__file__).with_name("models.yaml")


def _read_yaml(path: Path) -> Dict:
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ZooError(f"{path} must map model names to entries; fix or delete it")
    return data


MODEL_TABLE: Dict[str, Dict] = _read_yaml(TABLE_PATH)


def zoo_dirs(extra: Sequence[PathLike] = ()) -> List[Path]:
    """Local zoo directories to search: ``extra`` first, then ``$ESPNET_OFA_ZOO``."""
    env = [p for p in os.environ.get(ZOO_ENV, "").split(os.pathsep) if p]
    return [Path(p) for p in [*extra, *env]]


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def locate(name: str, zoos: Sequence[PathLike] = ()) -> Dict[str, Optional[str]]:
    """Resolve ``name`` to ``{"source": path-or-url-or-repo, "sha256": ...}`` without I/O
    beyond reading local indexes."""
    if Path(name).expanduser().is_file():
        return {"source": str(Path(name).expanduser()), "sha256": None}
    if _is_url(name):
        return {"source": name, "sha256": None}
    for zoo in zoo_dirs(zoos):
        entry = _read_yaml(zoo / INDEX_NAME).get(name)
        if entry is not None:
            return {"source": str(zoo / entry["file"]), "sha256": entry.get("sha256")}
    if name in MODEL_TABLE:
        entry = MODEL_TABLE[name]
        return {"source": entry["url"], "sha256": entry.get("sha256")}
    if name.count("/") == 1 and not name.endswith((".zip", ".pth", ".pt")):
        return {"source": name, "sha256": None}  # a Hugging Face repository id
    searched = [str(z) for z in zoo_dirs(zoos)] or [f"none (set ${ZOO_ENV})"]
    raise ZooError(
        f"model {name!r} not found: it is not a file, a URL, a name in the local zoos "
        f"({', '.join(searched)}) or in the package table ({', '.join(sorted(MODEL_TABLE)) or 'empty'}); "
        "give the path of a packed .zip, publish it to a zoo, or use a Hugging Face id owner/name"
    )


def download_and_unpack(name: str, zoos: Sequence[PathLike] = (),
                        cachedir: Optional[PathLike] = None) -> Dict[str, str]:
    """Fetch (if needed), verify and unpack a model; return ``meta.yaml``'s files, unpacked.

    Unpacking goes to ``cachedir`` (default: espnet_model_zoo's, ``~/.cache/espnet_model_zoo``)
    and is reused on later calls.
    """
    from espnet_model_zoo.downloader import ModelDownloader

    found = locate(name, zoos)
    source = found["source"]
    downloader = ModelDownloader(cachedir=cachedir)
    if Path(source).is_file():
        verify_archive(source, found["sha256"])
        return downloader.unpack_local_file(str(Path(source).resolve()))
    try:
        if _is_url(source):
            archive = downloader.download(source, quiet=True)
            verify_archive(archive, found["sha256"])
        return downloader.download_and_unpack(source, quiet=True)
    except ZooError:
        raise
    except Exception as err:  # network errors come in many types (requests, hub, OS)
        raise ZooError(
            f"could not download model {name!r} from {source} ({type(err).__name__}: {err}); "
            "when offline, download the .zip elsewhere and pass its local path, or publish it "
            f"to a local zoo (${ZOO_ENV})"
        ) from err


def publish(archive: PathLike, zoo: str, name: Optional[str] = None,
            description: str = "") -> str:
    """Publish a packed model to a local zoo directory or a Hugging Face repository.

    Args:
        archive: the packed .zip (verified first).
        zoo: a local directory (created if missing), or ``hf:owner/repo``.
        name: the model's name in the zoo (default: the archive's stem).

    Returns:
        Where the model now is: the local file, or the repository URL.

    A local publish copies to a temporary name and renames, then rewrites ``index.yaml``
    the same way, so a crash leaves the zoo as it was or complete. A Hugging Face publish is
    one commit; offline it fails before anything is written.
    """
    archive = Path(archive)
    verify_archive(archive)
    name = name or archive.stem
    if zoo.startswith("hf:"):
        return _publish_huggingface(archive, zoo[3:], name, description)

    root = Path(zoo)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}.zip"
    with tempfile.NamedTemporaryFile(dir=root, suffix=".partial", delete=False) as tmp:
        shutil.copyfile(archive, tmp.name)
    os.replace(tmp.name, target)
    index = _read_yaml(root / INDEX_NAME)
    index[name] = {"file": target.name, "sha256": sha256sum(target),
                   "size": target.stat().st_size, "description": description}
    with tempfile.NamedTemporaryFile("w", dir=root, suffix=".partial", delete=False,
                                     encoding="utf-8") as tmp:
        yaml.safe_dump(index, tmp, sort_keys=True)
    os.replace(tmp.name, root / INDEX_NAME)
    return str(target)


def _publish_huggingface(archive: Path, repo_id: str, name: str, description: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True)
        api.upload_file(path_or_fileobj=str(archive), path_in_repo=f"{name}.zip",
                        repo_id=repo_id, commit_message=f"Add {name}: {description}".strip())
    except Exception as err:  # offline, no token, no rights: say so, nothing was written
        raise ZooError(
            f"publishing to Hugging Face repo {repo_id!r} failed ({type(err).__name__}: {err}); "
            "check the network and `huggingface-cli login`, or publish to a local zoo directory"
        ) from err
    return f"https://huggingface.co/{repo_id}"


def resolve_ofa_checkpoint(name: str, zoos: Sequence[PathLike] = (),
                           cachedir: Optional[PathLike] = None) -> Path:
    """A packed OFA SSL model (zip path, zoo name, URL, HF id) -> its local .pth."""
    from espnet_ofa.zoo.archive import unpacked_ofa_model

    return unpacked_ofa_model(download_and_unpack(name, zoos, cachedir))

