"""Kaldi/ESPnet data directories and audio loading, shared by the recipes and tools."""

from espnet_ofa.data.audio import (
    DEFAULT_MIN_SAMPLES,
    check_waveform,
    check_waveform_batch,
    load_audio,
    num_frames,
)
from espnet_ofa.data.datadir import (
    DataDirError,
    DataDirSummary,
    FixReport,
    TableLine,
    atomic_write_text,
    fix_data_dir,
    read_kaldi_table,
    read_table_lines,
    validate_data_dir,
    wav_scp_path,
    write_kaldi_table,
)

__all__ = [
    "DEFAULT_MIN_SAMPLES",
    "DataDirError",
    "DataDirSummary",
    "FixReport",
    "TableLine",
    "atomic_write_text",
    "check_waveform",
    "check_waveform_batch",
    "fix_data_dir",
    "load_audio",
    "num_frames",
    "read_kaldi_table",
    "read_table_lines",
    "validate_data_dir",
    "wav_scp_path",
    "write_kaldi_table",
]
