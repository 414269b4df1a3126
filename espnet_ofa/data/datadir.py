"""Kaldi/ESPnet data directories: read, write, validate and repair them.

A data directory holds plain-text *tables*, one entry per line, ``<id> <value>``:

- ``wav.scp``: ``<recording-id> <path>`` (or ``<cmd> |`` or ``<file.ark>:<offset>``);
  without ``segments`` the recording ids are the utterance ids.
- ``segments`` (optional): ``<utt-id> <recording-id> <start-s> <end-s>`` (end ``-1`` = to the end).
- ``text``: ``<utt-id> <transcript>``; ``utt2spk``: ``<utt-id> <speaker-id>``;
  ``spk2utt``: ``<speaker-id> <utt-id> <utt-id> ...``.

Kaldi and ESPnet tools merge these tables line by line, so they must be sorted in C-locale
byte order with unique ids. Python's ``str`` ordering (by code point) is the same order as
the bytes of UTF-8 text, so ``sorted()`` on ids gives Kaldi's ``LC_ALL=C sort`` order.

Every problem found by :func:`validate_data_dir` raises :class:`DataDirError` with the file,
the line number and how to fix it; :func:`fix_data_dir` repairs what can be repaired
automatically (order, duplicates, ids missing from some files, ``spk2utt``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from espnet_ofa.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)


# Tables keyed by utterance id (besides wav.scp when there is no segments file). fix_data_dir
# filters all of those that exist, so that e.g. utt2dur does not keep stale entries.
UTT_KEYED_TABLES = (
    "text",
    "utt2spk",
    "utt2dur",
    "utt2num_samples",
    "utt2num_frames",
    "utt2category",
    "utt2lang",
    "feats.scp",
)

# Other tables keyed by utterance, by name: Kaldi's utt2* files (utt2gender, utt2age, ...)
# and every transcript variant (text.lc, text_spk1, text.en, ...).
UTT_KEYED_PATTERN = re.compile(r"utt2.+|text([._].+)?")
# Tables keyed by speaker (spk2utt is rebuilt from utt2spk) and by recording.
SPK_KEYED_PATTERN = re.compile(r"spk2(?!utt$).+")
RECO_KEYED_PATTERN = re.compile(r"reco2.+")

# The only separators of a Kaldi table line (Kaldi splits at ASCII spaces and tabs).
FIELD_SEPARATOR = re.compile(r"[ \t]+")


def is_utterance_table(name: str) -> bool:
    """Whether a data-dir file named ``name`` is keyed by utterance id."""
    return name in UTT_KEYED_TABLES or bool(UTT_KEYED_PATTERN.fullmatch(name))


# How far (s) a segment may end after its recording before it is an error: Kaldi's
# extract-segments default (--max-overshoot=0.5); readers truncate such segments.
SEGMENT_OVERSHOOT_S = 0.5

FIX_HINT = "espnet_ofa.data.fix_data_dir('{dir}') (sorts, drops inconsistent entries)"


class DataDirError(ValueError):
    """A data directory or one of its tables is invalid; the message says where and how to fix."""


@dataclass(frozen=True)
class TableLine:
    """One parsed line of a Kaldi table: 1-based line number, id and the rest of the line."""

    lineno: int
    key: str
    value: str


@dataclass
class DataDirSummary:
    """What :func:`validate_data_dir` found in a valid directory."""

    path: Path
    num_utterances: int
    files: List[str]
    num_speakers: Optional[int] = None
    has_segments: bool = False

    def __str__(self) -> str:
        spk = f", {self.num_speakers} speakers" if self.num_speakers is not None else ""
        return f"{self.path}: {self.num_utterances} utterances{spk}; files: {', '.join(self.files)}"


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


# --------------------------------------------------------------------------- reading / writing


def _iter_table(path: Path) -> Iterable[Tuple[int, str, Optional[str], Optional[str]]]:
    """Yield ``(lineno, raw_line, key, value)``; key/value are None for a blank/malformed line.

    Only ASCII spaces and tabs separate the id from the value, as in Kaldi (the value keeps
    inner whitespace, so transcripts and pipe commands survive; a no-break space stays in
    the id, where `id_problem` reports it). Trailing spaces, tabs and ``\\r`` are stripped.
    """
    with open(path, "rb") as f:
        for lineno, raw_bytes in enumerate(f, start=1):
            # Decoded line by line, so that a bad byte is reported with its line.
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataDirError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw_bytes[err.start]:02x} at "
                    f"column {err.start + 1}). Kaldi/ESPnet tables must be UTF-8: convert the "
                    f"file, e.g. `iconv -f latin1 -t utf-8 {path} > {path}.utf8 && mv "
                    f"{path}.utf8 {path}`, or fix that line."
                ) from None
            line = raw.rstrip("\r\n").rstrip(" \t")
            stripped = line.lstrip(" \t")
            if not stripped:
                yield lineno, line, None, None
                continue
            parts = FIELD_SEPARATOR.split(stripped, 1)
            key = parts[0]
            value = parts[1] if len(parts) > 1 else ""
            yield lineno, line, key, value


def id_problem(key: str) -> Optional[str]:
    """Why ``key`` cannot be a Kaldi id (it holds a space Kaldi does not split at), or None."""
    for char in key:
        if char.isspace() or unicodedata.category(char) in ("Zs", "Cc"):
            code = f"U+{ord(char):04X}"
            name = unicodedata.name(char, "a control character")
            return (f"id {key!r} contains {code} ({name}), which Kaldi and ESPnet do not "
                    "treat as a separator: if it separates the id from the value, replace it "
                    "with an ASCII space, otherwise remove it from the id")
    return None


def segment_problem(value: str) -> Optional[str]:
    """Why a ``segments`` value ``<recording-id> <start-s> <end-s>`` is malformed, or None."""
    fields = value.split()
    if len(fields) != 3:
        return f"{len(fields)} fields after the utterance id instead of 3"
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        return f"start/end '{fields[1]} {fields[2]}' are not numbers of seconds"
    if not (start >= 0 and (end == -1 or end > start)):
        return f"times {fields[1]}-{fields[2]} are not 0 <= start < end (or end -1)"
    return None


def read_table_lines(path: PathLike, allow_empty_values: bool = False) -> List[TableLine]:
    """Parse a Kaldi table strictly, keeping line numbers.

    Raises :class:`DataDirError` for a missing/empty file, a blank line, a line with an id
    but no value (unless ``allow_empty_values``) and a duplicate id. Does not check order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found. Create it (one '<id> <value>' per line).")
    out: List[TableLine] = []
    first_seen: Dict[str, int] = {}
    for lineno, _raw, key, value in _iter_table(path):
        if key is None:
            raise DataDirError(
                f"{path}:{lineno}: blank line (no id). Delete the line: every line must be "
                "'<id> <value>'."
            )
        bad_id = id_problem(key)
        if bad_id is not None:
            raise DataDirError(f"{path}:{lineno}: {bad_id}.")
        if not value and not allow_empty_values:
            if path.name == "text":
                raise DataDirError(
                    f"{path}:{lineno}: empty transcript for utterance '{key}'. Give it a "
                    "transcript or drop the utterance (fix_data_dir drops it from every file)."
                )
            raise DataDirError(
                f"{path}:{lineno}: malformed line '{key}': an id with no value. Every line must "
                "be '<id> <value>'; add the value or delete the line."
            )
        if key in first_seen:
            raise DataDirError(
                f"{path}:{lineno}: duplicate id '{key}' (first on line {first_seen[key]}). "
                "Ids must be unique; delete one of the lines."
            )
        first_seen[key] = lineno
        out.append(TableLine(lineno, key, value))
    if not out:
        raise DataDirError(
            f"{path}: file is empty. Fill it (one '<id> <value>' per line) or remove it "
            "if it is optional."
        )
    return out


