"""Unsupervised pseudo segment boundaries for supervising the CIF weight predictor.

Boundary convention: exclusive segment end frames, last == T (see
:mod:`espnet_ofa.segmentation.boundaries`). The pure functions need only numpy (and
scikit-learn for k-means); :func:`segment_data_dir` runs the whole pipeline over a data dir.
"""

from espnet_ofa.segmentation.boundaries import (
    check_boundaries,
    format_boundaries,
    lengths_to_boundaries,
    merge_short_segments,
    parse_boundaries,
    read_boundaries,
    segment_ids,
    segment_lengths,
    units_to_boundaries,
)
from espnet_ofa.segmentation.dp import dp_smooth
from espnet_ofa.segmentation.kmeans import (
    assign_units,
    centroids_digest,
    fit_kmeans,
    load_centroids,
    save_centroids,
)

__all__ = [
    "assign_units",
    "centroids_digest",
    "check_boundaries",
    "dp_smooth",
    "fit_kmeans",
    "format_boundaries",
    "lengths_to_boundaries",
    "load_centroids",
    "merge_short_segments",
    "parse_boundaries",
    "read_boundaries",
    "save_centroids",
    "segment_ids",
    "segment_lengths",
    "units_to_boundaries",
]
