"""Kaldi/ESPnet data directories, audio loading and waveform checks, shared by all layers.

Names are imported on first use, so that a light submodule (``espnet_ofa.data.waveform``,
which the models use) does not pull in the data-directory or audio-file code.
"""

from __future__ import annotations

from espnet_ofa.lazy_exports import lazy_exports

_EXPORTS = {
    "DEFAULT_MIN_SAMPLES": "espnet_ofa.data.waveform",
    "as_float32": "espnet_ofa.data.waveform",
    "check_waveform": "espnet_ofa.data.waveform",
    "check_waveform_batch": "espnet_ofa.data.waveform",
    "audio_file_info": "espnet_ofa.data.audio",
    "load_audio": "espnet_ofa.data.audio",
    "num_frames": "espnet_ofa.data.audio",
    "read_audio": "espnet_ofa.data.audio",
    "DataDirError": "espnet_ofa.data.datadir",
    "DataDirSummary": "espnet_ofa.data.datadir",
    "FixReport": "espnet_ofa.data.datadir",
    "TableLine": "espnet_ofa.data.datadir",
    "atomic_write_text": "espnet_ofa.data.datadir",
    "fix_data_dir": "espnet_ofa.data.datadir",
    "read_kaldi_table": "espnet_ofa.data.datadir",
    "read_table_lines": "espnet_ofa.data.datadir",
    "validate_data_dir": "espnet_ofa.data.datadir",
    "wav_scp_path": "espnet_ofa.data.datadir",
    "write_kaldi_table": "espnet_ofa.data.datadir",
    "write_data_dir_tables": "espnet_ofa.data.datadir",
    "spk2utt_of": "espnet_ofa.data.datadir",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
