"""Pseudo boundaries for a whole data directory: features -> k-means units -> boundaries.

Outputs, for ``out = exp/segments/boundaries``:

- ``out``: the boundary file, ``uttid b1 b2 ... bK`` per line, sorted (convention in
  :mod:`espnet_ofa.segmentation.boundaries`: exclusive segment ends, ``bK == T``).
- ``out.kmeans.npy``: the (n_clusters, D) centroids; a resumed run reuses them, and another
  set (dev/test) can be segmented with the same units via ``kmeans=``.
- ``out.meta.json``: the settings that determine the boundaries; a resumed run with other
  settings is refused rather than mixing two kinds of boundaries in one file.
- ``out.partial`` (only while running): finished utterances, appended and flushed every
  ``flush_every`` utterances. After a kill, the next run keeps its complete lines and only
  computes the rest; a finished run merges it into ``out`` atomically and deletes it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.data.audio import load_audio, num_frames
from espnet_ofa.data.datadir import (
    atomic_write_text,
    data_dir_utterances,
    validate_data_dir,
    write_kaldi_table,
)
from espnet_ofa.fileio import PathLike
from espnet_ofa.segmentation.boundaries import (
    check_boundaries,
    format_boundaries,
    parse_boundaries,
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

logger = logging.getLogger(__name__)

FeatureFn = Callable[[torch.Tensor], np.ndarray]  # (N,) 16 kHz wav -> (T, D) features

MIN_SAMPLES = 400  # one 25 ms frame


@dataclass
class SegmentConfig:
    """Settings of a segmentation run (the CLI's options)."""

    feature: str = "mfcc"  # "mfcc" or "teacher"
    teacher: Optional[str] = None  # teacher source for feature == "teacher"
    teacher_layer: int = 6
    n_clusters: int = 50
    min_duration: int = 2  # frames; shorter segments are merged into a neighbour
    dp_smooth: bool = False  # re-place the boundaries with dp_smooth
    dp_penalty: Optional[float] = None  # with dp_smooth: penalty mode instead of same count
    max_utts_for_kmeans: int = 2000
    seed: int = 0
    device: Optional[str] = None

    def __post_init__(self):
        if self.feature not in ("mfcc", "teacher"):
            raise ValueError(f"feature must be 'mfcc' or 'teacher', got {self.feature!r}")
        if self.feature == "teacher" and not self.teacher:
            raise ValueError("feature 'teacher' needs a teacher source (--teacher)")
        if self.n_clusters < 2:
            raise ValueError(f"n_clusters must be >= 2, got {self.n_clusters}")
        if self.min_duration < 1:
            raise ValueError(f"min_duration must be >= 1 frame, got {self.min_duration}")
        if self.max_utts_for_kmeans < 1:
            raise ValueError("max_utts_for_kmeans must be >= 1")


@dataclass
class SegmentReport:
    """What :func:`segment_data_dir` did."""

    out: Path
    computed: List[str] = field(default_factory=list)
    reused: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)  # utt -> reason
    kmeans_fitted: bool = False

    def __str__(self) -> str:
        s = (f"{self.out}: {len(self.computed)} utterances segmented, {len(self.reused)} kept "
             f"from an earlier run, {len(self.skipped)} skipped")
        for utt, why in list(self.skipped.items())[:10]:
            s += f"\n  skipped {utt}: {why}"
        return s


def sidecar(out: PathLike, suffix: str) -> Path:
    """``<out><suffix>``, e.g. ``boundaries.kmeans.npy`` next to ``boundaries``."""
    out = Path(out)
    return out.with_name(out.name + suffix)


