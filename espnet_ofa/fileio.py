"""Crash- and race-safe file writes shared by the whole package (standard library only).

* `atomic_write` / `atomic_copy`: write to a temporary name in the target's directory,
  fsync, then ``os.replace``: a reader or a killed writer never sees a half-written file.
  `atomic_write` leaves a file that already holds the same bytes untouched (its time too).
  The result gets the permissions an ordinary ``open(path, "w")`` would give (0666 minus
  the umask), not the 0600 of ``tempfile.mkstemp``, so files in shared directories stay
  readable by the group/others the umask allows.
* `locked`: an exclusive ``fcntl.flock`` on a lock file, for read-modify-write of a file
  that several processes update (a zoo's index).
* `zip_problem`: whether a zip (a torch checkpoint) is whole: a writer killed mid-way
  (ESPnet's trainer saves ``checkpoint.pth`` in place) leaves one without its directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Union

PathLike = Union[str, os.PathLike]


def current_umask() -> int:
    """The process umask (read without changing it where /proc tells; else set and restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # briefly changes it: only where /proc is unavailable
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 without the umask's bits."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """A new temporary file name in ``path``'s directory; removed unless renamed away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _finish(tmp: Path, path: Path) -> None:
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, path)


def atomic_write(path: PathLike, data: Union[str, bytes], encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically, with the usual file mode.

    A file that already holds exactly ``data`` is left as it is, modification time
    included: a rerun of a stage that writes the same tables does not make everything
    built from them look out of date (the recipes' make-like checks compare times).
    """
    path = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    if _holds(path, payload):
        return path
    with _temporary_beside(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        _finish(tmp, path)
    return path


def _holds(path: Path, payload: bytes) -> bool:
    """Whether ``path`` is a regular file whose bytes are ``payload``."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != len(payload):
            return False
        return path.read_bytes() == payload
    except OSError:
        return False


def atomic_copy(src: PathLike, dst: PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically (contents only), with the usual file mode."""
    dst = Path(dst)
    with _temporary_beside(dst) as tmp:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        _finish(tmp, dst)
    return dst


@contextlib.contextmanager
def locked(lock_path: PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block.

    The lock is advisory: it serialises the processes that take it (every writer of the
    protected file must). It is released when the block ends or the process dies.
    """
    import fcntl  # POSIX only: imported here so the module still imports elsewhere

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def zip_problem(path: PathLike) -> Optional[str]:
    """Why the zip at ``path`` is not whole, or None: not a complete zip (cut off while
    written), or a record whose bytes fail the CRC-32 stored with it. Records stored with
    CRC 0 (written without checksums, as torch can be told to) are not checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 or info.is_dir():
                    continue
                try:
                    with archive.open(info, "r") as record:  # zipfile checks the CRC
                        while record.read(1 << 20):
                            pass
                except zipfile.BadZipFile:
                    return f"its record {info.filename} fails its checksum"
    except (zipfile.BadZipFile, EOFError) as err:
        return f"it is not a complete zip file ({err}): cut off while being written"
    return None


def file_sha1(path: PathLike) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
