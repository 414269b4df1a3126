"""Decode test sets at several OFA frame periods with one model load (recipe stage 12).

    python -m espnet_ofa.bin.decode --task asr --train_config exp/asr/config.yaml \\
        --model_file exp/asr/valid.acc.best.pth --data_dirs dump/raw/test dump/raw/test_theo \\
        --out_dir exp/asr/decode --frame_periods 20 40 60 80 \\
        [--learned auto|true|false] [--own_period true|false]
        [--inference_config conf/decode_asr.yaml] [--ngpu 1] [--num_splits N --split J]

    python -m espnet_ofa.bin.decode --merge exp/asr/decode/p40/test --num_splits N

    # the same options as the decoding, plus: exit 0 if out_dir holds exactly that decoding
    # (stage 12 skips it on a rerun), or record that it does once every job has finished
    python -m espnet_ofa.bin.decode ... --done check|mark

Writes ``<out_dir>/<p40|learned>/<set>/{text,token,info.json}``; see
:mod:`espnet_ofa.recipe.decode`.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from espnet_ofa.bin import configure_logging, reports_errors
from espnet_ofa.espnet_tasks import task_names


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_ofa.bin.decode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=task_names(), default="asr")
    p.add_argument("--train_config", help="the experiment's config.yaml")
    p.add_argument("--model_file", help="the .pth to decode with")
    p.add_argument("--data_dirs", nargs="+", default=[], help="test data dirs (wav.scp)")
    p.add_argument("--out_dir", help="decoding root")
    p.add_argument("--frame_periods", type=float, nargs="*", default=[],
                   help="frame periods (ms) to decode at")
    p.add_argument("--learned", choices=("auto", "true", "false"), default="auto",
                   help="decode at the model's learnt period: auto = a model with a learnt "
                        "rate only at that rate, any other at --frame_periods; true = both")
    p.add_argument("--inference_config", default=None, help="YAML of inference options")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--num_splits", type=int, default=1)
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--own_period", choices=("true", "false"), default="false",
                   help="true: a downstream trained at one fixed period is decoded at that "
                        "period only, not switched to every --frame_periods")
    p.add_argument("--macs_utts", type=int, default=5,
                   help="utterances per rate and set whose MACs are counted")
    p.add_argument("--merge", nargs="+", default=None, metavar="DECODE_DIR",
                   help="merge the split outputs of these decode dirs instead of decoding")
    p.add_argument("--done", choices=("check", "mark"), default=None,
                   help="check: exit 0 when --out_dir already holds this decoding (same "
                        "model, sets, periods and options), 1 otherwise; mark: record that "
                        "it does (after all jobs and the merge)")
    p.add_argument("--log_level", default="WARNING")
    return p


@reports_errors()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.log_level)
    if args.merge:
        from espnet_ofa.recipe.decode import merge_splits

        for d in args.merge:
            merge_splits(d, args.num_splits)
        return 0
    missing = [n for n in ("train_config", "model_file", "out_dir") if not getattr(args, n)]
    if missing or not args.data_dirs:
        raise ValueError(f"missing --{', --'.join(missing or ['data_dirs'])}")
    if args.done:
        from espnet_ofa.recipe.decode import decode_request, is_decoded, mark_decoded

        request = decode_request(args.train_config, args.model_file, args.data_dirs,
                                 args.frame_periods, args.learned, args.own_period == "true",
                                 args.inference_config, args.num_splits)
        if args.done == "mark":
            mark_decoded(args.out_dir, request)
            return 0
        return 0 if is_decoded(args.out_dir, request) else 1
    from espnet_ofa.recipe.decode import decode_periods

    device = "cuda" if args.ngpu > 0 else "cpu"
    decode_periods(args.task, args.train_config, args.model_file, args.data_dirs,
                   args.out_dir, args.frame_periods, args.learned, args.inference_config,
                   device, args.num_splits, args.split, args.macs_utts,
                   own_period=args.own_period == "true")
    return 0


if __name__ == "__main__":
    sys.exit(main())
