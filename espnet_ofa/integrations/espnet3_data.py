"""ESPnet data directories as espnet3 datasets, and the FSDD builder of ``egs3/fsdd/asr1``.

espnet3 recipes read their data through a ``dataset`` module holding a ``Dataset`` class
(one split per instance, items ``{"speech", "text"}``) and a ``DatasetBuilder`` (the
``create_dataset`` stage). This module supplies both from the pieces the ESPnet2 recipes
already use, so the two systems train on the same utterances:

* `DataDirDataset` reads any ESPnet/Kaldi data directory (``wav.scp`` + ``text``),
  checked with `espnet_ofa.data.validate_data_dir` and resampled on load to the model's
  rate (FSDD is 8 kHz; the OFA model wants 16 kHz).
* `FsddBuilder` writes the FSDD connected-digit sets with
  `espnet_ofa.recipe.prepare.prepare_fsdd`, exactly as ``egs2/fsdd/asr1`` stage 1 does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import numpy as np

from espnet3.components.data.base_dataset import BaseDataset
from espnet3.contract import Field

from espnet_ofa.data.audio import load_audio
from espnet_ofa.data.datadir import read_kaldi_table, validate_data_dir
from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.fileio import PathLike

#: The FSDD splits ``FsddBuilder`` writes (``test_theo``: a speaker never heard in training).
FSDD_SPLITS = ("train", "dev", "test", "test_theo")


class DataDirDataset(BaseDataset):
    """One ESPnet data directory as an espnet3 dataset.

    Args:
        data_dir: the directory holding ``wav.scp`` and ``text`` (validated on
            construction: a malformed directory raises ``DataDirError`` naming the file
            and line).
        fs: the rate, in Hz, every waveform is resampled to on load.
        with_utt_id: also put the utterance id in each item (``"utt_id"``), which
            espnet3's inference and scoring write as the first column of their ``.scp``
            files; training collates every key, so leave it off there.

    Items are ``{"speech": (N,) float32 array at fs, "text": str}``, in ``wav.scp``
    order; `utt_ids` gives the matching ids.
    """

    fields = (Field("speech", "audio"), Field("text", "text"))

    def __init__(self, data_dir: PathLike, fs: int = SAMPLE_RATE, with_utt_id: bool = False) -> None:
        self.data_dir = Path(data_dir)
        validate_data_dir(self.data_dir, required=("wav.scp", "text"))
        wavs = read_kaldi_table(self.data_dir / "wav.scp")
        texts = read_kaldi_table(self.data_dir / "text")
        self.utt_ids = list(wavs)
        self._wavs = [wavs[u] for u in self.utt_ids]
        self._texts = [texts[u] for u in self.utt_ids]
        self.fs = int(fs)
        self.with_utt_id = bool(with_utt_id)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        index = int(index)
        wav, _ = load_audio(self._wavs[index], target_sr=self.fs)
        item = {"speech": wav.numpy().astype(np.float32, copy=False), "text": self._texts[index]}
        if self.with_utt_id:
            item["utt_id"] = self.utt_ids[index]
        return item


class FsddBuilder:
    """The ``create_dataset`` stage of ``egs3/fsdd/asr1``: FSDD connected-digit sets.

    espnet3 calls each method with the recipe's ``create_dataset`` config block as keyword
    arguments: ``dataset_dir`` (where the data directories go), ``fsdd`` (the folder
    holding ``recordings/``; downloaded there when missing) and the options of
    `espnet_ofa.recipe.prepare.PrepareConfig` (``train_takes``, ``test_takes``, ... for a
    smaller run). Unknown keys (``recipe_dir``) are ignored.
    """

    def is_source_prepared(self, fsdd: PathLike, **_: Any) -> bool:
        from espnet_ofa.recipe.fsdd import has_fsdd

        return has_fsdd(fsdd)

    def prepare_source(self, fsdd: PathLike, **_: Any) -> None:
        from espnet_ofa.recipe.fsdd import ensure_fsdd

        ensure_fsdd(fsdd)

    def is_built(self, dataset_dir: PathLike, **_: Any) -> bool:
        return all((Path(dataset_dir) / s / "text").is_file() for s in FSDD_SPLITS)

    def build(self, dataset_dir: PathLike, fsdd: PathLike, **options: Any) -> None:
        from espnet_ofa.recipe.prepare import PrepareConfig, prepare_fsdd

        options.pop("recipe_dir", None)
        prepare_fsdd(PrepareConfig(task="asr", fsdd=os.fspath(fsdd),
                                   data_dir=os.fspath(Path(dataset_dir).resolve()),
                                   train_single_takes=True, download=False, **options))


class FsddDataset(DataDirDataset):
    """One FSDD split written by `FsddBuilder` (``split``: one of `FSDD_SPLITS`)."""

    def __init__(self, split: str, dataset_dir: PathLike, fs: int = SAMPLE_RATE,
                 with_utt_id: bool = False) -> None:
        if split not in FSDD_SPLITS:
            raise ValueError(f"FSDD split must be one of {', '.join(FSDD_SPLITS)}; got "
                             f"{split!r}")
        path = Path(dataset_dir) / split
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path}: FSDD split not prepared; run the create_dataset stage first "
                "(python run.py --stages create_dataset)")
        super().__init__(path, fs=fs, with_utt_id=with_utt_id)


def text_lines(dataset_dir: PathLike, split: str = "train") -> list[str]:
    """The transcripts of one split, for the tokenizer stage (``text_builder.func``)."""
    return list(read_kaldi_table(Path(dataset_dir) / split / "text").values())


__all__ = ["DataDirDataset", "FSDD_SPLITS", "FsddBuilder", "FsddDataset", "text_lines"]