def segment_features(features: np.ndarray, centroids: np.ndarray, config: SegmentConfig) -> np.ndarray:
    """Boundaries of one utterance from its (T, D) features.

    Units = nearest centroid per frame; boundaries = ends of runs of equal units, segments
    shorter than ``min_duration`` merged. With ``dp_smooth``, :func:`dp_smooth` then re-places
    them on the features: with ``dp_penalty`` None it keeps the number of segments the units
    gave (the units decide *how many*, the squared-error fit decides *where*); with a penalty
    the count comes from the penalty too.

    Returns (K,) boundaries, last == T.
    """
    units = assign_units(features, centroids)
    b = units_to_boundaries(units, config.min_duration)
    if config.dp_smooth and b.size:
        if config.dp_penalty is not None:
            b = dp_smooth(features, penalty=config.dp_penalty, min_duration=config.min_duration)
        else:
            b = dp_smooth(features, n_segments=len(b), min_duration=config.min_duration)
    return check_boundaries(b, features.shape[0])


def make_feature_fn(config: SegmentConfig) -> FeatureFn:
    """The feature extractor the config asks for (the teacher one imports lazily)."""
    from espnet_ofa.segmentation.features import TeacherFeatures, mfcc_features

    if config.feature == "mfcc":
        return mfcc_features
    return TeacherFeatures(config.teacher, config.teacher_layer, config.device)


def list_utterances(data_dir: PathLike) -> List[Tuple[str, str, Optional[Tuple[float, float]]]]:
    """``[(utt, wav.scp value, (start_s, end_s) or None)]`` sorted, after validating the dir."""
    data_dir = Path(data_dir)
    validate_data_dir(data_dir, required=("wav.scp",), optional=("segments",))
    return data_dir_utterances(data_dir)


def _settings(config: SegmentConfig) -> dict:
    """What changes the boundaries, besides the units: the k-means options (number of
    clusters, sample, seed) act through the centroids only."""
    teacher = config.feature == "teacher"
    if teacher:
        from espnet_ofa.teachers import weights_fingerprint
    return {
        "format": "uttid b1 ... bK; b = exclusive segment end frames (20 ms), bK = T",
        "feature": config.feature,
        "teacher": config.teacher if teacher else None,
        # A retrained teacher keeps its source's name: its weights tell the runs apart.
        "teacher_weights": weights_fingerprint(config.teacher) if teacher else None,
        "teacher_layer": config.teacher_layer if teacher else None,
        "min_duration": config.min_duration,
        "dp_smooth": config.dp_smooth,
        "dp_penalty": config.dp_penalty if config.dp_smooth else None,
    }


def _read_finished(out: Path) -> Dict[str, str]:
    """Finished lines of ``out`` and ``out.partial``: ``{utt: "b1 ... bK"}``.

    A killed run can leave a last line cut short (no newline): such a line, or any line
    that does not parse as boundaries, is ignored so that its utterance is recomputed.
    """
    done: Dict[str, str] = {}
    for path in (out, sidecar(out, ".partial")):
        if not path.is_file():
            continue
        with open(path, "r", encoding="utf-8") as f:
            for raw in f:
                if not raw.endswith("\n"):
                    break  # cut short by a kill
                parts = raw.split(None, 1)
                if len(parts) != 2:
                    continue
                try:
                    done[parts[0]] = format_boundaries(parse_boundaries(parts[1]))
                except ValueError:
                    continue
    return done


def _fit_or_load_centroids(
    items, out: Path, config: SegmentConfig, feature_fn: FeatureFn, kmeans: Optional[PathLike],
    progress: bool, report: SegmentReport, refit: bool = False,
) -> Tuple[np.ndarray, bool]:
    """The run's centroids and whether they still have to be saved to ``out.kmeans.npy``
    (``refit``: fit anew when the saved ones have another number of clusters)."""
    km_path = sidecar(out, ".kmeans.npy")
    if kmeans is not None:
        centroids = load_centroids(kmeans)
        same_file = km_path.is_file() and os.path.samefile(kmeans, km_path)
        return centroids, not same_file
    if km_path.is_file():
        centroids = load_centroids(km_path)
        if centroids.shape[0] == config.n_clusters:
            logger.info("reusing the clusters of an earlier run: %s", km_path)
            return centroids, False
        if not refit:
            raise ValueError(
                f"{km_path} (from an earlier run) has {centroids.shape[0]} clusters but "
                f"n_clusters={config.n_clusters} was asked. Delete {km_path}, {out}, "
                f"{sidecar(out, '.partial')} and {sidecar(out, '.meta.json')} to start over, "
                "or keep the earlier setting."
            )
        logger.info("%s has %d clusters, %d asked: fitting anew", km_path, centroids.shape[0],
                    config.n_clusters)
    rng = np.random.default_rng(config.seed)
    n = min(config.max_utts_for_kmeans, len(items))
    # Sorted indices: the sample is read in data-dir order (friendlier to disk caches).
    chosen = sorted(rng.choice(len(items), size=n, replace=False).tolist())
    feats = []
    from tqdm import tqdm

    for idx in tqdm(chosen, desc="features for k-means", disable=not progress, unit="utt"):
        utt, value, seg = items[idx]
        wav, _ = load_audio(value, SAMPLE_RATE, segment=seg)
        if wav.numel() >= MIN_SAMPLES:
            feats.append(feature_fn(wav))
    logger.info("fitting k-means: %d clusters on %d utterances", config.n_clusters, len(feats))
    centroids = fit_kmeans(feats, config.n_clusters, seed=config.seed)
    report.kmeans_fitted = True
    return centroids, True


