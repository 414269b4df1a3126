"""The Free Spoken Digit Dataset (FSDD): find or download it, list its takes, split them.

FSDD (Z. Jackson et al., CC BY-SA 4.0, github.com/Jakobovski/free-spoken-digit-dataset)
holds ``recordings/{digit}_{speaker}_{index}.wav``: 8 kHz mono 16-bit, one spoken digit
per file, 50 takes per speaker and digit (the full release has 6 speakers).

Splits used by the recipes (``split_takes``):

- ``test``: takes 0-4 of every speaker but the held-out one (FSDD's usual test split);
- ``dev``: takes 5-9 of those speakers (part of FSDD's usual train range 5-49);
- ``train``: takes 10-49 of those speakers (``train_takes`` keeps fewer for a fast run);
- ``test_<speaker>``: every take of one held-out speaker (``heldout_speaker``), a second
  test set with a voice the model never heard.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from espnet_ofa.fileio import PathLike
from espnet_ofa.recipe.download import DownloadError, download_and_extract

logger = logging.getLogger(__name__)


# The public GitHub release archive (the last tag; 6 speakers, 3,000 recordings).
FSDD_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/"
            "v1.0.10.tar.gz")
FSDD_SAMPLE_RATE = 8000
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEST_INDICES = range(0, 5)
DEV_INDICES = range(5, 10)
TRAIN_INDICES = range(10, 50)

_NAME = re.compile(r"^(\d)_([A-Za-z][A-Za-z0-9]*)_(\d+)\.wav$")


class FSDDError(RuntimeError):
    """FSDD is missing, incomplete or cannot be downloaded; the message says what to do."""


@dataclass(frozen=True, order=True)
class Take:
    """One FSDD recording: a speaker saying one digit."""

    speaker: str
    digit: int
    index: int
    path: Path

    @property
    def utt_id(self) -> str:
        """Speaker-first id (Kaldi wants utterance ids to start with the speaker id)."""
        return f"{self.speaker}_{self.digit}_{self.index:02d}"

    @property
    def word(self) -> str:
        return DIGIT_WORDS[self.digit]


def parse_name(path: PathLike) -> Take:
    """``.../3_jackson_12.wav`` -> Take(speaker='jackson', digit=3, index=12)."""
    path = Path(path)
    m = _NAME.match(path.name)
    if m is None:
        raise ValueError(f"{path}: not an FSDD file name ('{{digit}}_{{speaker}}_{{index}}.wav')")
    return Take(speaker=m.group(2), digit=int(m.group(1)), index=int(m.group(3)), path=path)


def recordings_dir(root: PathLike) -> Path:
    return Path(root) / "recordings"


def has_fsdd(root: PathLike) -> bool:
    rec = recordings_dir(root)
    return rec.is_dir() and any(rec.glob("*_*_*.wav"))


def list_takes(root: PathLike) -> List[Take]:
    """Every ``recordings/*.wav`` of an FSDD copy, sorted by speaker, digit, index."""
    rec = recordings_dir(root)
    if not has_fsdd(root):
        raise FSDDError(
            f"no FSDD recordings in {rec}. Set FSDD (db.sh) to a copy holding recordings/, "
            "or let the recipe download it (an empty or missing directory is filled)."
        )
    takes = []
    for f in rec.glob("*.wav"):
        try:
            takes.append(parse_name(f))
        except ValueError:
            logger.warning("ignoring %s: not an FSDD file name", f)
    return sorted(takes)


def download_fsdd(root: PathLike, url: str = FSDD_URL, progress: bool = True) -> Path:
    """Download the FSDD release archive and unpack its ``recordings/`` into ``root``.

    Atomic (`espnet_ofa.recipe.download.download_and_extract`): a killed download is simply
    redone. ``url`` may be ``file://`` (for an archive already fetched). An empty
    ``recordings/`` is filled; one holding other files is left alone, with an error.
    """
    target = recordings_dir(root)
    if has_fsdd(root):
        return target
    if target.is_dir():
        if any(target.iterdir()):
            raise FSDDError(f"{target} holds no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) "
                            "but other files: move them away, or set FSDD in db.sh to a copy")
        target.rmdir()

    def holds_recordings(folder: Path) -> None:
        if not any(_NAME.match(f.name) for f in folder.glob("*.wav")):
            raise FSDDError(f"{url}: the archive holds no recordings/*.wav; is it FSDD?")

    try:
        download_and_extract(url, root, "recordings", "FSDD", source="**/recordings",
                             verify=holds_recordings, progress=progress)
    except DownloadError as err:
        raise FSDDError(
            f"{err}. Without internet, copy FSDD (its recordings/ folder) to {root} or set "
            "FSDD in db.sh to a local copy."
        ) from err
    return target


def ensure_fsdd(root: PathLike, url: str = FSDD_URL) -> Path:
    """``root`` when it holds FSDD, else download it there first."""
    if not has_fsdd(root):
        download_fsdd(root, url)
    return Path(root)


def speakers_of(takes: Iterable[Take]) -> List[str]:
    return sorted({t.speaker for t in takes})


def split_takes(
    takes: Sequence[Take],
    heldout_speaker: Optional[str] = None,
    speakers: Optional[Sequence[str]] = None,
    train_takes: Optional[int] = None,
    dev_takes: Optional[int] = None,
    test_takes: Optional[int] = None,
    heldout_takes: Optional[int] = None,
) -> Dict[str, List[Take]]:
    """Split takes into ``train``, ``dev``, ``test`` and ``test_<heldout_speaker>``.

    Args:
        takes: from :func:`list_takes`.
        heldout_speaker: every take of this speaker goes to ``test_<speaker>`` only
            (None or "" = no second test set).
        speakers: the other speakers to use (default: all but the held-out one).
        train_takes, dev_takes, test_takes, heldout_takes: keep only the first N indices
            of each speaker and digit in that split (None = all); for fast runs.

    Returns:
        ``{split: takes}`` sorted; raises ``FSDDError`` for an unknown speaker or an empty split.
    """
    known = speakers_of(takes)
    for spk in [*(speakers or ()), *([heldout_speaker] if heldout_speaker else [])]:
        if spk not in known:
            raise FSDDError(f"speaker {spk!r} is not in FSDD (known: {', '.join(known)})")
    if speakers is None:
        speakers = [s for s in known if s != heldout_speaker]
    elif heldout_speaker in speakers:
        raise FSDDError(f"the held-out speaker {heldout_speaker!r} cannot also be a train speaker")

    def first(pool: List[Take], limit: Optional[int]) -> List[Take]:
        if limit is None:
            return sorted(pool)
        by_key: Dict[tuple, List[Take]] = {}
        for t in sorted(pool, key=lambda t: (t.speaker, t.digit, t.index)):
            by_key.setdefault((t.speaker, t.digit), []).append(t)
        return sorted(t for group in by_key.values() for t in group[:limit])

    chosen = [t for t in takes if t.speaker in speakers]
    splits = {
        "train": first([t for t in chosen if t.index in TRAIN_INDICES], train_takes),
        "dev": first([t for t in chosen if t.index in DEV_INDICES], dev_takes),
        "test": first([t for t in chosen if t.index in TEST_INDICES], test_takes),
    }
    if heldout_speaker:
        splits[f"test_{heldout_speaker}"] = first(
            [t for t in takes if t.speaker == heldout_speaker], heldout_takes)
    for name, part in splits.items():
        if not part:
            raise FSDDError(f"split {name!r} is empty: check the speakers and take limits")
    return splits
