"""Alpha losses of OFA students against pseudo boundaries, on one data dir.

    python -m espnet_ofa.bin.alpha_eval --data_dir dump/raw/dev \\
        --model plain=exp/ssl_train_ofa_tiny/valid.loss.best.pth \\
        --model dp=exp_dp/ssl_train_ofa_tiny/valid.loss.best.pth \\
        --boundaries plain=exp/segments_teacher/dev/boundaries \\
        --boundaries dp=exp_dp/segments_teacher/dev/boundaries

Prints a markdown table: one row per (model, boundaries) pair with the utterance means of
the frame-level L1 to the pseudo alpha and of the boundary loss, the two losses that
supervise the rate predictor in pretraining. Each model against every boundary file shows
whether a lower loss means a better predictor or only easier targets.
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional

from espnet_ofa.bin import reports_errors


def named_path(value: str) -> tuple:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got '{value}'")
    return name, path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_ofa.bin.alpha_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True, help="Kaldi data dir (wav.scp) at 16 kHz")
    p.add_argument("--model", type=named_path, action="append", required=True,
                   help="NAME=PATH of an OFA SSL checkpoint (.pth, config.yaml beside it); repeat")
    p.add_argument("--boundaries", type=named_path, action="append", required=True,
                   help="NAME=PATH of a boundary file of the same data dir; repeat")
    return p


@reports_errors()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    from espnet_ofa.models.pretrained import load_student
    from espnet_ofa.recipe.results import markdown_table
    from espnet_ofa.segmentation.evaluate import alpha_fit

    boundaries: Dict[str, str] = dict(args.boundaries)
    body = []
    for name, path in args.model:
        fits = alpha_fit(load_student(path), args.data_dir, boundaries)
        body += [[name, b, str(f.num_utts), f"{f.l1:.4f}", f"{f.boundary:.4f}"]
                 for b, f in fits.items()]
    print("\n".join(markdown_table(
        ["model", "boundaries", "utterances", "alpha L1", "boundary loss"], body)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