def segment_data_dir(
    data_dir: PathLike,
    out: PathLike,
    config: SegmentConfig,
    feature_fn: Optional[FeatureFn] = None,
    kmeans: Optional[PathLike] = None,
    progress: bool = True,
    flush_every: int = 20,
    fit_only: bool = False,
    on_change: str = "error",
) -> SegmentReport:
    """Write pseudo boundaries for every utterance of ``data_dir`` to ``out``; resumable.

    Args:
        data_dir: Kaldi data dir with ``wav.scp`` (and optionally ``segments``); validated.
        out: the boundary file to write (side files next to it, see the module doc).
        config: the run's settings.
        feature_fn: (N,) 16 kHz waveform -> (T, D) features; default from ``config``.
        kmeans: a ``.npy`` of centroids to use instead of fitting (e.g. the train set's
            ``boundaries.kmeans.npy`` when segmenting dev/test).
        progress: show tqdm progress bars.
        flush_every: utterances between flushes of ``out.partial`` to disk.
        fit_only: stop after fitting (or reusing) the units: write ``out.kmeans.npy`` and
            the settings only, so that parts of the data dir can then be segmented in
            parallel jobs with ``kmeans=`` those units (the same boundaries as one run).
        on_change: when ``out`` was made with other settings, another teacher (its
            weights, `espnet_ofa.teachers.weights_fingerprint`) or other given units:
            ``"error"`` refuses to mix them, ``"restart"`` discards ``out`` and starts over.

    Utterances already in ``out`` or ``out.partial`` (from an earlier run with the same
    settings) are kept as they are; only the others are computed. Utterances shorter than
    one frame (400 samples at 16 kHz) are skipped (reported, not written).
    """
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    items = list_utterances(data_dir)
    if not items:
        raise ValueError(f"{data_dir}: no utterances")
    report = SegmentReport(out=out)
    meta_path = sidecar(out, ".meta.json")
    partial = sidecar(out, ".partial")

    if (out.is_file() or partial.is_file()) and not meta_path.is_file():
        raise ValueError(
            f"{out} (or {partial}) exists but {meta_path} does not, so its settings are "
            "unknown. Move it away or delete it before running."
        )
    if on_change not in ON_CHANGE:
        raise ValueError(f"on_change must be one of {ON_CHANGE}, got {on_change!r}")
    feature_fn = feature_fn or make_feature_fn(config)
    centroids = _units_for(out, items, config, feature_fn, kmeans, on_change, progress, report)
    if fit_only:
        return report

    wanted = {utt for utt, _, _ in items}
    finished = {u: b for u, b in _read_finished(out).items() if u in wanted}
    report.reused = sorted(finished)
    todo = [it for it in items if it[0] not in finished]
    # Start the partial file clean (without a cut-off last line), then append to it.
    atomic_write_text(partial, "".join(f"{u} {b}\n" for u, b in sorted(finished.items())))
    with open(partial, "a", encoding="utf-8") as f:
        bar = tqdm(todo, desc="segmenting", disable=not progress, unit="utt")
        for n, (utt, value, seg) in enumerate(bar, start=1):
            line = _segment_one(utt, value, seg, feature_fn, centroids, config, report)
            if line is None:
                continue
            f.write(f"{utt} {line}\n")
            finished[utt] = line
            report.computed.append(utt)
            if n % flush_every == 0:
                f.flush()
                os.fsync(f.fileno())
    write_kaldi_table(out, finished)
    partial.unlink()
    logger.info("%s", report)
    return report


