"""K-means units over frame features (scikit-learn), and nearest-centroid assignment."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from espnet_ofa.fileio import atomic_write


def fit_kmeans(
    features: Sequence[np.ndarray],
    n_clusters: int,
    seed: int = 0,
    batch_size: int = 10000,
    max_iter: int = 100,
    n_init: int = 3,
) -> np.ndarray:
    """Fit k-means on the frames of several utterances; return the centroids.

    Uses scikit-learn's ``MiniBatchKMeans`` (k-means++ initialisation), deterministic for a
    given ``seed`` and input.

    Args:
        features: list of (T_i, D) arrays, one per utterance (all with the same D).
        n_clusters: number of units.
        seed: random state of the initialisation and the mini-batches.
        batch_size, max_iter, n_init: passed to ``MiniBatchKMeans``.

    Returns:
        (n_clusters, D) float32 centroids.
    """
    from sklearn.cluster import MiniBatchKMeans

    feats = [np.asarray(f, dtype=np.float32) for f in features if len(f)]
    if not feats:
        raise ValueError("no frames to fit k-means on")
    dims = {f.shape[1] if f.ndim == 2 else None for f in feats}
    if len(dims) != 1 or None in dims:
        raise ValueError(f"features must all be (T, D) with one D, got dims {sorted(map(str, dims))}")
    x = np.concatenate(feats, axis=0)
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or Inf")
    if x.shape[0] < n_clusters:
        raise ValueError(
            f"only {x.shape[0]} frames for {n_clusters} clusters; use more utterances "
            "(--max_utts_for_kmeans) or fewer clusters (--n_clusters)"
        )
    km = MiniBatchKMeans(
        n_clusters=n_clusters,
        random_state=seed,
        batch_size=batch_size,
        max_iter=max_iter,
        n_init=n_init,
    )
    km.fit(x)
    return km.cluster_centers_.astype(np.float32)


def assign_units(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(T,) int64 index of the nearest centroid (squared Euclidean) for each of (T, D) frames."""
    x = np.asarray(features, dtype=np.float32)
    c = np.asarray(centroids, dtype=np.float32)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(
            f"features (T, D) and centroids (K, D) must share D; got {x.shape} and {c.shape}. "
            "Were the clusters fitted on another feature type or layer?"
        )
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the argmin.
    dist = (c * c).sum(axis=1)[None, :] - 2.0 * (x @ c.T)
    return np.argmin(dist, axis=1).astype(np.int64)


def centroids_digest(centroids: np.ndarray) -> str:
    """A short content hash of the centroids, to tell whether two runs used the same units."""
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    return hashlib.sha1(c.tobytes() + str(c.shape).encode()).hexdigest()[:16]


def save_centroids(path: Union[str, os.PathLike], centroids: np.ndarray) -> None:
    """Save (K, D) centroids as a ``.npy`` file atomically, with the usual file mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(centroids, dtype=np.float32))
    atomic_write(path, buffer.getvalue())


def load_centroids(path: Union[str, os.PathLike]) -> np.ndarray:
    """Load (K, D) float32 centroids saved by :func:`save_centroids` (or any 2-D .npy)."""
    c = np.load(path, allow_pickle=False)
    if c.ndim != 2:
        raise ValueError(f"{path}: expected a (n_clusters, dim) array, got shape {c.shape}")
    return c.astype(np.float32, copy=False)
