"""Dynamic-programming segmentation: piecewise-constant fit of a feature sequence.

Cost of a segment = its within-segment squared error (sum of squared distances of its frames
to the segment mean). With cumulative sums S1 (of x) and S2 (of ||x||^2), the cost of frames
[i, j) is ``S2[j] - S2[i] - ||S1[j] - S1[i]||^2 / (j - i)``, so every segment's cost is O(1)
given the Gram matrix of S1, which one BLAS call gives per chunk of end points. The DP is
O(T^2) (penalty) or O(K T^2) (fixed count) with the inner minimisation vectorised in numpy,
fine for utterances up to a few thousand frames (2000 frames = 40 s at 20 ms).
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

from espnet_ofa.segmentation.boundaries import lengths_to_boundaries

# End points processed per Gram-matrix block: bounds memory to (T+1) x CHUNK float64.
_CHUNK = 256


def _cost_columns(x: np.ndarray, min_duration: int) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(j, cost)`` for j = 1..T where ``cost[i]`` is the cost of frames [i, j).

    ``cost`` has length ``j - min_duration + 1`` (start points i allowed for end j), or the
    column is skipped when j < min_duration.
    """
    t = x.shape[0]
    # Centering leaves every segment's squared error unchanged and keeps the cumulative
    # sums small, which limits the cancellation in S2 - ||S1||^2 / n.
    x = x - x.mean(axis=0, keepdims=True)
    s1 = np.zeros((t + 1, x.shape[1]), dtype=np.float64)
    np.cumsum(x, axis=0, out=s1[1:])
    s2 = np.concatenate([[0.0], np.cumsum(np.einsum("td,td->t", x, x))])
    n1 = np.einsum("td,td->t", s1, s1)
    for j0 in range(min_duration, t + 1, _CHUNK):
        j1 = min(j0 + _CHUNK, t + 1)
        gram = s1[: j1 - min_duration + 1] @ s1[j0:j1].T  # (i, j) dot products
        for col, j in enumerate(range(j0, j1)):
            m = j - min_duration + 1  # start points 0..j-min_duration
            i = np.arange(m)
            sq = n1[j] + n1[:m] - 2.0 * gram[:m, col]
            cost = (s2[j] - s2[:m]) - sq / (j - i)
            # Rounding can make a near-zero error slightly negative; it is a squared error.
            yield j, np.maximum(cost, 0.0)


def dp_smooth(
    features: np.ndarray,
    n_segments: Optional[int] = None,
    penalty: Optional[float] = None,
    min_duration: int = 1,
) -> np.ndarray:
    """Optimal segmentation of (T, D) features into piecewise-constant segments.

    Exactly one of:
        n_segments: K; minimise the total within-segment squared error over all ways to
            cut the T frames into exactly K segments.
        penalty: minimise squared error + ``penalty`` * (number of segments); larger
            penalties give fewer, longer segments. The error scales with D and the feature
            variance, so choose it for the features (e.g. ~D for unit-variance features).

    Args:
        features: (T, D) array (T >= 1); a (T,) array is read as D = 1.
        min_duration: every segment has at least this many frames.

    Returns:
        (K,) int64 boundaries (exclusive segment ends, last == T; see
        :mod:`espnet_ofa.segmentation.boundaries`).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (T, D) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or Inf")
    if (n_segments is None) == (penalty is None):
        raise ValueError("give exactly one of n_segments and penalty")
    t = x.shape[0]
    min_duration = max(int(min_duration), 1)
    if min_duration > t:
        # Too short to cut at all: the whole utterance is one segment.
        return np.array([t], dtype=np.int64)

    if penalty is not None:
        return _dp_penalty(x, float(penalty), min_duration)

    k = int(n_segments)
    if k < 1 or k * min_duration > t:
        raise ValueError(
            f"cannot cut {t} frames into {k} segments of at least {min_duration} frames"
        )
    return _dp_count(x, k, min_duration)


def _dp_penalty(x: np.ndarray, penalty: float, min_duration: int) -> np.ndarray:
    t = x.shape[0]
    best = np.full(t + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(t + 1, dtype=np.int64)  # best start of the last segment ending at j
    for j, cost in _cost_columns(x, min_duration):
        total = best[: cost.size] + cost
        i = int(np.argmin(total))
        best[j] = total[i] + penalty
        start[j] = i
    return _backtrack_single(start, t)


def _backtrack_single(start: np.ndarray, t: int) -> np.ndarray:
    lengths = []
    j = t
    while j > 0:
        i = int(start[j])
        lengths.append(j - i)
        j = i
    return lengths_to_boundaries(lengths[::-1])


def _dp_count(x: np.ndarray, k: int, min_duration: int) -> np.ndarray:
    t = x.shape[0]
    # best[m, j]: least error of frames [0, j) cut into m segments (row 0: only j = 0).
    best = np.full((k + 1, t + 1), np.inf)
    best[0, 0] = 0.0
    start = np.zeros((k + 1, t + 1), dtype=np.int32)
    for j, cost in _cost_columns(x, min_duration):
        # All segment counts at once: (k, i) candidates for "m-th segment is [i, j)".
        total = best[:k, : cost.size] + cost[None, :]
        i = np.argmin(total, axis=1)
        best[1:, j] = total[np.arange(k), i]
        start[1:, j] = i
    if not np.isfinite(best[k, t]):
        raise ValueError(f"no segmentation of {t} frames into {k} segments exists")
    lengths = []
    j = t
    for m in range(k, 0, -1):
        i = int(start[m, j])
        lengths.append(j - i)
        j = i
    return lengths_to_boundaries(lengths[::-1])
