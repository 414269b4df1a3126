"""LibriSpeech as distributed: list its utterances, download missing parts, write data dirs.

The layout of the OpenSLR release (resource 12), which the recipes read unchanged::

    $LIBRISPEECH/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac
    $LIBRISPEECH/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

where each ``.trans.txt`` line is ``<speaker>-<chapter>-<NNNN> TRANSCRIPT IN UPPER CASE``.
``LIBRISPEECH`` (``db.sh``) is the folder that *holds* ``LibriSpeech/``, as in ESPnet's
recipes. FLAC is read by soundfile: no ``flac`` or ``sox`` binary is needed.

Data directories follow Kaldi/ESPnet: utterance id ``<speaker>-<chapter>-<NNNN>``, speaker
id ``<speaker>-<chapter>`` (so that speaker-level statistics follow the recording sessions),
``text`` in the corpus' own upper case, ``wav.scp`` naming the FLAC files.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from espnet_ofa.data.datadir import write_data_dir_tables
from espnet_ofa.fileio import PathLike
from espnet_ofa.recipe.download import DownloadError, download_and_extract

logger = logging.getLogger(__name__)


PARTS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
         "test-clean", "test-other")
TRAIN_960 = ("train-clean-100", "train-clean-360", "train-other-500")
URL_TEMPLATE = "https://www.openslr.org/resources/12/{part}.tar.gz"
CORPUS_FOLDER = "LibriSpeech"

_UTT_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


class LibriSpeechError(ValueError):
    """LibriSpeech is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True, order=True)
class Utterance:
    utt_id: str
    speaker: str
    path: Path
    text: str


def part_dir(root: PathLike, part: str) -> Path:
    return Path(root) / CORPUS_FOLDER / part


def check_part_name(part: str) -> None:
    if part not in PARTS:
        raise LibriSpeechError(f"unknown LibriSpeech part {part!r}; choose from {', '.join(PARTS)}")


def ensure_parts(root: PathLike, parts: Sequence[str], download: bool = True,
                 url_template: str = URL_TEMPLATE) -> None:
    """Download the parts missing under ``root`` (or, with ``download=False``, say which)."""
    for part in parts:
        check_part_name(part)
        if part_dir(root, part).is_dir():
            continue
        if not download:
            raise LibriSpeechError(
                f"LibriSpeech part {part} is not in {part_dir(root, part)}. Set LIBRISPEECH in "
                "db.sh to the folder that holds LibriSpeech/, or allow the download "
                f"({url_template.format(part=part)})"
            )
        try:
            download_and_extract(url_template.format(part=part), root,
                                 f"{CORPUS_FOLDER}/{part}", f"LibriSpeech {part}")
        except DownloadError as err:
            raise LibriSpeechError(
                f"{err}. Without internet, copy LibriSpeech/{part} into {root} or set "
                "LIBRISPEECH (db.sh) to a folder holding LibriSpeech/; or leave the part out "
                "(run.sh --train_parts)") from err


def _read_transcripts(trans: Path, speaker: str, chapter: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    try:
        lines = trans.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise LibriSpeechError(f"{trans}: not UTF-8 text ({err}); the file is damaged: "
                               "download the part again") from err
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split(None, 1)
        m = _UTT_ID.match(fields[0])
        if m is None or len(fields) < 2 or not fields[1].strip():
            raise LibriSpeechError(
                f"{trans}:{lineno}: malformed line {line[:80]!r}: expected "
                "'<speaker>-<chapter>-<NNNN> TRANSCRIPT'; the file is damaged: download the "
                "part again")
        if (m.group(1), m.group(2)) != (speaker, chapter):
            raise LibriSpeechError(
                f"{trans}:{lineno}: utterance {fields[0]} does not belong to speaker {speaker}, "
                f"chapter {chapter} (the folder it is in)")
        out[fields[0]] = fields[1].strip()
    return out


def list_part(root: PathLike, part: str) -> List[Utterance]:
    """Every utterance of one part, sorted by id; malformed files raise `LibriSpeechError`."""
    check_part_name(part)
    base = part_dir(root, part)
    if not base.is_dir():
        raise LibriSpeechError(
            f"LibriSpeech part {part} is not in {base}; set LIBRISPEECH (db.sh) to the folder "
            "that holds LibriSpeech/ or let local/data.sh download it")
    utts: List[Utterance] = []
    for chapter_dir in sorted(p for p in base.glob("*/*") if p.is_dir()):
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
        flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
        if not trans.is_file():
            if flacs:
                raise LibriSpeechError(
                    f"{chapter_dir}: {len(flacs)} .flac files but no {trans.name}; the part is "
                    "incomplete: download it again")
            continue
        texts = _read_transcripts(trans, speaker, chapter)
        for utt_id, text in texts.items():
            path = flacs.get(utt_id)
            if path is None:
                raise LibriSpeechError(
                    f"{trans}: {utt_id} has a transcript but {chapter_dir / (utt_id + '.flac')} "
                    "is missing; the part is incomplete: download it again")
            utts.append(Utterance(utt_id, f"{speaker}-{chapter}", path.resolve(), text))
        extra = sorted(set(flacs) - set(texts))
        if extra:
            logger.warning("%s: %d audio files without a transcript (ignored), e.g. %s",
                           chapter_dir, len(extra), extra[0])
    if not utts:
        raise LibriSpeechError(f"{base}: no utterances (no <speaker>/<chapter>/*.trans.txt)")
    return sorted(utts)


def write_data_dir(utts: Sequence[Utterance], out_dir: PathLike) -> Path:
    """Kaldi data dir: wav.scp, text, utt2spk, spk2utt (each written atomically)."""
    return write_data_dir_tables(out_dir, {
        "wav.scp": {u.utt_id: str(u.path) for u in utts},
        "text": {u.utt_id: u.text for u in utts},
        "utt2spk": {u.utt_id: u.speaker for u in utts},
    })


def prepare(root: PathLike, data_dir: PathLike, sets: Mapping[str, Sequence[str]],
            download: bool = True, max_utts: Optional[int] = None) -> Dict[str, int]:
    """Write ``data_dir/<name>`` for each ``name -> parts`` of ``sets``.

    Several parts under one name are concatenated (``train_960``). ``max_utts`` keeps the
    first N utterances of each set (sorted by id), for quick runs.

    Returns:
        ``{name: number of utterances}``.
    """
    needed = list(dict.fromkeys(p for parts in sets.values() for p in parts))
    ensure_parts(root, needed, download=download)
    counts = {}
    for name, parts in sets.items():
        utts = [u for part in parts for u in list_part(root, part)]
        if max_utts is not None:
            utts = sorted(utts)[:max_utts]
        write_data_dir(utts, Path(data_dir) / name)
        counts[name] = len(utts)
        print(f"progress: data/{name}: {len(utts)} utterances from {' '.join(parts)}", flush=True)
    return counts
