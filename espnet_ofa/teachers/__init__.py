"""Frozen teacher SSL models (HuBERT, wav2vec 2.0, WavLM) behind one interface.

>>> teacher = load_teacher("HUBERT_BASE", layers=(4, 8, 12))  # or a local file
>>> out = teacher(wav, wav_lengths)       # wav (B, N) 16 kHz, wav_lengths (B,)
>>> out.hidden[0].shape                   # (B, T, 768), T = (N - 400) // 320 + 1
>>> out.lengths                           # (B,) valid frames

Sources: torchaudio bundles (:mod:`.bundles`), fairseq / unilm checkpoints
(:mod:`.fairseq_checkpoint`), Hugging Face directories (:mod:`.huggingface`),
torchaudio state dicts (:mod:`.torchaudio_checkpoint`) and ESPnet hubert_train
experiments (:mod:`.espnet_hubert`). Every one becomes a torchaudio ``Wav2Vec2Model``
inside a :class:`Teacher`.
"""

from espnet_ofa.teachers.base import (
    LOCAL_FORMATS_HELP,
    Teacher,
    TeacherLoadError,
    TeacherOutput,
    normalize_waveform,
)
from espnet_ofa.teachers.bundles import KNOWN_BUNDLES, bundle_names
from espnet_ofa.teachers.loader import FORMATS, load_teacher, weights_fingerprint
from espnet_ofa.teachers.torchaudio_checkpoint import FACTORIES, save_torchaudio_checkpoint

__all__ = [
    "FACTORIES",
    "FORMATS",
    "KNOWN_BUNDLES",
    "LOCAL_FORMATS_HELP",
    "Teacher",
    "TeacherLoadError",
    "TeacherOutput",
    "bundle_names",
    "load_teacher",
    "normalize_waveform",
    "save_torchaudio_checkpoint",
    "weights_fingerprint",
]
