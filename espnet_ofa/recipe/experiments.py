"""The experiments of a downstream recipe (stages 10-15 of ``s2t.sh``) and the students
they run on (stage 10 of ``ssl.sh``: `plan_students`), planned in one place.

From the training configs and the recipe options this lists every experiment to train:

- a fixed-rate OFA config (``frontend: ofa`` without ``learnable_rate``): once per
  ``train_frame_periods`` (``<exp>_p40``; the config's own period when none are given);
- the same config on each of the two *single-period baselines* at its own period, the
  students ``ssl.sh`` pretrains at that period only: the *fixed-rate* student (average
  pooling, ``--fixed_rate_periods``; ``<exp>_fixed40``) and the *single-period CIF* student
  (the OFA model's alpha predictor, boundaries and config, its rate held at one period,
  ``--single_rate_periods``; ``<exp>_cif40``): the models OFA must match;
- the same config on the OFA model run at 20 ms, its features average-pooled to each
  ``pooled_periods`` (``<exp>_pooled40``): the pooled rival, which pays the whole SSL model
  at 20 ms (see `espnet_ofa.frontend.pooling`);
- the same config on the OFA model's teacher (``frontend: ssl_teacher``, the model a user
  would otherwise take off the shelf) at its 20 ms, its features average-pooled to each
  ``teacher_pooled_periods`` (``<exp>_teacher_pooled40``): the teacher as the pooled rival,
  once (the teacher has no pretraining seeds; `teacher_config`);
- a config that learns its period, one that samples its period per batch
  (``rate_sampling``: one model for every period), or one without the OFA frontend (e.g.
  ESPnet's default log-mel frontend, the no-SSL floor): once;
- with ``jitter_control``, for each learnt-rate run, its control (``<exp>_jitter``): the same
  config at the learnt period held fixed, with the same probe jitter. Its period is known
  only once the learnt-rate run has finished, so its options name it as
  ``{learnt_period:<exp dir>}``, which stage 11 fills in (`fill_learnt_period`);
- each SSL-based one on every pretraining seed (``--ssl_seeds N``: the students of
  `plan_students`; pretraining seed s > 0 adds ``_sslseed<s>``), and everything for every
  downstream seed (``--seeds N``: seed k > 0 adds ``_seed<k>``). Seed 0 keeps the plain
  name, so adding seeds reuses the finished seed-0 experiments.

Each experiment also gets a *statistics key*: global MVN statistics belong to the features
a downstream model sees, so stage 10 collects them once per key into ``<stats dir>/<key>``
and stage 11 normalises each model with its own. For the OFA frontend the key is the SSL
checkpoint *and* the period (``ofa_<checkpoint's experiment>_p40``): features at 80 ms are
averages over other spans than at 20 ms, and each student (OFA, baselines, every pretraining
seed) is another model. A learnt rate starts at its configured period and shares the
statistics taken there. Other frontends are keyed by their options. (An experiment
trained on cached features, `espnet_ofa.recipe.feature_cache`, uses its cache's statistics,
also one set per model and period.)

No torch or ESPnet import: the shell calls this through ``python -m espnet_ofa.bin.recipe``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from espnet_ofa.constants import INPUT_PERIOD_MS
from espnet_ofa.fileio import PathLike
from espnet_ofa.registration import TEACHER_FRONTEND_NAME

logger = logging.getLogger(__name__)

# Experiment kinds (the results summary compares them).
OFA, LEARNED, FIXED_RATE, SINGLE_RATE, OTHER = (
    "ofa", "learned", "fixed_rate", "single_rate", "other")
# Pretraining arms: the OFA student and the two single-period baselines, and the name
# suffix of each baseline's experiment (``exp/ssl_x_fixed40``, ``exp/ssl_x_cif40``).
BASELINE_SUFFIX = {FIXED_RATE: "fixed", SINGLE_RATE: "cif"}
_SEED_SUFFIX = re.compile(r"(?:_sslseed(\d+))?(?:_seed(\d+))?$")
POOLED, SAMPLED, JITTER = "pooled", "sampled", "jitter_control"
TEACHER_POOLED = "teacher_pooled"
# A placeholder in an experiment's options: the learnt period of another experiment.
_LEARNT_PERIOD = re.compile(r"\{learnt_period:([^}]+)\}")


def learnt_period_placeholder(exp_dir: PathLike) -> str:
    """The option value that stands for the period ``exp_dir``'s model learnt."""
    return "{learnt_period:" + str(exp_dir) + "}"