def _units_for(out: Path, items, config: SegmentConfig, feature_fn: FeatureFn,
               kmeans: Optional[PathLike], on_change: str, progress: bool,
               report: SegmentReport) -> np.ndarray:
    """The centroids ``out`` is segmented with (fitted, reused or given), saved beside it
    with its settings; an ``out`` made otherwise is refused or discarded (``on_change``)."""
    meta_path = sidecar(out, ".meta.json")
    settings = _settings(config)
    if meta_path.is_file():  # other settings or teacher: new units too (unless given)
        _reconcile(out, settings, on_change, drop_units=kmeans is None)
    centroids, unsaved = _fit_or_load_centroids(
        items, out, config, feature_fn, kmeans, progress, report, refit=on_change == "restart"
    )
    meta = {**settings, "n_clusters": int(centroids.shape[0]),
            "kmeans_digest": centroids_digest(centroids)}
    if meta_path.is_file():  # other units: given (`kmeans`) or fitted anew
        _reconcile(out, meta, on_change, drop_units=False)
    # Centroids first, then the settings: a run killed in between leaves centroids without
    # settings, which the next run simply reuses; never settings without their centroids.
    if unsaved:
        save_centroids(sidecar(out, ".kmeans.npy"), centroids)
    if not meta_path.is_file():
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return centroids


ON_CHANGE = ("error", "restart")


def _reconcile(out: Path, wanted: dict, on_change: str, drop_units: bool) -> None:
    """Resuming ``out`` needs the settings it was made with (its meta.json): for other
    ``wanted`` ones, refuse (``on_change="error"``) or discard its outputs (``"restart"``;
    its units too with ``drop_units``) so that the run starts over."""
    meta_path = sidecar(out, ".meta.json")
    old = json.loads(meta_path.read_text(encoding="utf-8"))
    diff = sorted(k for k in wanted if old.get(k) != wanted[k])
    if not diff:
        return
    changes = ", ".join(f"{k}: {old.get(k)!r} -> {wanted[k]!r}" for k in diff)
    stale = [out, sidecar(out, ".partial"), meta_path] + (
        [sidecar(out, ".kmeans.npy")] if drop_units else [])
    if on_change != "restart":
        raise ValueError(
            f"{out} was made with other settings ({changes}). Use the same settings to "
            f"resume, or delete {', '.join(map(str, stale))} to start over."
        )
    logger.info("%s was made with other settings (%s): starting over", out, changes)
    for path in stale:
        path.unlink(missing_ok=True)


def _segment_one(utt: str, value: str, seg: Optional[Tuple[float, float]], feature_fn: FeatureFn,
                 centroids: np.ndarray, config: SegmentConfig,
                 report: SegmentReport) -> Optional[str]:
    """One utterance's boundaries as a table value; None (and noted in ``report``) for one
    shorter than a frame."""
    wav, _ = load_audio(value, SAMPLE_RATE, segment=seg)
    if wav.numel() < MIN_SAMPLES:
        report.skipped[utt] = f"{wav.numel()} samples, shorter than one 25 ms frame ({MIN_SAMPLES})"
        return None
    feats = feature_fn(wav)
    expected = num_frames(wav.numel())
    if feats.shape[0] != expected:
        raise ValueError(
            f"{utt}: the features have {feats.shape[0]} frames but {wav.numel()} "
            f"samples give {expected} 20 ms frames; the feature extractor does not "
            "use the 25 ms / 20 ms frame grid."
        )
    return format_boundaries(segment_features(feats, centroids, config))
