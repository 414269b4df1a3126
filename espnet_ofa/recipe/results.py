"""RESULTS.md (ESPnet style) and a plot of metric vs frame period and compute.

Reads the ``result.json`` files that scoring wrote under each experiment directory
(``<exp>/<decode tag>/<rate>/<test set>/result.json``): one table row per test set and
rate, with the metric, the requested and achieved frame period, the MACs per second of
audio (frontend + encoder) and the real-time factor of decoding.

With baselines (fixed-rate and single-period CIF students, a model without the OFA frontend
such as ESPnet's log-mel) or several seeds, RESULTS.md starts with a comparison per test set
and period: the OFA model, each student pretrained at that period only and the relative
difference, the log-mel floor, each difference against the OFA model with a 95% interval of
a hierarchical bootstrap over pretraining seeds x downstream seeds x utterances
(:mod:`espnet_ofa.recipe.bootstrap`; the text says how many of each), and the learnt rate;
with several runs every value is the mean +- the standard deviation over them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_ofa.data.datadir import atomic_write_text
from espnet_ofa.fileio import PathLike
from espnet_ofa.recipe.bootstrap import Difference, Runs, hierarchical_bootstrap
from espnet_ofa.recipe.scoring import higher_is_better
from espnet_ofa.recipe.experiments import (
    FIXED_RATE,
    JITTER,
    LEARNED,
    OFA,
    OTHER,
    POOLED,
    SAMPLED,
    SINGLE_RATE,
    TEACHER_POOLED,
    model_id,
    seed_of,
    ssl_seed_of,
)


# Extra columns per metric: (key in result.json, header, format)
COLUMNS = {
    "WER": [("WER", "WER (%)", "{:.2f}"), ("CER", "CER (%)", "{:.2f}"),
            ("SER", "SER (%)", "{:.1f}")],
    "PER": [("PER", "PER (%)", "{:.2f}"), ("SER", "SER (%)", "{:.1f}")],
    "accuracy": [("accuracy", "Acc (%)", "{:.2f}"), ("WER", "WER (%)", "{:.2f}")],
    "BLEU": [("BLEU", "BLEU", "{:.2f}"), ("chrF", "chrF", "{:.2f}")],
}


def collect(exp_dirs: Sequence[PathLike]) -> List[dict]:
    """Every result.json under ``exp_dirs``, with ``exp`` and ``decode`` (tag) added."""
    rows = []
    for exp in exp_dirs:
        exp = Path(exp)
        for f in sorted(exp.glob("*/*/*/result.json")):
            r = json.loads(f.read_text(encoding="utf-8"))
            r.setdefault("rate", f.parent.parent.name)
            r.setdefault("test_set", f.parent.name)
            r["exp"] = str(exp)
            r["decode"] = f.parent.parent.parent.name
            rows.append(r)
    return rows


def kind(r: dict) -> str:
    """What a result row's model is: OFA, learnt rate, a student pretrained at one period
    (fixed-rate pooling, or CIF: its SSL model's period range is one point), or other (no
    OFA frontend: a log-mel floor)."""
    if r.get("learned"):
        return LEARNED
    if r.get("variant") in (POOLED, SAMPLED, JITTER, TEACHER_POOLED):
        return r["variant"]
    if r.get("frontend", "ofa") != "ofa" or r.get("rate") == "native":
        return OTHER
    if r.get("compression") == "fixed":
        return FIXED_RATE
    trained = r.get("ssl_period_range")
    return SINGLE_RATE if trained and float(trained[0]) == float(trained[1]) else OFA


def other_label(r: dict) -> str:
    frontend = r.get("frontend") or "default"
    return "log-mel" if frontend == "default" else frontend


def run_of(r: dict) -> Tuple[int, int]:
    """(pretraining seed, downstream seed) of a result row's experiment."""
    return ssl_seed_of(r["exp"]), seed_of(r["exp"])


@dataclass
class Model:
    """The runs (seeds) of one model decoded at one rate on one test set."""

    model: str  # experiment name without the seed suffix
    kind: str
    test_set: str
    rate: str
    rows: List[dict]

    @property
    def values(self) -> List[float]:
        return [r["value"] for r in self.rows]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def period(self) -> Optional[float]:
        return self.rows[0].get("frame_period")

    def cell(self) -> str:
        if len(self.rows) == 1:
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} ± {float(np.std(self.values, ddof=1)):.2f}"

    def runs(self) -> Optional[Runs]:
        """Per-utterance errors by pretraining seed and downstream seed (None without them)."""
        if not all(r.get("per_utt") for r in self.rows):
            return None
        runs: Dict[int, Dict[int, dict]] = {}
        for r in self.rows:
            ssl_seed, seed = run_of(r)
            runs.setdefault(ssl_seed, {})[seed] = r["per_utt"]
        return runs

    @property
    def num_runs(self) -> Tuple[int, List[int]]:
        """(pretraining seeds, downstream seeds of each) of this model's runs."""
        per_ssl_seed = Counter(ssl_seed_of(r["exp"]) for r in self.rows)
        return len(per_ssl_seed), list(per_ssl_seed.values())