def learnt_period_exps(extra: str) -> List[str]:
    """The experiment directories whose learnt period ``extra`` stands for, in order."""
    return _LEARNT_PERIOD.findall(extra)


def fill_learnt_period(extra: str, period_of) -> str:
    """``extra`` with each ``{learnt_period:<exp dir>}`` replaced by ``period_of(exp dir)``
    (ms, printed with 6 significant digits)."""
    return _LEARNT_PERIOD.sub(lambda m: f"{float(period_of(m.group(1))):.6g}", extra)


def _seed_suffix(ssl_seed: int = 0, seed: int = 0) -> str:
    return (f"_sslseed{ssl_seed}" if ssl_seed else "") + (f"_seed{seed}" if seed else "")


def student_exp(ssl_exp: PathLike, arm: str = OFA, period: Optional[float] = None,
                ssl_seed: int = 0) -> Path:
    """The experiment directory ``ssl.sh`` pretrains a student of ``arm`` in.

    ``exp/ssl_x`` is the OFA student of pretraining seed 0; ``exp/ssl_x_fixed40`` the
    fixed-rate and ``exp/ssl_x_cif40`` the single-period CIF student at 40 ms;
    ``_seed<s>`` marks pretraining seed s > 0 (``exp/ssl_x_cif40_seed2``).
    """
    ssl_exp = Path(ssl_exp)
    if arm == OFA and not ssl_seed:  # the OFA student of seed 0 is the experiment itself
        return ssl_exp
    name = ssl_exp.name
    if arm != OFA:
        if arm not in BASELINE_SUFFIX or period is None:
            raise ValueError(f"a baseline student needs an arm in {sorted(BASELINE_SUFFIX)} "
                             f"and a period, got {arm!r}, {period!r}")
        name += f"_{BASELINE_SUFFIX[arm]}{float(period):g}"
    return ssl_exp.with_name(name + (f"_seed{ssl_seed}" if ssl_seed else ""))


def student_model(ofa_model: PathLike, arm: str = OFA, period: Optional[float] = None,
                  ssl_seed: int = 0) -> Path:
    """The checkpoint of a student beside the OFA checkpoint ``ofa_model`` (seed 0): the
    same file name in :func:`student_exp` of its directory."""
    ofa_model = Path(ofa_model)
    return student_exp(ofa_model.parent, arm, period, ssl_seed) / ofa_model.name


@dataclass
class Student:
    """One pretraining run of ``ssl.sh`` stage 10: ``ofa_ssl_train <extra>`` into ``exp_dir``."""

    exp_dir: str
    arm: str
    period: Optional[float]
    ssl_seed: int
    extra: List[str]

    def line(self) -> str:
        """Tab-separated: exp_dir, extra options."""
        return "\t".join([self.exp_dir, " ".join(self.extra)])


