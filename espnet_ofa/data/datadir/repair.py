"""Repairing a data directory in place, like Kaldi's ``fix_data_dir.sh``: :func:`fix_data_dir`."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

from espnet_ofa.data.datadir.tables import (
    BYTE_ORDER_MARK,
    RECO_KEYED_PATTERN,
    SPK_KEYED_PATTERN,
    UTT_KEYED_TABLES,
    DataDirError,
    _iter_table,
    id_problem,
    is_utterance_table,
    segment_problem,
    wav_scp_path,
    write_kaldi_table,
)
from espnet_ofa.fileio import PathLike

logger = logging.getLogger(__name__)


@dataclass
class FixReport:
    """What :func:`fix_data_dir` did: utterances kept and, per utterance dropped, why."""

    path: Path
    num_kept: int
    dropped: Dict[str, str] = field(default_factory=dict)  # utt id -> reason
    dropped_lines: List[str] = field(default_factory=list)  # "file:line: reason"
    rewritten: List[str] = field(default_factory=list)
    backup_dir: Optional[Path] = None

    def __str__(self) -> str:
        lines = [f"fix_data_dir {self.path}: kept {self.num_kept} utterances, "
                 f"dropped {len(self.dropped)}"]
        lines += [f"  dropped {utt}: {why}" for utt, why in sorted(self.dropped.items())[:20]]
        if len(self.dropped) > 20:
            lines.append(f"  ... and {len(self.dropped) - 20} more")
        lines += [f"  removed line {x}" for x in self.dropped_lines[:20]]
        if len(self.dropped_lines) > 20:
            lines.append(f"  ... and {len(self.dropped_lines) - 20} more removed lines")
        if self.backup_dir is not None:
            lines.append(f"  originals backed up in {self.backup_dir}")
        return "\n".join(lines)



def _read_lenient(path: Path, report: FixReport, allow_empty: bool) -> Dict[str, str]:
    """Read a table, dropping (and reporting) blank, malformed and duplicate lines."""
    out: Dict[str, str] = {}
    first: Dict[str, int] = {}
    for lineno, _raw, key, value in _iter_table(path):
        where = f"{path.name}:{lineno}"
        if lineno == 1 and key is not None and key.startswith(BYTE_ORDER_MARK):
            key = key[len(BYTE_ORDER_MARK):]  # the file's encoding mark, not the id's
        if key is None:
            report.dropped_lines.append(f"{where}: blank line")
        elif id_problem(key) is not None:
            report.dropped_lines.append(f"{where}: {id_problem(key)}")
        elif not value and not allow_empty:
            # An empty transcript is dropped with its utterance (recorded as such below).
            if path.name == "text":
                report.dropped.setdefault(key, f"empty transcript ({where})")
            else:
                report.dropped_lines.append(f"{where}: '{key}' has no value")
        elif key in out:
            report.dropped_lines.append(f"{where}: duplicate id '{key}' (kept line {first[key]})")
        else:
            out[key] = value
            first[key] = lineno
    return out


def _new_backup_dir(data_dir: Path) -> Path:
    """A fresh backup folder: ``.backup``, then ``.backup.2``, ``.backup.3``, ...

    Created with ``mkdir`` (atomic, fails if it exists), so a second run, even a
    concurrent one, never overwrites the originals an earlier run saved.
    """
    for number in range(1, 10000):
        candidate = data_dir / (".backup" if number == 1 else f".backup.{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise DataDirError(f"{data_dir}: 9999 backups exist already; delete old .backup* folders")


def fix_data_dir(path: PathLike, drop_missing_audio: bool = False, backup: bool = True) -> FixReport:
    """Repair a data directory in place, like Kaldi's ``fix_data_dir.sh``.

    - drops blank/malformed lines and duplicate ids (keeping the first), and utterances with
      an empty transcript;
    - keeps only utterances present in every utterance-keyed table (``text``, ``utt2spk``,
      ``utt2dur``, every other ``utt2*`` and ``text*`` file, see `is_utterance_table`) and
      in ``wav.scp`` (or in a well-formed ``segments`` line with a recording in wav.scp;
      recordings no kept segment uses are dropped from wav.scp), and filters the tables
      keyed by speaker (``spk2gender``, ...) and recording (``reco2dur``, ...) to match;
    - with ``drop_missing_audio``, drops utterances whose audio file does not exist;
    - sorts every table in C-locale order and regenerates ``spk2utt`` from ``utt2spk`` (or
      ``utt2spk`` from ``spk2utt`` when only that exists);
    - writes each file atomically, after copying the originals to a new backup folder,
      ``<dir>/.backup/`` the first time, then ``.backup.2/``, ... (never overwritten).

    Returns a :class:`FixReport` (also logged) saying what was dropped and why.
    """
    data_dir = Path(path)
    if not data_dir.is_dir():
        raise DataDirError(f"{data_dir}: data directory not found.")
    report = FixReport(path=data_dir, num_kept=0)
    files = sorted(p.name for p in data_dir.iterdir() if p.is_file())
    tables = _read_tables_to_fix(data_dir, files, report)
    utts = _drop_inconsistent(tables, report, drop_missing_audio)

    keep = utts - set(report.dropped)
    # Ids only known from dropped lines (e.g. an empty transcript) also count as dropped.
    report.num_kept = len(keep)
    if not keep:
        raise DataDirError(
            f"{data_dir}: no utterance is present in every file; nothing would be left. "
            f"Check that the files use the same ids. Details:\n{report}"
        )
    new = _kept_tables(data_dir, files, tables, keep, report)

    if backup:
        report.backup_dir = _new_backup_dir(data_dir)
        for n in new:
            if (data_dir / n).is_file():
                shutil.copy2(data_dir / n, report.backup_dir / n)
    for n, mapping in new.items():
        write_kaldi_table(data_dir / n, mapping)
        report.rewritten.append(n)
    logger.info("%s", report)
    return report


def _read_tables_to_fix(data_dir: Path, files: List[str],
                        report: FixReport) -> Dict[str, Dict[str, str]]:
    """wav.scp, segments, spk2utt and the utterance-keyed tables present, read leniently;
    utt2spk rebuilt from spk2utt when only that exists."""
    present = [n for n in ("wav.scp", "segments", "spk2utt") if n in files]
    present += [n for n in files if is_utterance_table(n)]
    if "wav.scp" not in present and "segments" not in present and not any(
        n in present for n in UTT_KEYED_TABLES
    ):
        raise DataDirError(f"{data_dir}: no table to fix (no wav.scp, text, utt2spk, ...).")
    tables = {n: _read_lenient(data_dir / n, report, allow_empty=False) for n in present}
    if "spk2utt" in tables and "utt2spk" not in tables:
        # Rebuild utt2spk from spk2utt so both can be written consistently.
        tables["utt2spk"] = {u: s for s, us in tables["spk2utt"].items() for u in us.split()}
    return tables


def _drop_inconsistent(tables: Dict[str, Dict[str, str]], report: FixReport,
                       drop_missing_audio: bool) -> Set[str]:
    """Every utterance any table names; those to drop go into ``report.dropped`` with the
    first reason found."""
    def drop(ids: Iterable[str], reason: str) -> None:
        for u in ids:
            report.dropped.setdefault(u, reason)

    utt_tables = [n for n in tables if is_utterance_table(n)]
    if "segments" in tables:
        segs = tables["segments"]
        utts = set(segs)
        if "wav.scp" in tables:
            drop([u for u, v in segs.items() if v.split()[0] not in tables["wav.scp"]],
                 "its recording is not in wav.scp")
        for u, v in segs.items():
            problem = segment_problem(v)
            if problem is not None:
                drop([u], f"malformed segments line: {problem}")
    elif "wav.scp" in tables:
        utts = set(tables["wav.scp"])
    else:
        utts = set().union(*(set(tables[n]) for n in utt_tables))
    for n in utt_tables:
        utts |= set(tables[n])
    for n in ["segments" if "segments" in tables else "wav.scp", *utt_tables]:
        if n in tables:
            drop(utts - set(tables[n]), f"not in {n}")
    if "utt2spk" in tables:
        drop([u for u, s in tables["utt2spk"].items() if len(s.split()) != 1],
             "utt2spk value is not one speaker id")
    if drop_missing_audio and "wav.scp" in tables:
        missing_recs = {r for r, v in tables["wav.scp"].items()
                        if (f := wav_scp_path(v)) is not None and not os.path.isfile(f)}
        if "segments" in tables:
            drop([u for u, v in tables["segments"].items() if v.split()[0] in missing_recs],
                 "audio file not found")
        else:
            drop(missing_recs, "audio file not found")
    return utts


def _kept_tables(data_dir: Path, files: List[str], tables: Dict[str, Dict[str, str]],
                 keep: Set[str], report: FixReport) -> Dict[str, Dict[str, str]]:
    """The tables to write: each holding the kept utterances (and their recordings and
    speakers), spk2utt regenerated from utt2spk."""
    new: Dict[str, Dict[str, str]] = {}
    for n in tables:
        if is_utterance_table(n):
            new[n] = {u: v for u, v in tables[n].items() if u in keep}
    if "segments" in tables:
        new["segments"] = {u: v for u, v in tables["segments"].items() if u in keep}
        if "wav.scp" in tables:
            used = {v.split()[0] for v in new["segments"].values()}
            new["wav.scp"] = {r: v for r, v in tables["wav.scp"].items() if r in used}
    elif "wav.scp" in tables:
        new["wav.scp"] = {u: v for u, v in tables["wav.scp"].items() if u in keep}
    if "utt2spk" in new:
        spk2utt: Dict[str, List[str]] = {}
        for u in sorted(new["utt2spk"]):
            spk2utt.setdefault(new["utt2spk"][u], []).append(u)
        new["spk2utt"] = {s: " ".join(us) for s, us in spk2utt.items()}
    # Tables keyed by speaker (spk2gender, ...) or recording (reco2dur, ...) keep the kept ones.
    for pattern, kept in ((SPK_KEYED_PATTERN, new.get("spk2utt")),
                          (RECO_KEYED_PATTERN, new.get("wav.scp"))):
        if kept is None:
            continue
        for n in files:
            if pattern.fullmatch(n):
                table = _read_lenient(data_dir / n, report, allow_empty=False)
                new[n] = {k: v for k, v in table.items() if k in kept}
    return new
