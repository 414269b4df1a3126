"""Find, download and publish OFA model archives.

A model is named by any of:

* a local archive path (``exp/ofa.zip``) or an http(s) URL of one;
* a name in a *local zoo*: a directory with ``index.yaml`` (name -> file, sha256, card)
  written by `publish`; zoos are searched in ``zoo_dirs`` and ``$ESPNET_OFA_ZOO``
  (``:``-separated), which works offline;
* a name in the package's table (`MODEL_TABLE`, ``espnet_ofa/zoo/models.yaml``);
* a Hugging Face repository id (``owner/name``), when online.

`espnet_model_zoo`'s ``ModelDownloader`` downloads URLs and Hugging Face repositories;
this module adds the lookup in our zoos, the integrity check, the unpacking (once per
archive content, safe for concurrent jobs: `espnet_ofa.zoo.archive.unpack_archive`), the
publishing (a locked, atomically rewritten ``index.yaml``) and errors that say what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from espnet_ofa.fileio import atomic_copy, atomic_write, locked
from espnet_ofa.zoo.archive import PathLike, ZooError, sha256sum, unpack_archive, verify_archive

ZOO_ENV = "ESPNET_OFA_ZOO"
INDEX_NAME = "index.yaml"
INDEX_LOCK = ".index.lock"
TABLE_PATH = Path(__file__).with_name("models.yaml")
# A published name is one plain file name (it becomes <name>.zip in the zoo folder and the
# file name in a Hugging Face repository): no folders, no "..", no leading dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def _read_yaml(path: Path) -> Dict:
    """A YAML mapping file (an index or the package table); {} if missing."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ZooError(f"{path} is not readable YAML ({str(err).splitlines()[0]}); "
                       "fix it, or delete it and publish the models again") from None
    if not isinstance(data, dict):
        raise ZooError(f"{path} must map model names to entries, but holds a "
                       f"{type(data).__name__}; fix it, or delete it and publish the models again")
    return data


def check_name(name: str) -> str:
    """A model name usable in a zoo; ``ZooError`` naming the rule otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ZooError(
            f"invalid model name {name!r}: a zoo name is one file name of letters, digits and "
            "'._+-', starting with a letter or digit, without '/', '\\' or '..'; e.g. "
            "--name fsdd_asr_ofa"
        )
    return name


def _index_entry(index_path: Path, name: str, entry: object, source_key: str) -> Dict:
    """Check one index (or package table) entry; ``ZooError`` naming the file and entry."""
    where = f"{index_path}: entry {name!r}"
    if not isinstance(entry, dict):
        raise ZooError(f"{where} must be a mapping with {source_key} and sha256, got "
                       f"{type(entry).__name__}; fix it or publish the model again")
    source = entry.get(source_key)
    if not isinstance(source, str) or not source:
        raise ZooError(f"{where} has no {source_key} (a string); fix it or publish the model again")
    if source_key == "file" and (Path(source).name != source or source in (".", "..")):
        raise ZooError(f"{where}: file {source!r} must be a file name inside the zoo folder, "
                       "not a path; fix it or publish the model again")
    sha256 = entry.get("sha256")
    if source_key == "file" and sha256 is None:
        raise ZooError(f"{where} has no sha256; publish the model again to record it")
    if sha256 is not None and (not isinstance(sha256, str) or not SHA256_PATTERN.fullmatch(sha256)):
        raise ZooError(f"{where}: sha256 must be 64 lowercase hex digits, got {sha256!r}; "
                       "fix it or publish the model again")
    return entry


MODEL_TABLE: Dict[str, Dict] = _read_yaml(TABLE_PATH)


def zoo_dirs(extra: Sequence[PathLike] = ()) -> List[Path]:
    """Local zoo directories to search: ``extra`` first, then ``$ESPNET_OFA_ZOO``."""
    env = [p for p in os.environ.get(ZOO_ENV, "").split(os.pathsep) if p]
    return [Path(p) for p in [*extra, *env]]


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _folder_error(path: Path) -> ZooError:
    inside = sorted(p.name for p in path.iterdir() if p.suffix in (".zip", ".pth", ".pt"))[:5]
    hint = f" (it holds {', '.join(inside)})" if inside else ""
    return ZooError(
        f"{path} is a directory, not a model{hint}: give a packed model .zip, the .pth "
        "checkpoint file itself, or a zoo name"
    )


def locate(name: str, zoos: Sequence[PathLike] = ()) -> Dict[str, Optional[str]]:
    """Resolve ``name`` to ``{"source": path-or-url-or-repo, "sha256": ...}`` without I/O
    beyond reading local indexes.

    Raises:
        ZooError: an unknown name, a folder, or a malformed zoo index entry.
    """
    if Path(name).expanduser().is_file():
        return {"source": str(Path(name).expanduser()), "sha256": None}
    if Path(name).expanduser().is_dir():
        raise _folder_error(Path(name).expanduser())
    if _is_url(name):
        return {"source": name, "sha256": None}
    for zoo in zoo_dirs(zoos):
        index_path = zoo / INDEX_NAME
        index = _read_yaml(index_path)
        if name in index:
            entry = _index_entry(index_path, name, index[name], "file")
            archive = zoo / entry["file"]
            if not archive.is_file():
                raise ZooError(
                    f"model {name!r} is listed in {index_path} but its file {archive} is "
                    "missing (deleted or moved); publish the model again, or remove its "
                    "entry from the index"
                )
            return {"source": str(archive), "sha256": entry["sha256"]}
    if name in MODEL_TABLE:
        entry = _index_entry(TABLE_PATH, name, MODEL_TABLE[name], "url")
        return {"source": entry["url"], "sha256": entry.get("sha256")}
    if name.count("/") == 1 and not name.endswith((".zip", ".pth", ".pt")):
        return {"source": name, "sha256": None}  # a Hugging Face repository id
    searched = [str(z) for z in zoo_dirs(zoos)] or [f"none (set ${ZOO_ENV})"]
    raise ZooError(
        f"model {name!r} not found: it is not a file, a URL, a name in the local zoos "
        f"({', '.join(searched)}) or in the package table ({', '.join(sorted(MODEL_TABLE)) or 'empty'}); "
        "give the path of a packed .zip, publish it to a zoo, or use a Hugging Face id owner/name"
    )


def default_cachedir() -> Path:
    """Where models are downloaded and unpacked: espnet_model_zoo's default folder."""
    return Path.home() / ".cache" / "espnet_model_zoo"