def plan_students(ssl_exp: PathLike, fixed_rate_periods: Sequence[float] = (),
                  single_rate_periods: Sequence[float] = (), ssl_seeds: int = 1) -> List[Student]:
    """The students ``ssl.sh`` pretrains from one teacher and one set of boundaries, seed-major.

    Per pretraining seed: the OFA student (the config as given), a fixed-rate student per
    ``fixed_rate_periods`` (average pooling at that period) and a single-period CIF student
    per ``single_rate_periods`` (the same predictor and losses, the rate sampler held at that
    period). Seed s > 0 runs with ``--seed s``, which also seeds the rate sampler.
    """
    if ssl_seeds < 1:
        raise ValueError(f"--ssl_seeds must be >= 1, got {ssl_seeds}")
    plan = []
    for seed in range(ssl_seeds):
        seed_opt = [f"--seed {seed}"] if seed else []
        plan.append(Student(str(student_exp(ssl_exp, OFA, None, seed)), OFA, None, seed,
                            seed_opt))
        for arm, periods in ((FIXED_RATE, fixed_rate_periods), (SINGLE_RATE, single_rate_periods)):
            for p in periods:
                p = float(p)
                held = [f"--rate_conf mode=frame_period --rate_conf low={p:g} "
                        f"--rate_conf high={p:g} --model_conf valid_frame_period={p:g}"]
                if arm == FIXED_RATE:
                    held.append(f"--student_conf compression=fixed "
                                f"--student_conf default_frame_period={p:g}")
                plan.append(Student(str(student_exp(ssl_exp, arm, p, seed)), arm, p, seed,
                                    held + seed_opt))
    return plan


def seed_of(exp_dir: PathLike) -> int:
    """The downstream seed an experiment directory was named for (0 without ``_seed<k>``)."""
    m = _SEED_SUFFIX.search(Path(exp_dir).name)
    return int(m.group(2)) if m and m.group(2) else 0


def ssl_seed_of(exp_dir: PathLike) -> int:
    """The pretraining seed of the SSL model under a downstream experiment (``_sslseed<s>``)."""
    m = _SEED_SUFFIX.search(Path(exp_dir).name)
    return int(m.group(1)) if m and m.group(1) else 0


def model_root(exp_dir: PathLike) -> str:
    """``exp_dir`` without its seed suffixes (``exp/asr_x_sslseed1_seed2`` -> ``exp/asr_x``)."""
    return str(Path(exp_dir).with_name(model_id(exp_dir)))


def model_id(exp_dir: PathLike) -> str:
    """The experiment's name without its seed suffixes: the runs of one model share it."""
    return _SEED_SUFFIX.sub("", Path(exp_dir).name)


@dataclass
class Experiment:
    """One training run: ``<task>_train --config config <extra>`` into ``exp_dir``."""

    exp_dir: str
    config: str
    kind: str
    stats_key: str
    frame_period: Optional[float] = None  # fixed-rate kinds: the period trained at
    seed: int = 0  # the downstream seed (the pretraining seed is in ssl_model's name)
    ssl_model: Optional[str] = None  # the OFA/fixed-rate checkpoint under it
    extra: List[str] = field(default_factory=list)

    def line(self) -> str:
        """Tab-separated: exp_dir, config, stats key, ssl model, extra options."""
        return "\t".join([self.exp_dir, self.config, self.stats_key, self.ssl_model or "-",
                          " ".join(self.extra)])


def read_config(path: PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} not found")
    conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(conf, dict):
        raise ValueError(f"{path}: a training config must be a YAML mapping")
    return conf


def _tag(model: str) -> str:
    p = Path(model)
    name = p.parent.name if p.suffix == ".pth" and p.parent.name else p.stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


def stats_key(conf: dict, ssl_model: Optional[str] = None,
              frame_period: Optional[float] = None) -> str:
    """Name of the statistics a config's features need (see the module docstring).

    ``ofa_<checkpoint's experiment>_p<period>`` for the OFA frontend (``frame_period``, else
    the config's; ``_lam<lam>``, ``_learned`` (from mid-range) or ``_default`` without one),
    ``<frontend>_<hash of its options>`` for any other (``default_...`` for ESPnet's log-mel).
    """
    frontend = conf.get("frontend") or "default"
    fconf = dict(conf.get("frontend_conf") or {})
    if frontend == "ofa":
        model = ssl_model or fconf.get("model")
        if not model:
            raise ValueError("frontend: ofa needs frontend_conf.model (or --ofa_model)")
        period = fconf.get("frame_period") if frame_period is None else frame_period
        if fconf.get("rate_sampling") and frame_period is None:  # every period of the range
            rate = "sampled"
        elif period is not None:
            rate = f"p{float(period):g}"
        elif fconf.get("lam") is not None:
            rate = f"lam{float(fconf['lam']):g}"
        else:  # a learnt rate from mid-range, or the model's own rate
            rate = "learned" if fconf.get("learnable_rate") else "default"
        return f"ofa_{_tag(str(model))}_{rate}"
    digest = hashlib.sha1(json.dumps(fconf, sort_keys=True, default=str).encode()).hexdigest()
    return f"{frontend}_{digest[:8]}"


