"""The experiments of a downstream recipe (stages 10-15 of ``s2t.sh``), planned in one place.

From the training configs and the recipe options this lists every experiment to train:

- a fixed-rate OFA config (``frontend: ofa`` without ``learnable_rate``): once per
  ``train_frame_periods`` (``<exp>_p40``; the config's own period when none are given);
- the same config on each *fixed-rate student* (``compression: fixed``, pretrained by
  ``ssl.sh --fixed_rate_periods``) at its own period (``<exp>_fixed40``): the baseline that
  OFA must match;
- a config that learns its period, or one without the OFA frontend (e.g. ESPnet's default
  log-mel frontend, the no-SSL floor): once;
- each of these for every seed (``--seeds N``: seed 0 keeps the plain name, seed k > 0
  gets ``_seed<k>``, so adding seeds reuses the finished seed-0 experiments).

Each experiment also gets a *statistics key*: global MVN statistics belong to a feature
extractor (an OFA checkpoint, or a frontend and its options), not to the recipe, so stage 10
collects them once per key into ``<stats dir>/<key>`` and stage 11 normalises each model
with its own. The OFA models at different periods share their checkpoint's statistics: the
period only changes how the same features are averaged. (An experiment trained on cached
features, `espnet_ofa.recipe.feature_cache`, uses its cache's statistics instead: one set
per model and period.)

No torch or ESPnet import: the shell calls this through ``python -m espnet_ofa.bin.recipe``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import yaml

PathLike = Union[str, os.PathLike]

# Experiment kinds (the results summary compares them).
OFA, LEARNED, FIXED_RATE, OTHER = "ofa", "learned", "fixed_rate", "other"
_SEED_SUFFIX = re.compile(r"_seed(\d+)$")


def fixed_rate_exp(ssl_exp: PathLike, period: float) -> Path:
    """The experiment directory of the fixed-rate student at ``period`` ms that ``ssl.sh``
    trains beside the OFA experiment ``ssl_exp`` (``exp/ssl_x`` -> ``exp/ssl_x_fixed40``)."""
    ssl_exp = Path(ssl_exp)
    return ssl_exp.with_name(f"{ssl_exp.name}_fixed{period:g}")


def fixed_rate_model(ofa_model: PathLike, period: float) -> Path:
    """The checkpoint of the fixed-rate student matching the OFA checkpoint ``ofa_model``
    (the same file name in :func:`fixed_rate_exp` of its directory)."""
    ofa_model = Path(ofa_model)
    return fixed_rate_exp(ofa_model.parent, period) / ofa_model.name


def seed_of(exp_dir: PathLike) -> int:
    """The seed an experiment directory was named for (0 without a ``_seed<k>`` suffix)."""
    m = _SEED_SUFFIX.search(Path(exp_dir).name)
    return int(m.group(1)) if m else 0


def model_id(exp_dir: PathLike) -> str:
    """The experiment's name without its seed suffix: the runs of one model share it."""
    return _SEED_SUFFIX.sub("", Path(exp_dir).name)


@dataclass
class Experiment:
    """One training run: ``<task>_train --config config <extra>`` into ``exp_dir``."""

    exp_dir: str
    config: str
    kind: str
    stats_key: str
    frame_period: Optional[float] = None  # fixed-rate kinds: the period trained at
    seed: int = 0
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


def stats_key(conf: dict, ssl_model: Optional[str] = None) -> str:
    """Name of the statistics a config's features need (see the module docstring).

    ``ofa_<checkpoint's experiment>`` for the OFA frontend, ``<frontend>_<hash of its
    options>`` for any other (``default_...`` for ESPnet's log-mel).
    """
    frontend = conf.get("frontend") or "default"
    fconf = dict(conf.get("frontend_conf") or {})
    if frontend == "ofa":
        model = ssl_model or fconf.get("model")
        if not model:
            raise ValueError("frontend: ofa needs frontend_conf.model (or --ofa_model)")
        return f"ofa_{_tag(str(model))}"
    digest = hashlib.sha1(json.dumps(fconf, sort_keys=True, default=str).encode()).hexdigest()
    return f"{frontend}_{digest[:8]}"


def plan_experiments(
    task: str,
    configs: Sequence[PathLike],
    expdir: PathLike = "exp",
    train_frame_periods: Sequence[float] = (),
    fixed_rate_periods: Sequence[float] = (),
    ofa_model: Optional[PathLike] = None,
    seeds: int = 1,
) -> List[Experiment]:
    """Every experiment of the recipe, in training order (seed-major: all models of seed 0
    first, so a partial run has one complete comparison)."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if fixed_rate_periods and not ofa_model:
        raise ValueError("--fixed_rate_periods needs --ofa_model (the fixed-rate students "
                         "live beside the OFA checkpoint)")
    base: List[Experiment] = []
    for config in configs:
        conf = read_config(config)
        name = f"{task}_{Path(config).stem}"
        root = str(Path(expdir) / name)
        fconf = conf.get("frontend_conf") or {}
        if conf.get("frontend") != "ofa":
            base.append(Experiment(root, str(config), OTHER, stats_key(conf)))
            continue
        model = str(ofa_model) if ofa_model else fconf.get("model")
        key = stats_key(conf, model)
        override = [f"--frontend_conf model={ofa_model}"] if ofa_model else []
        if fconf.get("learnable_rate"):
            base.append(Experiment(root, str(config), LEARNED, key, ssl_model=model,
                                   extra=override))
            continue
        periods = list(train_frame_periods)
        for p in periods or [fconf.get("frame_period")]:
            p = None if p is None else float(p)
            base.append(Experiment(
                f"{root}_p{p:g}" if periods else root, str(config), OFA, key, p,
                ssl_model=model,
                extra=override + ([f"--frontend_conf frame_period={p:g}"] if periods else [])))
        for p in fixed_rate_periods:
            student = str(fixed_rate_model(ofa_model, float(p)))
            base.append(Experiment(
                f"{root}_fixed{float(p):g}", str(config), FIXED_RATE, stats_key(conf, student),
                float(p), ssl_model=student,
                extra=[f"--frontend_conf model={student}", f"--frontend_conf frame_period={p:g}"]))
    plan = []
    for seed in range(seeds):
        for e in base:
            plan.append(Experiment(
                e.exp_dir + (f"_seed{seed}" if seed else ""), e.config, e.kind, e.stats_key,
                e.frame_period, seed, e.ssl_model,
                e.extra + ([f"--seed {seed}"] if seed else [])))
    return plan


def stats_groups(plan: Sequence[Experiment]) -> Dict[str, Experiment]:
    """Statistics key -> the experiment whose config and options collect them (the first)."""
    groups: Dict[str, Experiment] = {}
    for e in plan:
        groups.setdefault(e.stats_key, e)
    return groups
