"""Frozen SSL features computed once (`espnet_ofa.recipe.feature_cache`), for ``s2t.sh``.

    # per plan line: the cache it trains on (or -), its statistics key, 1 if it collects
    # them, 1 if it extracts its cache, the frontend it trains with on the cache (or -)
    python -m espnet_ofa.bin.feature_cache plan --plan exp/plan.asr.tsv [--train_args "..."]
    # the features of data dirs, for one training config (+ its extra options): the model
    # is loaded once for all of them; the i-th --out_dir holds the i-th --data_dir's
    python -m espnet_ofa.bin.feature_cache extract --config conf/train_asr_ofa.yaml \
        --options "--frontend_conf frame_period=40" --data_dir dump/raw/train_sp dump/raw/dev \
        --out_dir dump/ofa_feats/<key>/train_sp dump/ofa_feats/<key>/dev
    # models trained on them -> the same models on waveforms (frontend: ofa, ssl_teacher);
    # the i-th --out_dir gets the i-th --cached_dir's
    python -m espnet_ofa.bin.feature_cache to_waveform --cached_dir exp/asr_x/cached \
        exp/asr_y/cached --out_dir exp/asr_x exp/asr_y
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Optional

from espnet_ofa.bin import paired, reports_errors
from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.recipe import feature_cache


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="per line of an experiment plan: cache key (or -), "
                       "statistics key, 1 when it collects them, 1 when it extracts its "
                       "cache, the frontend on the cache or - (tab-separated)")
    p.add_argument("--plan", required=True, help="the plan TSV that s2t.sh writes")
    p.add_argument("--train_args", default="", help="the recipe's --<task>_args")
    p.add_argument("--enabled", default="true", choices=["true", "false"])
    p = sub.add_parser("extract", help="SSL features of a data dir into a Kaldi ark cache")
    p.add_argument("--config", required=True,
                   help="the training config (frontend: ofa or ssl_teacher)")
    p.add_argument("--options", default="", help="extra training options overriding it")
    p.add_argument("--data_dir", required=True, nargs="+",
                   help="formatted data dirs (wav.scp)")
    p.add_argument("--out_dir", required=True, nargs="+",
                   help="where each data dir's features go (one per --data_dir, in order)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max_batch_seconds", type=float, default=40.0,
                   help="audio per padded extraction batch")
    p = sub.add_parser("to_waveform",
                       help="a model trained on the cache -> its live frontend")
    p.add_argument("--cached_dir", required=True, nargs="+", help="training output dirs")
    p.add_argument("--out_dir", required=True, nargs="+",
                   help="where each one's config.yaml and *.pth go (one per --cached_dir)")
    return parser


@reports_errors(OSError, exit_status=2)  # the messages name the fix
def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    if args.command == "plan":
        for cache, stats, collects, extracts, frontend in feature_cache.plan_stats(
                args.plan, args.train_args, args.enabled == "true"):
            print(f"{cache}\t{stats}\t{int(collects)}\t{int(extracts)}\t{frontend}")
    elif args.command == "extract":
        spec, why = feature_cache.cache_spec(args.config, args.options)
        if spec is None:
            raise ValueError(f"{args.config}: no cache: {why}")
        scps = feature_cache.extract_sets(
            spec, args.data_dir, args.out_dir, device=args.device,
            max_batch_samples=int(args.max_batch_seconds * SAMPLE_RATE))
        for scp, out_dir in zip(scps, args.out_dir):
            mib = feature_cache.cache_bytes(out_dir) / 2**20
            print(f"cached {scp} ({mib:.1f} MiB)")
    else:
        for cached_dir, out_dir in paired(args.cached_dir, args.out_dir, "cached_dir",
                                          "out_dir"):
            for path in feature_cache.to_waveform_model(cached_dir, out_dir):
                print(f"waveform model {path}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
