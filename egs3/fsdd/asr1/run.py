#!/usr/bin/env python3
"""FSDD connected digits on a frozen OFA model, as an espnet3 ASR system.

    ./run.sh --stages all            # create_dataset train_tokenizer collect_stats train infer measure
    ./run.sh --stages all --smoke    # the same stages on a small part of FSDD (conf/smoke.yaml)
    ./run.sh --stages infer measure --frame_period 60   # decode the 40 ms model at 60 ms

The OFA model comes from ``egs2/fsdd/ssl1`` (``--ofa_model`` to use another). The logic is
espnet3's (``ASRSystem`` and its stages); this file only loads the three configs, applies
the command-line options, and runs the stages in order.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from omegaconf import OmegaConf

from espnet_ofa.integrations.espnet3_system import OFAASRSystem
from espnet3.utils.config_utils import load_config_with_defaults
from espnet3.utils.run_utils import apply_training_experiment_context, resolve_loaded_configs
from espnet3.utils.stages_utils import run_stages

STAGES = ("create_dataset", "train_tokenizer", "collect_stats", "train", "infer", "measure")
CONF = Path(__file__).resolve().parent / "conf"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", choices=STAGES + ("all",), default=["all"])
    p.add_argument("--training_config", type=Path, default=CONF / "training.yaml")
    p.add_argument("--inference_config", type=Path, default=CONF / "inference.yaml")
    p.add_argument("--metrics_config", type=Path, default=CONF / "metrics.yaml")
    p.add_argument("--smoke", action="store_true",
                   help="merge conf/smoke.yaml into the training config (a small run)")
    p.add_argument("--ofa_model", default=None, help="the OFA checkpoint (.pth)")
    p.add_argument("--frame_period", type=float, default=None,
                   help="ms; training: the period of the frozen frontend; infer alone: "
                        "decode at this period instead of the trained one")
    return p


def load_configs(args: argparse.Namespace):
    """The training, inference and metrics configs with the options applied (resolved)."""
    training = load_config_with_defaults(str(args.training_config), resolve=False)
    if args.smoke:
        training = OmegaConf.merge(training, OmegaConf.load(CONF / "smoke.yaml"))
    if args.ofa_model:
        training.ofa_model = os.path.abspath(args.ofa_model)
    inference = load_config_with_defaults(str(args.inference_config), resolve=False)
    metrics = load_config_with_defaults(str(args.metrics_config), resolve=False)
    if args.frame_period is not None:
        if "train" in args.stages or "all" in args.stages:
            training.frame_period = args.frame_period
        else:  # the frontend reads the decoding period from the environment
            os.environ["ESPNET_OFA_FRAME_PERIOD"] = str(args.frame_period)
            inference.inference_dir = f"{inference.inference_dir}_p{args.frame_period:g}"
    # The test sets live where training wrote them (the smoke run has its own).
    inference.dataset_dir = training.dataset_dir
    apply_training_experiment_context(
        training_config=training, inference_config=inference, metrics_config=metrics,
        publication_config=None, log=logging.getLogger("run"))
    resolve_loaded_configs(training, inference, metrics)
    return training, inference, metrics


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stages = list(STAGES) if "all" in args.stages else [s for s in STAGES if s in args.stages]
    training, inference, metrics = load_configs(args)
    system = OFAASRSystem(training_config=training, inference_config=inference,
                       metrics_config=metrics)
    run_stages(system=system, stages_to_run=stages, args=args)


if __name__ == "__main__":
    main()