def models(rows: List[dict]) -> List[Model]:
    """Rows grouped over seeds: one Model per (model, decode tag, rate, test set)."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        # Each run of a jitter control sits at its own learnt-rate run's period: over seeds
        # the controls are one model, as the learnt rates are (rate "learned").
        rate = JITTER if kind(r) == JITTER else r.get("rate")
        key = (model_id(r["exp"]), r["decode"], rate, r["test_set"])
        groups.setdefault(key, []).append(r)
    return [Model(k[0], kind(g[0]), k[3], str(k[2]),
                  sorted(g, key=run_of))
            for k, g in groups.items()]


def has_comparison(rows: List[dict]) -> bool:
    """Whether there is something to compare the OFA models with: baselines or seeds."""
    return any(kind(r) in (FIXED_RATE, SINGLE_RATE, OTHER) for r in rows) or any(
        seed_of(r["exp"]) or ssl_seed_of(r["exp"]) for r in rows)


def compare(a: Model, b: Model, metric: str) -> Optional[Difference]:
    """b - a with its hierarchical bootstrap interval (None without per-utterance errors,
    e.g. BLEU). For an accuracy the difference is of the accuracy (the error difference
    negated)."""
    ra, rb = a.runs(), b.runs()
    if ra is None or rb is None:
        return None
    try:
        d = hierarchical_bootstrap(ra, rb)
    except ValueError as err:  # e.g. different test utterances: no paired comparison
        logging.getLogger(__name__).warning("%s vs %s on %s: no interval (%s)", a.model,
                                            b.model, a.test_set, err)
        return None
    if metric == "accuracy":
        rel = -d.diff / a.mean if a.mean else float("nan")
        return Difference(-d.diff, -d.high, -d.low, rel, d.num_utts, d.coverage)
    return d


def _diff_cell(d: Optional[Difference]) -> str:
    if d is None:
        return "-"
    return f"{d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _rel_cell(d: Optional[Difference]) -> str:
    return "-" if d is None or d.relative != d.relative else f"{100.0 * d.relative:+.0f}%"


# The single-period baselines of the comparison: kind -> (column name, what it is).
BASELINES = {
    FIXED_RATE: ("fixed-rate", "a student pretrained at that period only by average pooling "
                               "(no alpha predictor)"),
    SINGLE_RATE: ("single-period CIF", "a student pretrained at that period only with the OFA "
                                       "model's alpha predictor, boundaries and config"),
}


def coverage_note(ms: Sequence[Model], labels: Dict[str, str]) -> str:
    """What the intervals resample, per kind of model (pretraining seeds x downstream seeds
    x utterances), and what they leave out."""
    def counts(values) -> str:
        return "/".join(str(v) for v in sorted(set(values)))

    if not any(r.get("per_utt") for m in ms for r in m.rows):
        return "No intervals: the metric has no per-utterance errors (BLEU is a corpus score)."
    parts, pretraining_runs = [], [1]
    for k, label in labels.items():
        mine = [m for m in ms if m.kind == k]
        if not mine:
            continue
        if k != OTHER:
            pretraining_runs += [m.num_runs[0] for m in mine]
        parts.append(f"{label} {counts(m.num_runs[0] for m in mine)} × "
                     f"{counts(n for m in mine for n in m.num_runs[1])} × "
                     f"{counts(len(m.rows[0].get('per_utt') or {}) for m in mine)}"
                     + (" (no pretraining)" if k == OTHER else ""))
    note = ("Intervals: 95% percentiles of a hierarchical bootstrap that resamples, for each "
            "model, its pretraining seeds and, within each, its downstream seeds, and the "
            "test utterances (the same draw for both models); they cover pretraining seeds "
            "× downstream seeds × utterances, here " + ", ".join(parts) + ".")
    if max(pretraining_runs) == 1:
        note += (" With one pretraining run per student they do not cover the pretraining "
                 "run: another pretraining seed may land outside them (--ssl_seeds N).")
    return note


def _ofa_at_own_period(ms: List[Model]) -> Dict[tuple, Model]:
    """(test set, period) -> the OFA downstream trained and decoded at that period."""
    return {(m.test_set, m.period): m for m in ms if m.kind == OFA
            and m.period is not None and m.rows[0].get("train_frame_period") == m.period}


def comparison(rows: List[dict]) -> List[str]:
    """The comparison tables (Markdown lines): OFA vs the single-period students and the
    floor per period, and the learnt rates against the OFA model nearest to their period."""
    metric = rows[0].get("metric", "WER")
    ms = models(rows)
    ofa = _ofa_at_own_period(ms)
    baselines = {k: {(m.test_set, m.period): m for m in ms if m.kind == k} for k in BASELINES}
    floors = {m.test_set: m for m in ms if m.kind == OTHER}
    learnt = [m for m in ms if m.kind == LEARNED]
    if not ofa:  # e.g. decoded only at periods no OFA model was trained at
        return []
    shown = [k for k in BASELINES if baselines[k]]
    runs = max(len(m.rows) for m in ms)
    floor_name = other_label(next(iter(floors.values())).rows[0]) if floors else "floor"
    labels = {OFA: "OFA", **{k: BASELINES[k][0] for k in shown}, LEARNED: "learnt rate",
              OTHER: floor_name}
    # Seeds alone (no baseline, no floor) still get the table: OFA's mean and spread per
    # period, and the learnt rates against the grid.
    title = ("OFA against the baselines" if shown or floors
             else "the OFA models over seeds" if runs > 1 else "the OFA models")
    lines = [f"## Summary: {title}, each model at the period it was trained at", ""]
    defined = ["*OFA* = the downstream model on the one OFA model, trained and decoded at "
               "that period"]
    defined += [f"*{BASELINES[k][0]}* = the same downstream on {BASELINES[k][1]} (same "
                "teacher, data and budget)" for k in shown]
    if floors:
        defined.append(f"*{floor_name}* = the same downstream on {floor_name} features "
                       "(no SSL)")
    lines.append(
        f"{metric} per test set and frame period: " + "; ".join(defined)
        + ". Differences are against the OFA model in percentage points. "
        + coverage_note(ms, labels)
        + (f" Values are the mean ± standard deviation over the runs (up to {runs})."
           if runs > 1 else "")
        + (" Relative = difference / OFA." if shown else ""))
    lines.append("")
    header = ["dataset", "period (ms)", f"OFA {metric}"]
    for k in shown:
        name = BASELINES[k][0]
        header += [f"{name} {metric}", f"{name} − OFA [95% CI]", "relative"]
    if floors:
        header += [f"{floor_name} {metric}", f"{floor_name} − OFA [95% CI]"]
    body = []
    for dset, period in sorted(ofa):
        o = ofa[(dset, period)]
        cells = [dset, f"{period:g}", o.cell()]
        for k in shown:
            b = baselines[k].get((dset, period))
            d = compare(o, b, metric) if b else None
            cells += [b.cell() if b else "-", _diff_cell(d), _rel_cell(d)]
        if floors:
            fl = floors.get(dset)
            dl = compare(o, fl, metric) if fl else None
            cells += [fl.cell() if fl else "-", _diff_cell(dl)]
        body.append(cells)
    return lines + markdown_table(header, body) + [""] + _learnt_vs_grid(learnt, ofa, metric)


def _learnt_vs_grid(learnt: List[Model], ofa: Dict[tuple, Model], metric: str) -> List[str]:
    """The learnt rates against the OFA model trained at the nearest period and the best
    of the grid."""
    if not learnt:
        return []
    body = []
    for m in sorted(learnt, key=lambda m: (m.test_set, m.model)):
        cands = [(abs(p - (m.period or 0.0)), p) for d, p in ofa if d == m.test_set]
        if not cands:
            continue
        near = ofa[(m.test_set, min(cands)[1])]
        best = _best(metric, [ofa[(d, p)] for d, p in ofa if d == m.test_set])
        periods = [r.get("frame_period") for r in m.rows]
        body.append([m.test_set, " / ".join(f"{p:.1f}" for p in periods if p is not None),
                     m.cell(), f"{near.period:g} ms", near.cell(),
                     _diff_cell(compare(near, m, metric)), f"{best.period:g} ms: {best.cell()}",
                     _diff_cell(compare(best, m, metric))])
    return ["Learnt rates, against the OFA model trained at the nearest period and the best "
            "one of the grid (what a grid search over the periods would pick, on the test set "
            "itself):", ""] + markdown_table(
        ["dataset", "learnt period (ms)", metric, "OFA model", f"OFA {metric}",
         "learnt − OFA [95% CI]", "best of the grid", "learnt − best [95% CI]"], body) + [""]


def learnt_rates(rows: List[dict]) -> List[str]:
    """The learnt rates against the OFA grid, as a section of their own: for a run
    without baselines or seeds, where `comparison` (which holds this table otherwise) is
    not written; empty without a learnt rate or an OFA model at its own period."""
    metric = rows[0].get("metric", "WER")
    ms = models(rows)
    ofa = _ofa_at_own_period(ms)
    learnt = [m for m in ms if m.kind == LEARNED]
    if not (learnt and ofa):
        return []
    return (["## Learnt rates against the OFA models trained at one period", "",
             f"Learnt − OFA in points. {_interval_note([*learnt, *ofa.values()])}", ""]
            + _learnt_vs_grid(learnt, ofa, metric))


def _best(metric: str, ms: Sequence[Model]) -> Model:
    """The model with the best mean ``metric`` (the highest accuracy or BLEU, else the
    lowest error rate)."""
    return (max if higher_is_better(metric) else min)(ms, key=lambda m: m.mean)


def _gmacs(m: Model) -> str:
    values = [r["gmacs_per_second"] for r in m.rows if r.get("gmacs_per_second") is not None]
    return f"{float(np.mean(values)):.4f}" if values else "-"


# How `coverage_note` names each kind of model, in the order it lists them.
KIND_LABELS = {OFA: "OFA", POOLED: "pooled rival", TEACHER_POOLED: "pooled teacher",
               SAMPLED: "sampled period", LEARNED: "learnt rate", JITTER: "jitter control",
               SINGLE_RATE: "single-period CIF", FIXED_RATE: "fixed-rate", OTHER: "no SSL"}


def _interval_note(ms: List[Model]) -> str:
    """What the intervals of a rival comparison cover (`coverage_note` over its models)."""
    return coverage_note(ms, KIND_LABELS)


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> List[str]:
    """The lines of a Markdown table (header, separator, one line per row of cells)."""
    return (["|" + "|".join(header) + "|", "|" + "|".join(["---"] * len(header)) + "|"]
            + ["|" + "|".join(cells) + "|" for cells in body])


def rival_comparisons(rows: List[dict]) -> List[str]:
    """Markdown tables of the OFA models against the pooled rival (accuracy and compute of
    the whole system), the sampled-period model against the per-period ones, and the learnt
    rates against their jitter controls; empty where these were not trained."""
    metric = rows[0].get("metric", "WER")
    ms = models(rows)
    ofa = _ofa_at_own_period(ms)
    return (_pooled_rival_section(ms, ofa, metric) + _sampled_section(ms, ofa, metric)
            + _jitter_section(ms, metric))


def _pooled_rival_section(ms: List[Model], ofa: Dict[tuple, Model], metric: str) -> List[str]:
    pooled = {(m.test_set, m.period): m for m in ms if m.kind == POOLED}
    teacher = {(m.test_set, m.period): m for m in ms if m.kind == TEACHER_POOLED}
    if not (pooled or teacher):
        return []
    lines = ["## The pooled rival: the OFA model at 20 ms, its features average-pooled", "",
             f"{metric} and compute at each output period: *OFA* runs the OFA model at the "
             "period itself; *pooled* runs it at 20 ms and average-pools its features to "
             "the period before the same downstream (no special pretraining)"
             + ("; *teacher* does the same with the OFA model's teacher, the SSL model "
                "one would take off the shelf" if teacher else "") + ". GMACs/s = "
             "multiply-accumulates per second of audio of the whole encoder side (SSL "
             "model + pooling + downstream encoder): the pooled rival pays the SSL model "
             f"at 20 ms. Rival − OFA in points. "
             f"{_interval_note([*pooled.values(), *teacher.values(), *ofa.values()])}",
             ""]

    def rival(o: Optional[Model], m: Optional[Model]) -> List[str]:
        if m is None:
            return ["-"] * 4
        d = compare(o, m, metric) if o else None
        return [m.cell(), _gmacs(m), _diff_cell(d), _rel_cell(d)]

    body = []
    for key in sorted(set(pooled) | set(teacher)):
        o = ofa.get(key)
        cells = [key[0], f"{key[1]:g}", o.cell() if o else "-", _gmacs(o) if o else "-"]
        cells += rival(o, pooled.get(key)) if pooled else []
        cells += rival(o, teacher.get(key)) if teacher else []
        body.append(cells)
    header = ["dataset", "period (ms)", f"OFA {metric}", "OFA GMACs/s"]
    for name, rivals in (("pooled", pooled), ("teacher", teacher)):
        if rivals:
            header += [f"{name} {metric}", f"{name} GMACs/s", f"{name} − OFA [95% CI]",
                       "relative"]
    return lines + markdown_table(header, body) + [""]


def _sampled_section(ms: List[Model], ofa: Dict[tuple, Model], metric: str) -> List[str]:
    sampled = sorted((m for m in ms if m.kind == SAMPLED), key=lambda m: (m.test_set, m.period))
    if not sampled:
        return []
    lines = ["## One model for every period: the period sampled per training batch", "",
             f"{metric} of the one downstream trained at periods drawn per batch "
             "(`rate_sampling`), decoded at each period, against the downstream trained "
             f"at that period only. Sampled − per-period in points. "
             f"{_interval_note(sampled + list(ofa.values()))}", ""]
    several = len({m.model for m in sampled}) > 1  # e.g. uniform and log-uniform draws
    body = []
    for m in sorted(sampled, key=lambda m: (m.test_set, m.period, m.model)):
        o = ofa.get((m.test_set, m.period))
        d = compare(o, m, metric) if o else None
        body.append([m.test_set, f"{m.period:g}", o.cell() if o else "-", m.cell(),
                     _diff_cell(d), _rel_cell(d)] + ([m.model] if several else []))
    return lines + markdown_table(
        ["dataset", "period (ms)", f"per-period {metric}", f"sampled {metric}",
         "sampled − per-period [95% CI]", "relative"] + (["model"] if several else []),
        body) + [""]


def _jitter_section(ms: List[Model], metric: str) -> List[str]:
    learnt = {(m.model, m.test_set): m for m in ms if m.kind == LEARNED}
    controls = sorted((m for m in ms if m.kind == JITTER), key=lambda m: (m.test_set, m.model))
    pairs = [(learnt[(m.model.removesuffix("_jitter"), m.test_set)], m) for m in controls
             if (m.model.removesuffix("_jitter"), m.test_set) in learnt]
    if not pairs:
        return []
    lines = ["## The learnt rate against its jitter control", "",
             "The control trains the same downstream at the learnt period held fixed, with "
             "the learnt rate's two probes (±10 % period jitter) and their mean loss: what "
             "the jitter gains without the rate. Control − learnt in points, over all runs "
             "and, *per run*, each control against the learnt-rate run whose period it holds "
             "(same pretraining and downstream seed). "
             f"{_interval_note([m for pair in pairs for m in pair])}", ""]
    body = []
    for m, c in pairs:
        periods = " / ".join(f"{r['frame_period']:.1f}" for r in m.rows
                             if r.get("frame_period") is not None)
        body.append([m.test_set, periods, m.cell(), c.cell(), _diff_cell(compare(m, c, metric)),
                     _per_run_differences(m, c)])
    return lines + markdown_table(["dataset", "learnt period (ms)", f"learnt {metric}",
                                   f"control {metric}", "control − learnt [95% CI]",
                                   "per run"], body) + [""]


def _per_run_differences(a: Model, b: Model) -> str:
    """b − a for each run of b whose (pretraining seed, downstream seed) a also has."""
    runs_a, runs_b = ({run_of(r): r["value"] for r in m.rows} for m in (a, b))
    diffs = [runs_b[k] - runs_a[k] for k in sorted(runs_b) if k in runs_a]
    return " / ".join(f"{d:+.2f}" for d in diffs) or "-"


def paired_comparison(a_dirs: Sequence[PathLike], b_dirs: Sequence[PathLike],
                      labels: Tuple[str, str] = ("a", "b")) -> List[str]:
    """Markdown lines comparing two sets of experiments decoded on the same test sets at the
    same rates (e.g. one OFA model per front, each with its downstreams at 40 and 80 ms):
    per (test set, rate) both metrics and b − a with its hierarchical bootstrap interval.
    Each side must hold one model per (test set, rate); its seeds (``_seedN``,
    ``_sslseedN`` experiments) are that model's runs."""
    sides = []
    for dirs, label in zip((a_dirs, b_dirs), labels):
        rows = collect(dirs)
        if not rows:
            raise FileNotFoundError(f"{label}: no scored decodings (*/*/*/result.json) under "
                                    f"{', '.join(map(str, dirs))}; run stages 12-13 first")
        keyed: Dict[Tuple[str, str], Model] = {}
        for m in models(rows):
            key = (m.test_set, period_label(m.rows[0]))
            if key in keyed:
                raise ValueError(f"{label}: {keyed[key].model} and {m.model} are both decoded "
                                 f"on {key[0]} at {key[1]}; give one experiment (and its "
                                 "seeds) per test set and rate on each side")
            keyed[key] = m
        sides.append(keyed)
    a, b = sides
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError(f"{labels[0]} and {labels[1]} share no (test set, rate): "
                         f"{sorted(a)} vs {sorted(b)}")
    metric = a[shared[0]].rows[0].get("metric", "WER")
    ms = [side[k] for side in sides for k in shared]
    note = coverage_note(ms, KIND_LABELS)
    lines = [f"{metric} of *{labels[1]}* against *{labels[0]}*: {labels[1]} − {labels[0]} in "
             f"points. {note}", ""]
    header = ["dataset", "period (ms)", f"{labels[0]} {metric}", f"{labels[1]} {metric}",
              f"{labels[1]} − {labels[0]} [95% CI]", "relative"]
    body = []
    for key in shared:
        d = compare(a[key], b[key], metric)
        body.append([key[0], key[1], a[key].cell(), b[key].cell(), _diff_cell(d), _rel_cell(d)])
    return lines + markdown_table(header, body) + [""]