def teacher_of(ofa_model: PathLike) -> str:
    """The teacher an OFA checkpoint was distilled from: ``teacher`` in the ``config.yaml``
    beside it (what ``ofa_ssl_train`` ran with). A relative path there is relative to the
    directory the SSL recipe ran in: the experiment directory without its ``output_dir``.

    Raises:
        FileNotFoundError: no config.yaml yet (the OFA model is not trained).
        ValueError: the config names no teacher.
    """
    exp = Path(ofa_model).parent
    config = exp / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(
            f"{config} not found, so the OFA model's teacher is unknown: train the OFA model "
            "first (its SSL recipe), or name the teacher with --teacher (e.g. "
            "../ssl1/exp/hubert_train_hubert_small, or HUBERT_BASE)")
    conf = read_config(config)
    teacher = conf.get("teacher")
    if not teacher:
        raise ValueError(f"{config} names no teacher; give one with --teacher")
    teacher = str(teacher)
    if "/" not in teacher or Path(teacher).is_absolute():
        return teacher  # a torchaudio bundle name, or a path as it is
    root = exp
    for _ in Path(str(conf.get("output_dir") or exp.name)).parts:
        root = root.parent
    return str(root / teacher)


def teacher_config(config: PathLike, teacher: str, out: PathLike) -> dict:
    """Write ``config`` with its OFA frontend replaced by ``frontend: ssl_teacher`` on
    ``teacher`` (the same ``fs`` and ``layer``) to ``out``; everything downstream stays.
    Returns the config written.

    A config of its own, not options over the OFA one: ESPnet merges ``--frontend_conf``
    into the config's options, and the OFA ones (``model``, ``frame_period``, ...) are not
    the teacher's.
    """
    from espnet_ofa.fileio import atomic_write

    conf = read_config(config)
    fconf = conf.get("frontend_conf") or {}
    conf["frontend"] = TEACHER_FRONTEND_NAME
    conf["frontend_conf"] = {"fs": fconf.get("fs", "16k"), "source": teacher,
                             "layer": fconf.get("layer", -1)}
    atomic_write(out, yaml.safe_dump(conf, sort_keys=False))
    return conf


