"""The tables of a data directory: their names, reading (strictly, with the file and line of
any problem), writing (sorted, atomically) and the values of ``wav.scp`` and ``segments``."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from espnet_ofa.fileio import PathLike, atomic_write


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


# What some editors write at the start of a UTF-8 file; not part of the first id.
BYTE_ORDER_MARK = "\ufeff"


def id_problem(key: str) -> Optional[str]:
    """Why ``key`` cannot be a Kaldi id (it holds a space Kaldi does not split at), or None."""
    for char in key:
        # Cf: invisible format characters (a byte-order mark, a zero-width space), which
        # make two ids that print alike differ.
        if char.isspace() or unicodedata.category(char) in ("Zs", "Cc", "Cf"):
            code = f"U+{ord(char):04X}"
            name = unicodedata.name(char, "a control character")
            if char == BYTE_ORDER_MARK and key.startswith(char):
                return (f"id {key!r} starts with {code} (a byte-order mark), which Kaldi and "
                        "ESPnet read as part of the id: save the file as UTF-8 without a BOM "
                        "(fix_data_dir removes it)")
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


def data_dir_utterances(data_dir: PathLike) -> List[Tuple[str, str, Optional[Tuple[float, float]]]]:
    """``[(utt, wav.scp value, (start_s, end_s) or None)]`` of a data dir, sorted: with a
    ``segments`` file, each segment and its recording's value (not validated here)."""
    data_dir = Path(data_dir)
    wavs = read_kaldi_table(data_dir / "wav.scp")
    if (data_dir / "segments").is_file():
        items = []
        for utt, value in read_kaldi_table(data_dir / "segments").items():
            rec, start, end = value.split()
            items.append((utt, wavs[rec], (float(start), float(end))))
        return sorted(items)
    return sorted((utt, value, None) for utt, value in wavs.items())


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

