"""K-means unit labels for training a HuBERT teacher with ESPnet's ``hubert_train``.

``hubert_train`` reads frame labels as a text file (``utt u1 u2 ... uT``, one unit per
20 ms frame, ``T = (N - 400) // 320 + 1``) through the token list, with ``--token_type
word``. The units here are k-means clusters of 39-d MFCCs on exactly that frame grid
(:func:`espnet_ofa.segmentation.features.mfcc_features`), HuBERT's first iteration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.data.audio import load_audio, num_frames
from espnet_ofa.data.datadir import atomic_write_text, read_kaldi_table, validate_data_dir
from espnet_ofa.fileio import PathLike
from espnet_ofa.recipe.tokens import unit_token_list
from espnet_ofa.segmentation.features import mfcc_features
from espnet_ofa.segmentation.kmeans import assign_units, fit_kmeans, load_centroids, save_centroids

logger = logging.getLogger(__name__)


def kmeans_labels(
    data_dir: PathLike, out: PathLike, n_clusters: int = 50, kmeans: Optional[PathLike] = None,
    max_utts: int = 1000, seed: int = 0, token_list: Optional[PathLike] = None,
) -> Path:
    """Write ``out`` = ``utt u1 ... uT`` for every utterance of ``data_dir`` (16 kHz).

    Args:
        kmeans: centroids (.npy) to use; None = fit them on up to ``max_utts`` utterances
            and save them as ``<out>.kmeans.npy`` (pass that for the validation set).
        token_list: also write the units' token list there.
    Returns the path of the centroids used.
    """
    data_dir, out = Path(data_dir), Path(out)
    validate_data_dir(data_dir, required=("wav.scp",), optional=())
    wavs = read_kaldi_table(data_dir / "wav.scp")
    feats = {}
    for utt, value in wavs.items():
        wav, _ = load_audio(value, SAMPLE_RATE)
        if num_frames(wav.numel()) == 0:
            raise ValueError(f"{data_dir / 'wav.scp'}: '{utt}' is shorter than one 25 ms frame")
        feats[utt] = mfcc_features(wav)
    if kmeans is None:
        rng = np.random.default_rng(seed)
        keys = sorted(feats)
        chosen = sorted(rng.choice(len(keys), size=min(max_utts, len(keys)), replace=False))
        centroids = fit_kmeans([feats[keys[i]] for i in chosen], n_clusters, seed=seed)
        km_path = out.with_name(out.name + ".kmeans.npy")
        save_centroids(km_path, centroids)
    else:
        km_path = Path(kmeans)
        centroids = load_centroids(km_path)
    lines = []
    for utt in sorted(feats):
        units = assign_units(feats[utt], centroids)
        lines.append(f"{utt} {' '.join(map(str, units.tolist()))}\n")
    atomic_write_text(out, "".join(lines))
    if token_list is not None:
        atomic_write_text(token_list, "".join(t + "\n" for t in unit_token_list(len(centroids))))
    print(f"progress: {out}: {len(lines)} utterances labelled with {len(centroids)} units",
          flush=True)
    return km_path