def read_kaldi_table(path: PathLike, allow_empty_values: bool = False) -> Dict[str, str]:
    """Read a Kaldi table as ``{id: rest of the line}``, in file order.

    Strict: a blank or malformed line, a duplicate id or an empty file raise
    :class:`DataDirError` naming the file and line (see :func:`read_table_lines`).
    """
    return {x.key: x.value for x in read_table_lines(path, allow_empty_values)}


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and ``os.replace``.

    A reader (or a killed writer) never sees a half-written file: the rename is atomic on
    POSIX file systems when source and target share a directory. The file gets the usual
    permissions (0666 minus the umask), see `espnet_ofa.fileio`.
    """
    atomic_write(path, text)


def write_kaldi_table(path: PathLike, mapping: Mapping[str, str]) -> None:
    """Write ``{id: value}`` as ``<id> <value>`` lines sorted by id (C-locale), atomically.

    Raises ``ValueError`` for an id that is empty or contains whitespace, since it could not
    be read back as one id.
    """
    lines = []
    for key in sorted(mapping):
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"cannot write id {key!r} to {path}: ids must be non-empty, no spaces")
        value = str(mapping[key])
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    atomic_write_text(path, "".join(lines))


def spk2utt_of(utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """Kaldi's ``spk2utt``, the inverse of ``utt2spk``: ``{speaker: "utt1 utt2 ..."}``."""
    out: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in out.items()}