def plan_experiments(
    task: str,
    configs: Sequence[PathLike],
    expdir: PathLike = "exp",
    train_frame_periods: Sequence[float] = (),
    fixed_rate_periods: Sequence[float] = (),
    ofa_model: Optional[PathLike] = None,
    seeds: int = 1,
    single_rate_periods: Sequence[float] = (),
    ssl_seeds: int = 1,
    pooled_periods: Sequence[float] = (),
    jitter_control: bool = False,
    teacher_pooled_periods: Sequence[float] = (),
    teacher: Optional[str] = None,
    teacher_pending: bool = False,
) -> List[Experiment]:
    """Every experiment of the recipe, in training order (seed-major: all models of
    downstream seed 0 and pretraining seed 0 first, so a partial run has one complete
    comparison; the jitter controls last, as they wait for their learnt-rate runs).

    ``teacher_pooled_periods`` writes each OFA config's teacher version (`teacher_config`)
    to ``<expdir>/conf/<exp name>_teacher.yaml``; ``teacher`` is its SSL model (default:
    `teacher_of` ``ofa_model``). With ``teacher_pending``, an OFA model not trained yet
    leaves the teacher's experiments out instead of failing: the recipe plans again once
    its SSL recipe has made the model."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if ssl_seeds < 1:
        raise ValueError(f"--ssl_seeds must be >= 1, got {ssl_seeds}")
    if (fixed_rate_periods or single_rate_periods or ssl_seeds > 1) and not ofa_model:
        raise ValueError("--fixed_rate_periods, --single_rate_periods and --ssl_seeds need "
                         "--ofa_model (the other students live beside the OFA checkpoint)")
    arms = _Arms(task, Path(expdir), ofa_model, [float(p) for p in train_frame_periods],
                 {FIXED_RATE: [float(p) for p in fixed_rate_periods],
                  SINGLE_RATE: [float(p) for p in single_rate_periods]},
                 [float(p) for p in pooled_periods])
    # Per pretraining seed, the experiments on that seed's students; the models without SSL
    # (OTHER) and on the teacher once, with seed 0's.
    by_ssl_seed: List[List[Experiment]] = [[] for _ in range(ssl_seeds)]
    for config in configs:
        conf = read_config(config)
        if conf.get("frontend") != "ofa":
            by_ssl_seed[0].append(Experiment(arms.root(config), str(config), OTHER,
                                             stats_key(conf)))
            continue
        for ssl_seed, base in enumerate(by_ssl_seed):
            base += arms.on_students(config, conf, ssl_seed)
        fconf = conf.get("frontend_conf") or {}
        # The teacher is pooled to the fixed periods of a config without a rate of its own.
        if teacher_pooled_periods and not (fconf.get("learnable_rate")
                                           or fconf.get("rate_sampling")):
            if teacher is None:
                teacher = _teacher_or_none(ofa_model or fconf.get("model") or "",
                                           teacher_pending)
            if teacher is not None:
                by_ssl_seed[0] += arms.on_teacher(config, teacher,
                                                  [float(p) for p in teacher_pooled_periods])
    plan = [_downstream_seed(e, seed) for seed in range(seeds)
            for base in by_ssl_seed for e in base]
    if jitter_control:
        plan += [_jitter_control(e) for e in plan if e.kind == LEARNED]
    return plan


@dataclass
class _Arms:
    """The experiments `plan_experiments` trains on each OFA config."""

    task: str
    expdir: Path
    ofa_model: Optional[PathLike]
    train_frame_periods: List[float]
    baseline_periods: Dict[str, List[float]]  # FIXED_RATE / SINGLE_RATE -> periods
    pooled_periods: List[float]

    def root(self, config: PathLike) -> str:
        return str(self.expdir / f"{self.task}_{Path(config).stem}")

    def on_students(self, config: PathLike, conf: dict, ssl_seed: int) -> List[Experiment]:
        """The downstreams on pretraining seed ``ssl_seed``'s students: the OFA model's
        (per period, learnt or sampled rate), the one-period students', the pooled rival."""
        fconf = conf.get("frontend_conf") or {}
        model = (str(student_model(self.ofa_model, OFA, None, ssl_seed)) if self.ofa_model
                 else fconf.get("model"))
        root, suffix, config = self.root(config), _seed_suffix(ssl_seed), str(config)
        override = [f"--frontend_conf model={model}"] if self.ofa_model else []
        if fconf.get("learnable_rate") or fconf.get("rate_sampling"):
            kind = LEARNED if fconf.get("learnable_rate") else SAMPLED
            return [Experiment(root + suffix, config, kind, stats_key(conf, model),
                               ssl_model=model, extra=override)]
        periods = self.train_frame_periods
        experiments = []
        for p in periods or [fconf.get("frame_period")]:
            p = None if p is None else float(p)
            experiments.append(Experiment(
                (f"{root}_p{p:g}" if periods else root) + suffix, config, OFA,
                stats_key(conf, model, p), p, ssl_model=model,
                extra=override + ([f"--frontend_conf frame_period={p:g}"] if periods else [])))
        for arm, arm_periods in self.baseline_periods.items():
            for p in arm_periods:
                student = str(student_model(self.ofa_model, arm, p, ssl_seed))
                experiments.append(Experiment(
                    f"{root}_{BASELINE_SUFFIX[arm]}{p:g}{suffix}", config, arm,
                    stats_key(conf, student, p), p, ssl_model=student,
                    extra=[f"--frontend_conf model={student}",
                           f"--frontend_conf frame_period={p:g}"]))
        for p in self.pooled_periods:
            # frame_period null: the OFA model runs at its finest period, then the pool; the
            # pooled features have statistics of their own.
            experiments.append(Experiment(
                f"{root}_pooled{p:g}{suffix}", config, POOLED,
                f"{stats_key(conf, model, INPUT_PERIOD_MS)}_pooled{p:g}", p, ssl_model=model,
                extra=override + ["--frontend_conf frame_period=null",
                                  f"--frontend_conf pooled_period={p:g}"]))
        return experiments

    def on_teacher(self, config: PathLike, teacher: str,
                   periods: List[float]) -> List[Experiment]:
        """The downstreams on ``teacher`` pooled to each period, with the config's teacher
        version written to ``<expdir>/conf/<exp name>_teacher.yaml``."""
        own = self.expdir / "conf" / f"{Path(self.root(config)).name}_teacher.yaml"
        own_conf = teacher_config(config, teacher, own)
        experiments = []
        for p in periods:
            # Statistics per (teacher, period), keyed by the frontend's options.
            pooled = {**own_conf, "frontend_conf": {**own_conf["frontend_conf"],
                                                    "pooled_period": p}}
            experiments.append(Experiment(
                f"{self.root(config)}_teacher_pooled{p:g}", str(own), TEACHER_POOLED,
                stats_key(pooled), p, extra=[f"--frontend_conf pooled_period={p:g}"]))
        return experiments


