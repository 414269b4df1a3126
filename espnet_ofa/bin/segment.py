"""Unsupervised pseudo segment boundaries for a Kaldi data directory.

    python -m espnet_ofa.bin.segment --data_dir data/train --out exp/segments/train/boundaries \\
        --feature mfcc --n_clusters 50 --min_duration 2 [--dp_smooth] --seed 0

Writes ``<out>`` with one line per utterance, ``uttid b1 b2 ... bK``: the exclusive end
frame (20 ms frames, T = (N - 400) // 320 + 1 at 16 kHz) of each of its K segments, so
``bK == T``. Side files: ``<out>.kmeans.npy`` (centroids; pass it as ``--kmeans`` to segment
dev/test with the same units) and ``<out>.meta.json`` (settings, and the teacher's weights).
Rerunning after a kill, or after adding utterances, computes only the utterances not in the
output yet; with other settings, another teacher or other units it refuses, or with
``--on_change restart`` starts over.

``--also DATA_DIR OUT`` (repeatable) then segments more data dirs with the same units in the
same process, so that the teacher is loaded once (ssl.sh's single-job stage 8: train, then
the valid set).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from espnet_ofa.bin import configure_logging, reports_errors


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ofa.bin.segment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data_dir", required=True, help="Kaldi data dir with wav.scp (and segments)")
    p.add_argument("--out", required=True, help="boundary file to write")
    p.add_argument("--feature", choices=("mfcc", "teacher"), default="mfcc",
                   help="frame features for k-means: 39-d MFCC+deltas, or a teacher layer")
    p.add_argument("--teacher", default=None,
                   help="teacher source for --feature teacher (see espnet_ofa.teachers)")
    p.add_argument("--teacher_layer", type=int, default=6, help="teacher layer to cluster")
    p.add_argument("--device", default=None, help="device for the teacher (default: cuda if any)")
    p.add_argument("--n_clusters", type=int, default=50, help="number of k-means units")
    p.add_argument("--kmeans", default=None,
                   help="use these centroids (.npy) instead of fitting k-means")
    p.add_argument("--min_duration", type=int, default=2,
                   help="minimum segment length in frames; shorter ones are merged")
    p.add_argument("--dp_smooth", action="store_true",
                   help="re-place the boundaries by a least-squares DP segmentation")
    p.add_argument("--dp_penalty", type=float, default=None,
                   help="with --dp_smooth: per-segment penalty instead of keeping the count")
    p.add_argument("--max_utts_for_kmeans", type=int, default=2000,
                   help="random utterances used to fit k-means")
    p.add_argument("--fit_only", action="store_true",
                   help="only fit the k-means units (<out>.kmeans.npy); segment parts of the "
                        "data dir later, e.g. in parallel jobs, with --kmeans")
    p.add_argument("--also", nargs=2, action="append", default=[], metavar=("DATA_DIR", "OUT"),
                   help="then segment DATA_DIR into OUT with the same units (repeatable; "
                        "--fit_only applies to --data_dir alone)")
    p.add_argument("--on_change", choices=("error", "restart"), default="error",
                   help="when OUT was made with other settings, another teacher (its weights) "
                        "or other units: refuse (error) or discard it and start over (restart)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--log_level", default="INFO")
    return p


@reports_errors()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.log_level)
    # Imported after parsing so that --help is instant.
    from espnet_ofa.segmentation.pipeline import (SegmentConfig, make_feature_fn,
                                                  segment_data_dir, sidecar)

    config = SegmentConfig(
        feature=args.feature, teacher=args.teacher, teacher_layer=args.teacher_layer,
        n_clusters=args.n_clusters, min_duration=args.min_duration,
        dp_smooth=args.dp_smooth, dp_penalty=args.dp_penalty,
        max_utts_for_kmeans=args.max_utts_for_kmeans, seed=args.seed, device=args.device,
    )
    feature_fn = make_feature_fn(config)  # the teacher, loaded once for every data dir
    print(segment_data_dir(args.data_dir, args.out, config, feature_fn=feature_fn,
                           kmeans=args.kmeans, progress=not args.no_progress,
                           fit_only=args.fit_only, on_change=args.on_change))
    units = args.kmeans or sidecar(args.out, ".kmeans.npy")  # given, or fitted just now
    for data_dir, out in args.also:
        print(segment_data_dir(data_dir, out, config, feature_fn=feature_fn, kmeans=units,
                               progress=not args.no_progress, on_change=args.on_change))
    return 0


if __name__ == "__main__":
    sys.exit(main())