def write_data_dir_tables(out_dir: PathLike, tables: Mapping[str, Mapping[str, str]]) -> Path:
    """Write each ``{name: {id: value}}`` table of a data dir (sorted, atomically) and, from
    ``tables["utt2spk"]``, its ``spk2utt``."""
    out = Path(out_dir)
    for name, mapping in tables.items():
        write_kaldi_table(out / name, mapping)
    if "utt2spk" in tables:
        write_kaldi_table(out / "spk2utt", spk2utt_of(tables["utt2spk"]))
    return out


# --------------------------------------------------------------------------- wav.scp values


def wav_scp_path(value: str) -> Optional[str]:
    """The file a wav.scp value reads, or None for a pipe command (``... |``).

    ``file.ark:1234`` (an offset into a Kaldi archive) gives ``file.ark``.
    """
    value = value.strip()
    if value.endswith("|"):
        return None
    head, sep, tail = value.rpartition(":")
    if sep and tail.isdigit() and head:
        return head
    return value


# --------------------------------------------------------------------------- validation


def _check_sorted(path: Path, lines: Sequence[TableLine], data_dir: Path) -> None:
    for prev, cur in zip(lines, lines[1:]):
        if cur.key < prev.key:
            raise DataDirError(
                f"{path}:{cur.lineno}: ids are not sorted: '{cur.key}' comes after "
                f"'{prev.key}' (line {prev.lineno}). Kaldi needs C-locale order: run "
                f"`LC_ALL=C sort -o {path} {path}` or " + FIX_HINT.format(dir=data_dir)
            )


def _check_same_ids(
    path: Path, lines: Sequence[TableLine], ref_name: str, ref_ids: Sequence[str], data_dir: Path
) -> None:
    ref = set(ref_ids)
    for x in lines:
        if x.key not in ref:
            raise DataDirError(
                f"{path}:{x.lineno}: id '{x.key}' is not in {ref_name}. Every file must list "
                f"the same utterances; add it to {ref_name} or run " + FIX_HINT.format(dir=data_dir)
            )
    if len(lines) != len(ref):
        mine = {x.key for x in lines}
        missing = sorted(ref - mine)
        raise DataDirError(
            f"{path}: {len(missing)} id(s) of {ref_name} are missing here, e.g. "
            f"'{missing[0]}'. Add them or run " + FIX_HINT.format(dir=data_dir)
        )


