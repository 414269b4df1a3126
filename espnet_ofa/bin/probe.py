"""Linear probe of frozen representations on single-word data sets (FSDD single takes).

    python -m espnet_ofa.bin.probe --train_dir data/train \\
        --test_dir data/test --test_dir data/test_theo \\
        --teacher exp/hubert_train_hubert_tiny

    python -m espnet_ofa.bin.probe --train_dir data/train --test_dir data/test_theo \\
        --ofa_model exp/ssl_train_ofa_tiny/valid.loss.best.pth --frame_period 40

    python -m espnet_ofa.bin.probe --train_dir data/train --test_dir data/test_theo --mfcc

Prints a markdown table: for each layer (and all layers together), the word accuracy of a
logistic regression on each utterance's mean and standard deviation over time, trained on
--train_dir (see espnet_ofa.recipe.probe). In fsdd/ssl1 the data dirs are data/train,
data/test and data/test_<held-out speaker>.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from espnet_ofa.bin import reports_errors


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_ofa.bin.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_dir", required=True, help="Kaldi data dir (wav.scp, text) to train on")
    p.add_argument("--test_dir", action="append", required=True,
                   help="Kaldi data dir to classify; repeat")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--teacher", help="a teacher source (bundle name, checkpoint, ESPnet exp)")
    source.add_argument("--ofa_model", help="an OFA SSL checkpoint (.pth, config.yaml beside it)")
    source.add_argument("--mfcc", action="store_true", help="MFCCs: the floor without learning")
    p.add_argument("--frame_period", type=float, default=40.0,
                   help="ms, the rate of --ofa_model (default 40)")
    p.add_argument("--c", type=float, default=0.1, help="inverse L2 strength (default 0.1)")
    return p


@reports_errors()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    from pathlib import Path

    from espnet_ofa.recipe import probe
    from espnet_ofa.recipe.results import markdown_table

    if args.teacher:
        extract = probe.teacher_extractor(args.teacher)
    elif args.ofa_model:
        extract = probe.ofa_extractor(args.ofa_model, args.frame_period)
    else:
        extract = probe.mfcc_extractor()
    train = probe.pool_data_dir(args.train_dir, extract)
    tests = {Path(d).name: probe.pool_data_dir(d, extract) for d in args.test_dir}
    accuracy = probe.probe_accuracy(train, tests, c=args.c)
    names = list(tests)
    print("\n".join(markdown_table(["layer", *names], [
        [str(layer), *(f"{acc[n]:.3f}" for n in names)] for layer, acc in accuracy.items()])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
