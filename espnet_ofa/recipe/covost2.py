"""CoVoST 2 English->German as distributed, joined with the Common Voice English release.

Read unchanged, as ESPnet's CoVoST 2 recipe places them (``db.sh``)::

    $COMMONVOICE/en/clips/*.mp3           Common Voice English audio
    $COMMONVOICE/en/validated.tsv         client_id, path, sentence, ... (one header line)
    $COVOST2/covost_v2.en_de.tsv          path, translation, split, ... (one header line)

Both tables are tab-separated with a header, no quoting and backslash escapes (how CoVoST's
own scripts read them). A clip of the CoVoST table is joined with its Common Voice row by
``path``; ``split`` is ``train`` (also ``train_covost``), ``dev`` or ``test``; the other values
CoVoST uses (``dev_covost``, ``test_covost``) are left out, and anything else is an error. MP3
is decoded by soundfile (libsndfile >= 1.1): no ffmpeg or sox binary is needed.

Data dirs: ``text`` is the German translation as released (true case, punctuation: BLEU on
CoVoST 2 is case-sensitive and detokenised), ``src_text`` the English transcript, utterance
id ``<client_id>-<clip>``, speaker = Common Voice's ``client_id``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from espnet_ofa.data.datadir import write_data_dir_tables
from espnet_ofa.fileio import PathLike
from espnet_ofa.recipe.download import download_and_extract

logger = logging.getLogger(__name__)


SRC_LANG, TGT_LANG = "en", "de"
COVOST_TSV = f"covost_v2.{SRC_LANG}_{TGT_LANG}.tsv"
COVOST_URL = f"https://dl.fbaipublicfiles.com/covost/{COVOST_TSV}.tar.gz"
# CoVoST's split column -> our data dir; None = a value CoVoST uses that is left out.
SPLIT_VALUES: Dict[str, Optional[str]] = {
    "train": "train", "train_covost": "train", "dev": "dev", "test": "test",
    "dev_covost": None, "test_covost": None,
}


class CoVoSTError(ValueError):
    """The corpus is missing or malformed; the message names the file (and line) and the fix."""


@dataclass(frozen=True, order=True)
class Utterance:
    utt_id: str
    speaker: str
    path: Path
    transcript: str
    translation: str


def _read_tsv(path: Path, required: Sequence[str]) -> Iterator[Tuple[int, Dict[str, str]]]:
    """``(line number, row)`` of a tab-separated table with a header naming ``required``."""
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
            header = next(reader, None)
            if header is None or any(col not in header for col in required):
                raise CoVoSTError(f"{path}:1: header {header} lacks the columns "
                                  f"{', '.join(required)}; is this the file as released?")
            for row in reader:
                lineno = reader.line_num
                if not row or not any(row):
                    continue
                if len(row) != len(header):
                    raise CoVoSTError(f"{path}:{lineno}: {len(row)} fields where the header "
                                      f"has {len(header)}; the file is damaged")
                yield lineno, dict(zip(header, row))
    except UnicodeDecodeError as err:
        raise CoVoSTError(f"{path}: not UTF-8 ({err}); the file is damaged: download it "
                          "again") from err


def ensure_covost_table(covost_dir: PathLike, download: bool = True,
                        url: str = COVOST_URL) -> Path:
    """``$COVOST2/covost_v2.en_de.tsv``, downloaded (with its release archive) when missing."""
    table = Path(covost_dir) / COVOST_TSV
    if table.is_file():
        return table
    if not download:
        raise CoVoSTError(f"{table} not found: set COVOST2 (db.sh) to the folder holding "
                          f"{COVOST_TSV}, or allow its download ({url})")
    return download_and_extract(url, covost_dir, COVOST_TSV, f"CoVoST 2 {SRC_LANG}-{TGT_LANG}")


def read_common_voice(cv_dir: PathLike) -> Dict[str, Tuple[str, str]]:
    """``clip path -> (client_id, sentence)`` from ``$COMMONVOICE/en/validated.tsv``."""
    tsv = Path(cv_dir) / SRC_LANG / "validated.tsv"
    rows: Dict[str, Tuple[str, str]] = {}
    try:
        for _, row in _read_tsv(tsv, ("client_id", "path", "sentence")):
            rows[row["path"]] = (row["client_id"], row["sentence"])
    except FileNotFoundError:
        raise CoVoSTError(
            f"{tsv} not found: set COMMONVOICE (db.sh) to the folder that holds the Common "
            "Voice English release (en/clips/, en/validated.tsv); Common Voice is downloaded "
            "by hand from commonvoice.mozilla.org after accepting its terms") from None
    return rows


def list_splits(cv_dir: PathLike, covost_table: PathLike) -> Dict[str, List[Utterance]]:
    """``{train, dev, test}`` utterances; a clip missing from disk or Common Voice is an error."""
    cv = read_common_voice(cv_dir)
    clips = Path(cv_dir) / SRC_LANG / "clips"
    table = Path(covost_table)
    out: Dict[str, List[Utterance]] = {"train": [], "dev": [], "test": []}
    left_out = 0
    try:
        rows = list(_read_tsv(table, ("path", "translation", "split")))
    except FileNotFoundError:
        raise CoVoSTError(f"{table} not found; see ensure_covost_table") from None
    for lineno, row in rows:
        where = f"{table}:{lineno}"
        split = row["split"].strip()
        if split not in SPLIT_VALUES:
            raise CoVoSTError(f"{where}: unknown split {split!r}; CoVoST 2 uses "
                              f"{', '.join(SPLIT_VALUES)}")
        name = SPLIT_VALUES[split]
        if name is None:
            left_out += 1
            continue
        clip = row["path"].strip()
        if clip not in cv:
            raise CoVoSTError(f"{where}: clip {clip} is not in {Path(cv_dir) / SRC_LANG / 'validated.tsv'}; "
                              "use the Common Voice release CoVoST 2 was built on (version 4)")
        path = clips / clip
        if not path.is_file():
            raise CoVoSTError(f"{where}: audio {path} is missing; unpack the whole Common Voice "
                              f"English release into {cv_dir}")
        client, sentence = cv[clip]
        translation = " ".join(row["translation"].split())
        if not translation:
            raise CoVoSTError(f"{where}: empty translation for {clip}")
        speaker = client.strip() or Path(clip).stem
        out[name].append(Utterance(f"{speaker}-{Path(clip).stem}", speaker, path.resolve(),
                                   " ".join(sentence.split()), translation))
    if left_out:
        logger.info("%s: %d clips of splits other than train/dev/test left out", table, left_out)
    for name, utts in out.items():
        if not utts:
            raise CoVoSTError(f"{table}: no clip in split {name!r}")
        utts.sort()
    return out


def write_data_dir(utts: Sequence[Utterance], out_dir: PathLike) -> Path:
    """Kaldi data dir: wav.scp, text (German), src_text (English), utt2spk, spk2utt."""
    return write_data_dir_tables(out_dir, {
        "wav.scp": {u.utt_id: str(u.path) for u in utts},
        "text": {u.utt_id: u.translation for u in utts},
        "src_text": {u.utt_id: u.transcript for u in utts},
        "utt2spk": {u.utt_id: u.speaker for u in utts},
    })


def prepare(cv_dir: PathLike, covost_dir: PathLike, data_dir: PathLike, download: bool = True,
            max_utts: Optional[int] = None) -> Dict[str, int]:
    """Write ``data_dir/{train,dev,test}``; returns ``{name: number of utterances}``."""
    table = ensure_covost_table(covost_dir, download=download)
    counts = {}
    for name, utts in list_splits(cv_dir, table).items():
        if max_utts is not None:
            utts = utts[:max_utts]
        write_data_dir(utts, Path(data_dir) / name)
        counts[name] = len(utts)
        print(f"progress: data/{name}: {len(utts)} utterances", flush=True)
    return counts