def _teacher_or_none(ofa_model: PathLike, pending: bool) -> Optional[str]:
    """`teacher_of` the OFA model; None when it is not trained yet and ``pending``."""
    try:
        return teacher_of(ofa_model)
    except FileNotFoundError:
        if not pending:
            raise
        logger.info("the OFA model is not trained yet: its teacher's experiments are planned "
                    "once it is")
        return None


def _downstream_seed(e: Experiment, seed: int) -> Experiment:
    """``e`` trained with downstream seed ``seed``."""
    return Experiment(e.exp_dir + _seed_suffix(0, seed), e.config, e.kind, e.stats_key,
                      e.frame_period, seed, e.ssl_model,
                      e.extra + ([f"--seed {seed}"] if seed else []))


def _jitter_control(e: Experiment) -> Experiment:
    """The control of learnt-rate experiment ``e``: its probes' jitter at its learnt period
    (filled in when ``e`` has trained), the rate held."""
    return Experiment(
        model_root(e.exp_dir) + "_jitter" + _seed_suffix(ssl_seed_of(e.exp_dir), e.seed),
        e.config, JITTER, e.stats_key, None, e.seed, e.ssl_model,
        e.extra + ["--frontend_conf learnable_rate=false", "--frontend_conf rate_cost=0",
                   "--frontend_conf probe_jitter=true",
                   f"--frontend_conf frame_period={learnt_period_placeholder(e.exp_dir)}"])


def first_of_each(stats_keys: Sequence[str]) -> Dict[str, int]:
    """Statistics key -> the index of the first experiment normalised with them: that one's
    config and options collect them (stage 10 runs once per key)."""
    first: Dict[str, int] = {}
    for i, key in enumerate(stats_keys):
        first.setdefault(key, i)
    return first


def stats_groups(plan: Sequence[Experiment]) -> Dict[str, Experiment]:
    """Statistics key -> the experiment whose config and options collect them (the first)."""
    return {key: plan[i] for key, i in first_of_each([e.stats_key for e in plan]).items()}
