"""Download a corpus archive and unpack it atomically (for recipes' ``local/data.sh``).

A corpus part is fetched into a temporary file, unpacked into a temporary directory beside
its destination, and renamed into place only when complete, so a killed download or a full
disk leaves nothing that looks finished; the next run starts again.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from espnet_ofa.fileio import PathLike


class DownloadError(RuntimeError):
    """A download or an archive failed; the message says how to get the data another way."""


def fetch(url: str, dest: Path, what: str, progress: bool = True) -> None:
    """Copy ``url`` to the file ``dest``, printing ``progress:`` lines every 10%."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done, step = 0, 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress and total and done * 10 // total > step:
                    step = done * 10 // total
                    print(f"progress: {what} download {100 * done // total}%", flush=True)
    except OSError as err:
        raise DownloadError(f"cannot download {what} from {url}: {err}") from err


def download_and_extract(url: str, root: PathLike, expect: str, what: str, *,
                         source: Optional[str] = None,
                         verify: Optional[Callable[[Path], None]] = None,
                         progress: bool = True) -> Path:
    """Download the tar archive at ``url`` and unpack it into ``root``.

    Args:
        url: http(s) or file:// URL of a .tar.gz / .tgz / .tar archive.
        root: the folder the archive's top-level entries go to.
        expect: a path, relative to ``root``, that the archive must create (e.g.
            ``LibriSpeech/dev-clean``); it is moved into place last, so its presence means
            the part is complete.
        what: a name for messages ("LibriSpeech dev-clean").
        source: a glob, inside the archive, of the folder that becomes ``root / expect``
            (e.g. ``*/recordings`` under a release's versioned top folder); the rest of
            the archive is then left out. Default: ``expect`` itself, and the archive's
            other files are unpacked beside it.
        verify: called on the unpacked part before it is moved into place; an error it
            raises leaves nothing behind.
        progress: print ``progress:`` lines.

    Returns:
        ``root / expect``.
    Raises:
        DownloadError: the download failed, or the archive is unreadable or lacks the part.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / expect
    if target.exists():
        return target
    fd, archive = tempfile.mkstemp(prefix=".download.", suffix=".tar", dir=root)
    os.close(fd)
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=root))
    try:
        if progress:
            print(f"progress: downloading {what} from {url}", flush=True)
        fetch(url, Path(archive), what, progress=progress)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DownloadError(f"{what}: the archive from {url} is unreadable ({err}); "
                                "download it again") from err
        found = sorted(staging.glob(source)) if source else [staging / expect]
        unpacked = found[0] if found else staging / (source or expect)
        if not unpacked.exists():
            raise DownloadError(f"{what}: the archive from {url} has no {source or expect}; "
                                "is the URL right?")
        if verify is not None:
            verify(unpacked)
        # Everything but the expected part first (e.g. LibriSpeech's README files), then the part.
        for item in ([] if source else staging.rglob("*")):
            rel = item.relative_to(staging)
            if item.is_file() and not rel.is_relative_to(expect) and not (root / rel).exists():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(item), root / rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(unpacked, target)
        if progress:
            print(f"progress: {what} in {target}", flush=True)
        return target
    finally:
        if os.path.exists(archive):
            os.unlink(archive)
        shutil.rmtree(staging, ignore_errors=True)