def _sort_key(r: dict):
    period = r.get("frame_period")
    return (r["exp"], r["decode"], r["test_set"], bool(r.get("learned")),
            period if period is not None else 0.0)


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _git_describe() -> str:
    """The code that made the results: the commit, and ``-dirty`` for uncommitted changes."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    import torch

    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    return {
        "date": datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y"),
        "python version": platform.python_version(),
        "espnet version": f"espnet {ver('espnet')}",
        "espnet_ofa version": f"espnet_ofa {ver('espnet_ofa')}",
        "pytorch version": f"pytorch {torch.__version__}",
        "git describe": _git_describe(),
        "device": device,
    }


def period_label(r: dict) -> str:
    p = r.get("frame_period")
    if kind(r) == OTHER:
        return f"native ({p:.1f})" if p is not None else "native"
    if r.get("learned"):
        return f"learned ({p:.1f})" if p is not None else "learned"
    return "-" if p is None else f"{p:g}"


def is_matched(r: dict) -> bool:
    """A fixed-rate (OFA or fixed-rate student) model decoded at the period it was trained at."""
    trained, period = r.get("train_frame_period"), r.get("frame_period")
    return (not r.get("learned") and trained is not None and period is not None
            and abs(float(trained) - float(period)) < 1e-6)


def per_rate_models(rows: List[dict]) -> bool:
    """Whether the rows hold one model per frame period (``--train_frame_periods``)."""
    return len({r.get("train_frame_period") for r in rows if kind(r) == OFA} - {None}) > 1


def _table(rows: List[dict], with_exp: bool = False) -> List[str]:
    metric = rows[0].get("metric", "WER")
    cols = COLUMNS.get(metric, [(metric, metric, "{:.2f}")])
    header = ["dataset", "period (ms)", "achieved (ms)", "Snt", *[c[1] for c in cols],
              "GMACs/s", "RTF", *(["experiment"] if with_exp else [])]
    body = []
    for r in rows:
        cells = [r["test_set"], period_label(r), _fmt(r.get("achieved_period"), "{:.1f}"),
                 str(r.get("num_utts", "-")),
                 *[_fmt(r.get(key), fmt) for key, _, fmt in cols],
                 _fmt(r.get("gmacs_per_second"), "{:.4f}"), _fmt(r.get("rtf"), "{:.4f}"),
                 *([Path(r["exp"]).name] if with_exp else [])]
        body.append(cells)
    return markdown_table(header, body)


SMOKE_BANNER = ("> **Smoke run: tiny configs, not a result.** These numbers only show that "
                "every stage ran (`--smoke true`); they say nothing about the method.")


def render(rows: List[dict], title: Optional[str] = None, notes: Optional[str] = None,
           env: Optional[Dict[str, str]] = None, smoke: bool = False) -> str:
    """The Markdown text of RESULTS.md (``smoke``: a banner says it is not a result)."""
    lines = ["<!-- Generated by espnet_ofa.recipe.results (stage 13) -->",
             f"# {title or 'RESULTS'}", ""]
    if smoke:
        lines += [SMOKE_BANNER, ""]
    if notes:
        lines += [notes.strip(), ""]
    lines += ["## Environments"]
    for k, v in (env or environment()).items():
        lines.append(f"- {k}: `{v}`")
    lines.append("")
    lines += [
        "Columns: *period* = the frame period asked of the OFA frontend (ms; *learned* = the "
        "period the model learnt in training); *achieved* = the average period of the "
        "frames the encoder actually saw; *GMACs/s* = multiply-accumulates of frontend + "
        "encoder per second of audio (the part that scales with the period); *RTF* = "
        "decoding time / audio duration on the device above.", ""]
    rows = sorted(rows, key=_sort_key)
    lines += comparison(rows) if has_comparison(rows) else learnt_rates(rows)
    lines += rival_comparisons(rows)
    if per_rate_models(rows) or has_comparison(rows):
        summary = sorted((r for r in rows if is_matched(r) or kind(r) in (LEARNED, OTHER)),
                         key=lambda r: (r["test_set"], kind(r) == OTHER, bool(r.get("learned")),
                                        r.get("frame_period") or 0.0, r["exp"]))
        lines += ["## Summary: a model per frame period (trained and decoded at it), learnt "
                  "rates and baselines", ""]
        lines += _table(summary, with_exp=True) + [""]
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault((r["exp"], r["decode"]), []).append(r)
    for (exp, decode), group in groups.items():
        metric = group[0].get("metric", "WER")
        trained = group[0].get("train_frame_period")
        k = kind(group[0])
        how = ("learns its frame period" if k == LEARNED else
               f"on the OFA model at 20 ms, its features average-pooled to {trained:g} ms"
               if k == POOLED else
               f"on the OFA model's teacher at 20 ms, its features average-pooled to "
               f"{trained:g} ms" if k == TEACHER_POOLED else
               "trained at a frame period drawn per batch, decoded at each" if k == SAMPLED else
               f"trained at {trained:g} ms with the learnt rate's probe jitter (its control)"
               if k == JITTER else
               f"{other_label(group[0])} features (no OFA frontend)" if k == OTHER else
               f"on a fixed-rate student, trained at {trained:g} ms" if k == FIXED_RATE else
               f"on a single-period CIF student, trained at {trained:g} ms"
               if k == SINGLE_RATE else
               f"trained at {trained:g} ms" if trained is not None else "")
        lines += [f"## {exp}", f"### {metric}: {decode}", ""]
        if how:
            lines += [f"Model {how}.", ""]
        lines += _table(group) + [""]
    return "\n".join(lines)


def _switch_exp(rows: List[dict]) -> Optional[str]:
    """The fixed-rate experiment whose run-time period switching is plotted (nearest 40 ms,
    among those decoded at more than one period); None when there is none."""
    fixed = {r["exp"]: r["train_frame_period"] for r in rows
             if kind(r) == OFA and r.get("train_frame_period") is not None
             and not seed_of(r["exp"]) and not ssl_seed_of(r["exp"])}
    decoded = {e: {r["frame_period"] for r in rows if r["exp"] == e} for e in fixed}
    fixed = {e: p for e, p in fixed.items() if len(decoded[e]) > 1}
    return min(fixed, key=lambda e: abs(fixed[e] - 40.0)) if fixed else None


# The plot's series of one kind of model each (label, marker style), after the OFA lines.
KIND_SERIES = (
    (FIXED_RATE, "fixed-rate students",
     dict(marker="s", markersize=8, linestyle=":", markeredgecolor="black")),
    (SINGLE_RATE, "single-period CIF students",
     dict(marker="D", markersize=7, linestyle="--", markeredgecolor="black")),
    (POOLED, "pooled rival (OFA at 20 ms, pooled)",
     dict(marker="^", markersize=8, linestyle="-.", markeredgecolor="black")),
    (TEACHER_POOLED, "pooled teacher (teacher at 20 ms, pooled)",
     dict(marker="v", markersize=8, linestyle="-.", markeredgecolor="black")),
    (SAMPLED, "one downstream, period sampled in training",
     dict(marker="h", markersize=6, linestyle=(0, (1, 1)))),
    (JITTER, "jitter control",
     dict(marker="P", markersize=11, linestyle="none", markeredgecolor="black")),
    (LEARNED, "learnt rate",
     dict(marker="*", markersize=15, linestyle="none", markeredgecolor="black")),
)


# Several sampled-period models in one plot (e.g. uniform and log-uniform draws): a marker
# and dash pattern each, so that their lines can be told apart in one colour.
SAMPLED_VARIANTS = (
    dict(marker="h", linestyle=(0, (1, 1))),
    dict(marker="p", markersize=7, linestyle=(0, (5, 2))),
    dict(marker="8", linestyle=(0, (3, 1, 1, 1))),
)


def plot_results(rows: List[dict], out: PathLike) -> None:
    """Metric vs achieved frame period (left) and vs GMACs/s (right).

    Per test set (one colour, or one per series when there is one test set): with one OFA
    model per period, those models at their own periods (solid, error bars = standard
    deviation over seeds) and one of them switched to every period at run time (dashed);
    then a series per kind of baseline
    (`KIND_SERIES`); a model without the OFA frontend as a horizontal line (the floor).
    Otherwise one line per OFA experiment.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    metric = rows[0].get("metric", "WER") if rows else "WER"
    unit = "" if metric == "BLEU" else " (%)"
    rows = sorted(rows, key=_sort_key)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    dsets = sorted({r["test_set"] for r in rows})
    for k, dset in enumerate(dsets):
        for j, (label, group, style) in enumerate(_plot_series(rows, dset)):
            # One test set: a colour per series; several: a colour per test set (the
            # series told apart by marker and dashes).
            color = colors[(j if len(dsets) == 1 else k) % len(colors)]
            _draw(axes, f"{dset}: {label}", group, {"color": color, **style})
        floor = "0.3" if len(dsets) == 1 else colors[k % len(colors)]
        for m in models(rows):
            if m.test_set == dset and m.kind == OTHER:
                for ax in axes:
                    ax.axhline(m.mean, color=floor, linestyle="-.", linewidth=1, alpha=0.8)
    axes[0].set_xlabel("frame period (ms, achieved)")
    axes[1].set_xlabel("GMACs per second of audio (frontend + encoder)")
    for ax in axes:
        ax.set_ylabel(f"{metric}{unit}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6.5)
    title = f"{metric} vs frame period and compute"
    if any(len(m.rows) > 1 for m in models(rows)):
        title += " (error bars: standard deviation over the runs)"
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)