def validate_data_dir(
    path: PathLike,
    required: Sequence[str] = ("wav.scp",),
    optional: Sequence[str] = ("text", "utt2spk", "spk2utt", "segments"),
    sample_rate: Optional[int] = None,
    check_audio_paths: bool = True,
) -> DataDirSummary:
    """Check a data directory; raise :class:`DataDirError` at the first problem.

    Checks, for every file of ``required`` (must exist) and ``optional`` (if present): not
    empty, no blank or malformed lines, unique ids, ids sorted in C-locale order; utterance
    ids of ``text``/``utt2spk``/... equal wav.scp's (or segments' when there is a
    ``segments`` file, whose recording ids must then be in wav.scp); ``spk2utt`` is the
    inverse of ``utt2spk``; no empty transcript in ``text``; every wav path exists
    (relative paths are taken from the current directory, like Kaldi/ESPnet recipes, which
    run from the recipe root). With ``sample_rate``, every plain audio file's header must
    say that rate (pipes and archives are not opened).

    Returns a :class:`DataDirSummary`.
    """
    data_dir = Path(path)
    if not data_dir.is_dir():
        raise DataDirError(
            f"{data_dir}: data directory not found. Create it with at least "
            f"{', '.join(required)} (e.g. by the recipe's data preparation stage)."
        )
    for name in required:
        if not (data_dir / name).is_file():
            raise DataDirError(
                f"{data_dir / name}: required file not found. Create it "
                "(one '<id> <value>' per line, sorted)."
            )
    names = list(dict.fromkeys([*required, *[n for n in optional if (data_dir / n).is_file()]]))

    tables: Dict[str, List[TableLine]] = {}
    for name in names:
        # spk2utt lines hold several utterances in their value; text may not be empty (the
        # strict reader reports empty transcripts itself).
        lines = read_table_lines(data_dir / name)
        _check_sorted(data_dir / name, lines, data_dir)
        tables[name] = lines

    # Which table defines the utterance ids?
    has_segments = "segments" in tables
    wav_ids = [x.key for x in tables["wav.scp"]] if "wav.scp" in tables else None
    wav_id_set = set(wav_ids or ())
    if has_segments:
        seg_path = data_dir / "segments"
        for x in tables["segments"]:
            fields = x.value.split()
            problem = segment_problem(x.value)
            if problem is not None:
                raise DataDirError(
                    f"{seg_path}:{x.lineno}: malformed segment '{x.key} {x.value}' ({problem}). "
                    "Expected '<utt-id> <recording-id> <start-seconds> <end-seconds>' with "
                    "0 <= start < end (end -1 means to the end of the recording), or run "
                    + FIX_HINT.format(dir=data_dir)
                )
            if wav_ids is not None and fields[0] not in wav_id_set:
                raise DataDirError(
                    f"{seg_path}:{x.lineno}: recording '{fields[0]}' of segment '{x.key}' is "
                    "not in wav.scp. Add the recording to wav.scp or run "
                    + FIX_HINT.format(dir=data_dir)
                )
        utt_ids = [x.key for x in tables["segments"]]
        ref_name = "segments"
    else:
        utt_ids = wav_ids if wav_ids is not None else None
        ref_name = "wav.scp"

    for name, lines in tables.items():
        # Only utterance-keyed tables must list exactly the utterances (spk2utt is keyed by
        # speaker; other files a caller names, e.g. reco2dur, are only checked line by line).
        if utt_ids is None or not is_utterance_table(name):
            continue
        _check_same_ids(data_dir / name, lines, ref_name, utt_ids, data_dir)

    num_speakers = None
    if "utt2spk" in tables:
        u2s = {x.key: x.value for x in tables["utt2spk"]}
        for x in tables["utt2spk"]:
            if len(x.value.split()) != 1:
                raise DataDirError(
                    f"{data_dir / 'utt2spk'}:{x.lineno}: expected '<utt-id> <speaker-id>', got "
                    f"'{x.key} {x.value}' (a speaker id has no spaces)."
                )
        num_speakers = len(set(u2s.values()))
        if "spk2utt" in tables:
            s2u_path = data_dir / "spk2utt"
            seen = set()
            for x in tables["spk2utt"]:
                for utt in x.value.split():
                    if u2s.get(utt) != x.key or utt in seen:
                        raise DataDirError(
                            f"{s2u_path}:{x.lineno}: utterance '{utt}' of speaker '{x.key}' "
                            "does not match utt2spk. Regenerate spk2utt from utt2spk with "
                            + FIX_HINT.format(dir=data_dir)
                        )
                    seen.add(utt)
            if len(seen) != len(u2s):
                missing = sorted(set(u2s) - seen)[0]
                raise DataDirError(
                    f"{s2u_path}: utterance '{missing}' of utt2spk is missing. Regenerate "
                    "spk2utt from utt2spk with " + FIX_HINT.format(dir=data_dir)
                )

    if "wav.scp" in tables and (check_audio_paths or sample_rate is not None):
        _check_wavs(data_dir, tables["wav.scp"], check_audio_paths, sample_rate)
        if has_segments and check_audio_paths:
            _check_segment_ends(data_dir, tables["segments"], tables["wav.scp"])

    if utt_ids is None:
        # No wav.scp asked for: count the utterances of the first utterance-keyed table.
        first = next((n for n in names if n not in ("spk2utt", "wav.scp")), names[0])
        utt_ids = [x.key for x in tables[first]]
    return DataDirSummary(
        path=data_dir,
        num_utterances=len(utt_ids),
        files=names,
        num_speakers=num_speakers,
        has_segments=has_segments,
    )


