"""Decode test sets at several OFA frame periods with one model load (recipe stage 12).

    python -m espnet_ofa.bin.decode --task asr --train_config exp/asr/config.yaml \\
        --model_file exp/asr/valid.acc.best.pth --data_dirs dump/raw/test dump/raw/test_theo \\
        --out_dir exp/asr/decode --frame_periods 20 40 60 80 \\
        [--learned auto|true|false] [--own_period true|false]
        [--inference_config conf/decode_asr.yaml] [--ngpu 1] [--num_splits N --split J]

    # several decodings in one process (ESPnet imported once): each file holds one
    # decoding's options, one per line; each logs into <its out_dir>/logdir/decode.<split>.log
    python -m espnet_ofa.bin.decode --args_file exp/a/decode/logdir/decode.args \\
        --args_file exp/b/decode/logdir/decode.args [--ngpu 1] [--split J]

    python -m espnet_ofa.bin.decode --merge exp/asr/decode/p40/test --num_splits N

    # the same options as the decoding, plus: exit 0 if out_dir holds exactly that decoding
    # (stage 12 skips it on a rerun), or record that it does once every job has finished
    python -m espnet_ofa.bin.decode ... --done check|mark

Writes ``<out_dir>/<p40|learned>/<set>/{text,token,info.json}``; see
:mod:`espnet_ofa.recipe.decode`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
from pathlib import Path
from typing import Iterator, List, Optional, TextIO

from espnet_ofa.bin import LOG_FORMAT, configure_logging, read_args_file, reports_errors
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
    p.add_argument("--args_file", type=Path, action="append", default=[],
                   help="the options of one decoding (--train_config ... --num_splits), one "
                        "per line; repeat to decode several models in this process")
    p.add_argument("--log_level", default="WARNING")
    return p


# What an args file holds: the options that define one decoding.
REQUEST_OPTIONS = ("task", "train_config", "model_file", "data_dirs", "out_dir",
                   "frame_periods", "learned", "inference_config", "num_splits",
                   "own_period", "macs_utts")


class _Tee(io.TextIOBase):
    """A text stream that writes to several (progress: the terminal's and a log file)."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def logged_to(path: Path) -> Iterator[None]:
    """While the block runs, log lines and progress (stdout) go into ``path`` too; an error
    that ends the block is logged there as well."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    # Both append (O_APPEND): neither overwrites what the other wrote.
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with open(path, "a", encoding="utf-8", buffering=1) as progress, \
                contextlib.redirect_stdout(_Tee(sys.stdout, progress)):
            yield
    except Exception as err:
        logging.error("decoding failed: %s: %s", type(err).__name__, err)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def read_requests(paths: List[Path]) -> List[argparse.Namespace]:
    """The decodings in the args files ``paths``, all checked before any runs."""
    parser = get_parser()
    requests = []
    for path in paths:
        request = parser.parse_args(read_args_file(path, "decoding"))
        stray = [n for n in vars(request) if n not in REQUEST_OPTIONS
                 and getattr(request, n) != parser.get_default(n)]
        if stray:
            raise ValueError(f"{path}: --{', --'.join(stray)} cannot be in an args file (it "
                             "holds one decoding's options); give them on the command line")
        _check_request(request)
        requests.append(request)
    return requests


def _check_request(args: argparse.Namespace) -> None:
    missing = [n for n in ("train_config", "model_file", "out_dir") if not getattr(args, n)]
    if missing or not args.data_dirs:
        raise ValueError(f"missing --{', --'.join(missing or ['data_dirs'])}")


def _decode(request: argparse.Namespace, ngpu: int, split: int) -> None:
    from espnet_ofa.recipe.decode import decode_periods

    decode_periods(request.task, request.train_config, request.model_file, request.data_dirs,
                   request.out_dir, request.frame_periods, request.learned,
                   request.inference_config, "cuda" if ngpu > 0 else "cpu",
                   request.num_splits, split, request.macs_utts,
                   own_period=request.own_period == "true")


@reports_errors()
def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if args.merge:
        from espnet_ofa.recipe.decode import merge_splits

        for d in args.merge:
            merge_splits(d, args.num_splits)
        return 0
    if args.args_file:
        clashing = [f"--{n}" for n in (*REQUEST_OPTIONS, "done")
                    if getattr(args, n) != parser.get_default(n)]
        if clashing:
            raise ValueError(f"{', '.join(clashing)} cannot be combined with --args_file: a "
                             "decoding's options go in its args file (--done takes them "
                             "directly)")
        for request in read_requests(args.args_file):
            with logged_to(Path(request.out_dir) / "logdir" / f"decode.{args.split}.log"):
                _decode(request, args.ngpu, args.split)
        return 0
    _check_request(args)
    if args.done:
        from espnet_ofa.recipe.decode import decode_request, is_decoded, mark_decoded

        request = decode_request(args.train_config, args.model_file, args.data_dirs,
                                 args.frame_periods, args.learned, args.own_period == "true",
                                 args.inference_config, args.num_splits)
        if args.done == "mark":
            mark_decoded(args.out_dir, request)
            return 0
        return 0 if is_decoded(args.out_dir, request) else 1
    _decode(args, args.ngpu, args.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
