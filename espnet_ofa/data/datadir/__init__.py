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


from espnet_ofa.data.datadir.repair import FixReport, fix_data_dir
from espnet_ofa.data.datadir.tables import (
    DataDirError,
    TableLine,
    atomic_write_text,
    data_dir_utterances,
    is_utterance_table,
    read_kaldi_table,
    read_table_lines,
    spk2utt_of,
    wav_scp_path,
    write_data_dir_tables,
    write_kaldi_table,
)
from espnet_ofa.data.datadir.validate import DataDirSummary, validate_data_dir

__all__ = [
    "DataDirError", "DataDirSummary", "FixReport", "TableLine", "atomic_write_text",
    "data_dir_utterances", "fix_data_dir", "is_utterance_table", "read_kaldi_table",
    "read_table_lines", "spk2utt_of", "validate_data_dir", "wav_scp_path",
    "write_data_dir_tables", "write_kaldi_table",
]
