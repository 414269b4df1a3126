"""``ofa_ssl``: OFA distillation pretraining as an ESPnet task.

Subclassing `AbsTask` gives the OFA model ESPnet's whole training engine: collect-stats,
``--ngpu``, DDP over GPUs and nodes, ``--resume``, ``--use_amp``, logging, plots and
checkpoint averaging. Only the model and its data are defined here.
"""

from __future__ import annotations

import argparse
import inspect
import math
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.torch_utils.initialize import initialize
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none

from espnet_ofa.compression import RateSampler
from espnet_ofa.models.espnet_model import OFADistillModel
from espnet_ofa.models.student import OFAStudent, build_student
from espnet_ofa.models.teacher_init import init_cnn_from_teacher, init_transformer_from_teacher


class OFASSLTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = []
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("OFA pretraining")
        group.add_argument("--student_preset", type=str, default="distilhubert",
                           help="student size preset: distilhubert or tiny")
        group.add_argument("--student_conf", action=NestedDictAction, default={},
                           help="overrides of the preset (espnet_ofa.models.student.StudentConfig)")
        group.add_argument("--teacher", type=str_or_none, default=None,
                           help="teacher source: a torchaudio bundle name (HUBERT_BASE, ...), a "
                                "fairseq .pt, a Hugging Face dir, a torchaudio state dict, or an "
                                "ESPnet hubert_train config.yaml")
        group.add_argument("--teacher_conf", action=NestedDictAction, default={},
                           help="keyword arguments of espnet_ofa.teachers.load_teacher")
        group.add_argument("--init_cnn_from_teacher", type=str2bool, default=True,
                           help="start the student's CNN from the teacher's (same shapes needed)")
        group.add_argument("--init_transformer_from_teacher", type=str2bool, default=False,
                           help="start the student's Transformer from the teacher's first layers "
                                "(DistilHuBERT's initialisation; same sizes needed)")
        group.add_argument("--rate_conf", action=NestedDictAction,
                           default=dict(mode="frame_period"),
                           help="per-batch rate sampling (espnet_ofa.compression.RateSampler): "
                                "mode (frame_period|lam|lam_from_period|lam_beyond|lam_both), "
                                "low, high (each mode's usual range when left out; 20-90 ms for "
                                "frame_period), beta, beyond_prob, seed (default: --seed). The "
                                "student's frame_period_range is derived from it")
        group.add_argument("--model_conf", action=NestedDictAction, default={},
                           help="OFADistillModel options: target_rate, valid_frame_period, "
                                "cos_weight, alpha_l1_weight, boundary_weight")
        group.add_argument("--init", type=lambda x: str_or_none(x.lower()), default=None,
                           help="parameter initialisation (ESPnet's initialize)")
        # ESPnet's AbsTask reads these from the task.
        parser.add_argument("--use_preprocessor", type=str2bool, default=False)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]], Tuple[List[str], Dict[str, torch.Tensor]]
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        return None

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("boundaries",)

    @classmethod
    def build_rate_sampler(cls, args: argparse.Namespace) -> RateSampler:
        """The per-batch rate sampler of ``--rate_conf`` (seeded by ``--seed`` by default)."""
        conf = dict(args.rate_conf or {})
        conf.setdefault("seed", args.seed)
        known = set(inspect.signature(RateSampler).parameters)
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ValueError(f"rate_conf has unknown keys {unknown}; the keys are {sorted(known)}")
        try:
            return RateSampler(**conf)
        except ValueError as err:
            raise ValueError(f"rate_conf: {err}") from None

    @classmethod
    def build_student(cls, args: argparse.Namespace, rate_sampler: RateSampler,
                      target_dim: Optional[int] = None) -> OFAStudent:
        """The student of ``--student_preset``/``--student_conf``, whose frame_period_range is
        the one ``rate_sampler`` trains (see `RateSampler.frame_period_range`).

        The range is written once, in rate_conf: a student_conf.frame_period_range that
        disagrees would make the checkpoint claim periods it was never trained at. A range
        that a previous run measured (with its ``mean_alpha``; the config.yaml of a trained
        lam-mode student) is accepted and dropped: this run is measured again at its end.
        """
        conf = dict(args.student_conf)
        trained = tuple(float(v) for v in rate_sampler.frame_period_range)
        given = conf.get("frame_period_range")
        measured = conf.pop("mean_alpha", None)
        if measured is not None and given is not None and _same_range(
                given, rate_sampler.period_range(measured)):
            given = None
        if given is not None and not _same_range(given, trained):
            raise ValueError(
                f"student_conf.frame_period_range {list(given)} disagrees with rate_conf, "
                f"which trains over [{trained[0]:g}, {trained[1]:g}] ms; the range is derived "
                "from rate_conf: remove student_conf.frame_period_range (or change rate_conf)"
            )
        conf["frame_period_range"] = trained
        if target_dim is not None:
            conf.setdefault("target_dim", target_dim)
        return build_student(args.student_preset, **conf)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> OFADistillModel:
        from espnet_ofa.teachers import load_teacher  # heavy; only when training

        if args.teacher is None:
            raise ValueError("--teacher is required: a bundle name, a checkpoint path or a "
                             "config.yaml (see espnet_ofa.teachers.load_teacher)")
        rate_sampler = cls.build_rate_sampler(args)
        student = cls.build_student(args, rate_sampler)
        teacher = load_teacher(args.teacher, layers=student.config.target_layers,
                               **args.teacher_conf)
        if student.config.target_dim != teacher.hidden_size:
            student = cls.build_student(args, rate_sampler, target_dim=teacher.hidden_size)
        if args.init is not None:
            initialize(student, args.init)
        if args.init_cnn_from_teacher:
            init_cnn_from_teacher(student, teacher)
        if args.init_transformer_from_teacher:
            init_transformer_from_teacher(student, teacher)
        # The full student config goes into config.yaml, so that the student can be
        # rebuilt later without the teacher (espnet_ofa.models.pretrained).
        args.student_conf = student.config.to_dict()
        return OFADistillModel(student, teacher, rate_sampler, **args.model_conf)


def _same_range(given, trained) -> bool:
    try:
        low, high = (float(v) for v in given)
    except (TypeError, ValueError):
        return False
    return all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
               for a, b in zip((low, high), trained))