def _check_wavs(
    data_dir: Path, lines: Sequence[TableLine], check_paths: bool, sample_rate: Optional[int]
) -> None:
    wav_scp = data_dir / "wav.scp"
    for x in lines:
        file = wav_scp_path(x.value)
        if file is None:
            continue  # a pipe: only running it would tell.
        if check_paths and not os.path.isfile(file):
            raise DataDirError(
                f"{wav_scp}:{x.lineno}: audio file '{file}' of '{x.key}' does not exist "
                f"(relative paths are read from the current directory, {os.getcwd()}). "
                "Fix the path, run from the directory the paths are relative to, or drop the "
                "utterance."
            )
        if sample_rate is not None and file == x.value.strip():
            import soundfile  # lazy: reading tables needs no audio library

            try:
                rate = soundfile.info(file).samplerate
            except Exception as e:  # soundfile raises RuntimeError/LibsndfileError
                raise DataDirError(
                    f"{wav_scp}:{x.lineno}: cannot read audio '{file}' of '{x.key}': {e}. "
                    "Convert it to wav/flac or fix the path."
                ) from e
            if rate != sample_rate:
                raise DataDirError(
                    f"{wav_scp}:{x.lineno}: '{file}' is {rate} Hz but {sample_rate} Hz is "
                    f"expected. Resample it, e.g. `sox in.wav -r {sample_rate} out.wav`, or "
                    f"write a pipe in wav.scp: '{x.key} sox {file} -r {sample_rate} -t wav - |'."
                )


def _check_segment_ends(data_dir: Path, segments: Sequence[TableLine],
                        recordings: Sequence[TableLine]) -> None:
    """Every segment must start inside its recording and end at most
    `SEGMENT_OVERSHOOT_S` after it (plain audio files only: a pipe would have to run)."""
    import soundfile  # lazy: reading tables needs no audio library

    files = {x.key: x.value.strip() for x in recordings if wav_scp_path(x.value) == x.value.strip()}
    durations: Dict[str, float] = {}
    for x in segments:
        rec, start, end = x.value.split()
        file = files.get(rec)
        if file is None:
            continue
        if rec not in durations:
            try:
                durations[rec] = float(soundfile.info(file).duration)
            except Exception as e:  # soundfile raises RuntimeError/LibsndfileError
                raise DataDirError(
                    f"{data_dir / 'wav.scp'}: cannot read audio '{file}' of recording '{rec}' "
                    f"(used by {data_dir / 'segments'}:{x.lineno}): {e}. Convert it to "
                    "wav/flac or fix the path."
                ) from e
        duration, start_s, end_s = durations[rec], float(start), float(end)
        if start_s >= duration or (end_s != -1 and end_s > duration + SEGMENT_OVERSHOOT_S):
            raise DataDirError(
                f"{data_dir / 'segments'}:{x.lineno}: segment '{x.key}' ({start_s:g}-{end_s:g} s) "
                f"runs past the end of recording '{rec}' ({file}, {duration:.3f} s long). "
                "Fix its times (end -1 means to the end of the recording) or drop the segment."
            )


# --------------------------------------------------------------------------- repair


def _read_lenient(path: Path, report: FixReport, allow_empty: bool) -> Dict[str, str]:
    """Read a table, dropping (and reporting) blank, malformed and duplicate lines."""
    out: Dict[str, str] = {}
    first: Dict[str, int] = {}
    for lineno, _raw, key, value in _iter_table(path):
        where = f"{path.name}:{lineno}"
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
    present = [n for n in ("wav.scp", "segments", "spk2utt") if n in files]
    present += [n for n in files if is_utterance_table(n)]
    if "wav.scp" not in present and "segments" not in present and not any(
        n in present for n in UTT_KEYED_TABLES
    ):
        raise DataDirError(f"{data_dir}: no table to fix (no wav.scp, text, utt2spk, ...).")
    tables = {n: _read_lenient(data_dir / n, report, allow_empty=False) for n in present}

    if "spk2utt" in tables and "utt2spk" not in tables:
        # Rebuild utt2spk from spk2utt so both can be written consistently below.
        tables["utt2spk"] = {u: s for s, us in tables["spk2utt"].items() for u in us.split()}
        present.append("utt2spk")

    # Candidate utterances and why each is dropped (first reason found wins).
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

    keep = utts - set(report.dropped)
    # Ids only known from dropped lines (e.g. an empty transcript) also count as dropped.
    report.num_kept = len(keep)
    if not keep:
        raise DataDirError(
            f"{data_dir}: no utterance is present in every file; nothing would be left. "
            f"Check that the files use the same ids. Details:\n{report}"
        )

    new: Dict[str, Dict[str, str]] = {}
    for n in utt_tables:
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