def _plot_series(rows: List[dict], dset: str) -> List[Tuple[str, list, dict]]:
    """(label, models, style) of each line of test set ``dset``."""
    mine = [m for m in models(rows) if m.test_set == dset]
    series = []
    if per_rate_models(rows):
        series.append(("OFA, a downstream per period",
                       [m for m in mine if m.kind == OFA
                        and m.rows[0].get("train_frame_period") == m.period],
                       dict(marker="o")))
        switch = _switch_exp(rows)
        if switch is not None:
            trained = next(r["train_frame_period"] for r in rows if r["exp"] == switch)
            series.append((f"OFA, one downstream (trained at {trained:g} ms), period set at "
                           "run time", [m for m in mine if m.model == Path(switch).name],
                           dict(marker=".", linestyle="--", alpha=0.5)))
    else:
        for exp in sorted({m.model for m in mine if m.kind == OFA}):
            series.append((exp, [m for m in mine if m.model == exp], dict(marker="o")))
    for kind, label, style in KIND_SERIES:
        group = [m for m in mine if m.kind == kind]
        names = sorted({m.model for m in group})
        if kind == SAMPLED and len(names) > 1:  # each one model decoded at every period
            series += [(f"{label}: {name}", [m for m in group if m.model == name],
                        {**style, **SAMPLED_VARIANTS[i % len(SAMPLED_VARIANTS)]})
                       for i, name in enumerate(names)]
        else:
            series.append((label, group, style))
    for m in mine:
        if m.kind == OTHER:
            series.append((f"{other_label(m.rows[0])} (no SSL)", [m],
                           dict(marker="x", markersize=9, linestyle="none")))
    return series


