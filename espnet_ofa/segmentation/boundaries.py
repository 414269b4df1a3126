"""Segment boundaries: the convention and conversions.

Convention (used everywhere in this package and in the boundary files):
    An utterance of T frames is cut into K contiguous segments. Its boundaries are the
    **exclusive end frame index of each segment**: a strictly increasing (K,) integer array
    ``b`` with ``b[0] >= 1`` and ``b[-1] == T``. Segment k covers frames ``b[k-1]:b[k]``
    (with ``b[-1]`` read as 0 for k = 0), so ``len(b)`` is the number of segments, and
    ``np.diff(b, prepend=0)`` their lengths. An empty utterance (T = 0) has no boundaries.

    Example: frames ``a a b c c c`` -> boundaries ``[2, 3, 6]``.

This is exactly what CIF needs: with beta = 1, an output frame fires when cumsum(alpha)
crosses an integer, so the k-th output should fire at the end of the k-th segment, i.e.
``cumsum(alpha)[b[k] - 1] == k + 1`` (the targets of
:func:`espnet_ofa.models.distill_loss.pseudo_alpha`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def check_boundaries(boundaries: np.ndarray, num_frames: Optional[int] = None) -> np.ndarray:
    """Validate boundaries (see the module's convention) and return them as an int64 array.

    Raises ``ValueError`` if they are not 1-D integers, not strictly increasing, start below
    1, or (given ``num_frames``) do not end exactly at ``num_frames``.
    """
    b = np.asarray(boundaries)
    if b.ndim != 1:
        raise ValueError(f"boundaries must be a 1-D array, got shape {b.shape}")
    if b.size and not np.issubdtype(b.dtype, np.integer):
        if not np.all(np.equal(np.mod(b, 1), 0)):
            raise ValueError(f"boundaries must be integer frame indices, got {b[:5]}...")
    b = b.astype(np.int64)
    if num_frames is not None and num_frames == 0:
        if b.size:
            raise ValueError("an utterance of 0 frames has no boundaries")
        return b
    if b.size == 0:
        raise ValueError(
            f"boundaries are empty but the utterance has {num_frames} frames; the last "
            "boundary must be the number of frames"
        )
    if b[0] < 1:
        raise ValueError(f"the first boundary must be >= 1 (an exclusive end), got {b[0]}")
    if np.any(np.diff(b) <= 0):
        i = int(np.nonzero(np.diff(b) <= 0)[0][0])
        raise ValueError(
            f"boundaries must be strictly increasing, got {b[i]} then {b[i + 1]} at index {i + 1}"
        )
    if num_frames is not None and b[-1] != num_frames:
        raise ValueError(
            f"the last boundary ({b[-1]}) must equal the number of frames ({num_frames}): "
            "boundaries are exclusive segment ends. Were they computed with another frame "
            "rate or another feature extractor?"
        )
    return b


def segment_lengths(boundaries: np.ndarray) -> np.ndarray:
    """(K,) segment lengths in frames from (K,) boundaries."""
    return np.diff(np.asarray(boundaries, dtype=np.int64), prepend=0)


def lengths_to_boundaries(lengths: np.ndarray) -> np.ndarray:
    """(K,) boundaries from (K,) positive segment lengths (their cumulative sum)."""
    return np.cumsum(np.asarray(lengths, dtype=np.int64))


def segment_ids(boundaries: np.ndarray) -> np.ndarray:
    """(T,) index of the segment each frame belongs to, T = boundaries[-1]."""
    lengths = segment_lengths(boundaries)
    return np.repeat(np.arange(len(lengths)), lengths)


def merge_short_segments(boundaries: np.ndarray, min_duration: int) -> np.ndarray:
    """Merge segments shorter than ``min_duration`` frames into a neighbour.

    Deterministic rule: repeatedly take the shortest segment below ``min_duration`` (the
    earliest on ties) and merge it into its shorter neighbour (the left one on ties; the
    first and last segments have one neighbour), until every segment is long enough or only
    one is left. Merging the shortest first keeps a run of one-frame flickers from being
    swept into one long segment.

    Args:
        boundaries: (K,) boundaries (module convention).
        min_duration: minimum segment length in frames; <= 1 returns the input unchanged.

    Returns:
        (K',) boundaries with K' <= K; the last one is unchanged.
    """
    b = check_boundaries(boundaries)
    if min_duration <= 1 or b.size <= 1:
        return b
    lengths = segment_lengths(b).tolist()
    while len(lengths) > 1:
        # O(K) per merge; K is at most a few thousand per utterance.
        arr = np.asarray(lengths)
        short = np.nonzero(arr < min_duration)[0]
        if short.size == 0:
            break
        i = int(short[np.argmin(arr[short])])
        if i == 0:
            j = 1
        elif i == len(lengths) - 1:
            j = i - 1
        else:
            j = i - 1 if lengths[i - 1] <= lengths[i + 1] else i + 1
        lengths[j] += lengths[i]
        del lengths[i]
    return lengths_to_boundaries(lengths)


def units_to_boundaries(units: np.ndarray, min_duration: int = 1) -> np.ndarray:
    """Boundaries of the runs of equal units, then short segments merged.

    Args:
        units: (T,) integer unit (cluster) per frame.
        min_duration: segments shorter than this many frames are merged into a neighbour
            (see :func:`merge_short_segments`); 1 keeps every run.

    Returns:
        (K,) int64 boundaries: exclusive run ends, last == T (empty for T = 0).

    Example: ``units_to_boundaries([5, 5, 1, 7, 7, 7])`` -> ``[2, 3, 6]``.
    """
    u = np.asarray(units)
    if u.ndim != 1:
        raise ValueError(f"units must be a (T,) array, got shape {u.shape}")
    if u.size == 0:
        return np.zeros(0, dtype=np.int64)
    # A run ends where the next frame's unit differs, and at T.
    ends = np.nonzero(u[1:] != u[:-1])[0] + 1
    b = np.append(ends, u.size).astype(np.int64)
    return merge_short_segments(b, min_duration)


def format_boundaries(boundaries: np.ndarray) -> str:
    """``"b1 b2 ... bK"`` for a boundary file line."""
    return " ".join(str(int(x)) for x in boundaries)


def parse_boundaries(value: str) -> np.ndarray:
    """Inverse of :func:`format_boundaries`; raises ``ValueError`` if not valid boundaries."""
    try:
        b = np.array([int(x) for x in value.split()], dtype=np.int64)
    except ValueError as e:
        raise ValueError(f"boundaries must be integers, got {value[:60]!r}") from e
    if b.size == 0:
        raise ValueError("no boundaries on the line")
    return check_boundaries(b)


def read_boundaries(path) -> dict:
    """Read a boundary file (``uttid b1 ... bK`` per line) as ``{uttid: (K,) int64 array}``.

    Raises :class:`espnet_ofa.data.DataDirError` / ``ValueError`` naming the line if a line is
    malformed.
    """
    from espnet_ofa.data.datadir import read_table_lines

    out = {}
    for line in read_table_lines(path):
        try:
            out[line.key] = parse_boundaries(line.value)
        except ValueError as e:
            raise ValueError(f"{path}:{line.lineno}: {e}") from e
    return out