def download_and_unpack(name: str, zoos: Sequence[PathLike] = (),
                        cachedir: Optional[PathLike] = None) -> Dict[str, str]:
    """Fetch (if needed), verify and unpack a model; return ``meta.yaml``'s files, unpacked.

    Archives are unpacked once per content into ``<cachedir>/<sha256>`` (default cachedir:
    espnet_model_zoo's, ``~/.cache/espnet_model_zoo``), safely when several processes
    load the same model at once (`espnet_ofa.zoo.archive.unpack_archive`).
    ``espnet_model_zoo``'s ``ModelDownloader`` downloads URLs and Hugging Face repositories.

    Raises:
        ZooError: not found, not downloadable, truncated or corrupt (with what to do).
    """
    found = locate(name, zoos)
    source = found["source"]
    cache = Path(cachedir) if cachedir is not None else default_cachedir()
    if Path(source).is_file():
        verify_archive(source, found["sha256"])
        return unpack_archive(source, cache, found["sha256"])
    from espnet_model_zoo.downloader import ModelDownloader

    downloader = ModelDownloader(cachedir=cache)
    try:
        if _is_url(source):
            archive = downloader.download(source, quiet=True)
            verify_archive(archive, found["sha256"])
            return unpack_archive(archive, cache, found["sha256"])
        return downloader.download_and_unpack(source, quiet=True)  # a Hugging Face snapshot
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
        name: the model's name in the zoo (default: the archive's stem); one plain file
            name (`check_name`).

    Returns:
        Where the model now is: the local file, or the repository URL.

    A local publish copies the archive in under a temporary name and renames it, then
    updates ``index.yaml`` under an exclusive lock (read, add the entry, write atomically),
    so concurrent publishes into one zoo all keep their entries and a crash leaves the zoo
    as it was or complete. Files get the usual permissions (0666 minus the umask). A
    Hugging Face publish is one commit; offline it fails before anything is written.
    """
    archive = Path(archive)
    name = check_name(name if name is not None else archive.stem)
    verify_archive(archive)
    if zoo.startswith("hf:"):
        return _publish_huggingface(archive, zoo[3:], name, description)

    root = Path(zoo)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}.zip"
    digest = sha256sum(archive)
    with locked(root / INDEX_LOCK):
        index = _read_yaml(root / INDEX_NAME)  # a malformed index stops here, untouched
        atomic_copy(archive, target)
        index[name] = {"file": target.name, "sha256": digest,
                       "size": target.stat().st_size, "description": description}
        atomic_write(root / INDEX_NAME, yaml.safe_dump(index, sort_keys=True))
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