def _draw(axes, label: str, group: list, style: dict) -> None:
    """One series against the achieved period (left) and the GMACs/s (right): the mean
    over its runs, with the standard deviation as error bars where it has several."""
    for ax, key in ((axes[0], "achieved_period"), (axes[1], "gmacs_per_second")):
        pts = []
        for m in group:
            xs = [r[key] for r in m.rows if r.get(key) is not None]
            if xs:
                sd = float(np.std(m.values, ddof=1)) if len(m.rows) > 1 else 0.0
                pts.append((float(np.mean(xs)), m.mean, sd))
        if pts:
            xs, ys, sds = zip(*sorted(pts))
            if any(sds):
                ax.errorbar(xs, ys, yerr=sds, label=label, capsize=3, **style)
            else:
                ax.plot(xs, ys, label=label, **style)


def write_results(exp_dirs: Sequence[PathLike], out: PathLike, plot: Optional[PathLike] = None,
                  title: Optional[str] = None, notes: Optional[PathLike] = None,
                  smoke: bool = False) -> List[dict]:
    """Write RESULTS.md (and the plot) from the scored decodings of ``exp_dirs``; ``smoke``
    labels a ``--smoke true`` run as such."""
    rows = collect(exp_dirs)
    if not rows:
        raise FileNotFoundError(
            f"no scored decodings (*/*/*/result.json) under {', '.join(map(str, exp_dirs))}; "
            "run stages 12-13 first")
    text = Path(notes).read_text(encoding="utf-8") if notes else None
    atomic_write_text(out, render(rows, title, text, smoke=smoke) + "\n")
    if plot:
        plot_results(rows, plot)
    return rows
