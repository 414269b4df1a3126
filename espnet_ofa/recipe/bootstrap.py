"""How sure is a difference in error rate between two models? Bootstrap intervals.

Both models decoded the same test set; each utterance has an error count and a reference
length. Resampling the *utterances* (with replacement, the same draw for both models) and
recomputing the corpus error rate of each gives the distribution of the difference that
comes from which utterances happened to be in the test set (`paired_bootstrap`; Koehn 2004;
Bisani and Ney 2004). That alone says nothing about training runs: another pretraining seed
or downstream seed gives another model.

`hierarchical_bootstrap` covers the runs too. Each model is a grid of runs, pretraining
seeds x downstream seeds (one downstream per pair). One resample draws, for each model on
its own (their runs are separate trainings), pretraining seeds with replacement and, within
each drawn pretraining seed, downstream seeds with replacement; then utterances with
replacement, the same draw for both models (they share the test set). The model's error
rate in that resample is the mean over its drawn runs of the corpus error rate on the drawn
utterances. Resampling each level of the hierarchy (Davison and Hinkley 1997, sec. 3.8) makes
the interval widen with the spread between pretraining runs, between downstream runs and
between utterances; with one run per model it is the paired bootstrap over utterances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Coverage:
    """What a hierarchical interval resampled: pretraining seeds, downstream seeds (per
    pretraining seed) and utterances, of each model."""

    ssl_seeds: Tuple[int, int]
    seeds: Tuple[int, int]
    num_utts: int

    def __str__(self) -> str:
        def pair(n: Tuple[int, int]) -> str:
            return f"{n[0]}" if n[0] == n[1] else f"{n[0]}/{n[1]}"
        return f"{pair(self.ssl_seeds)} x {pair(self.seeds)} x {self.num_utts}"


@dataclass(frozen=True)
class Difference:
    """``b - a`` in percentage points of the error rate, with its bootstrap interval."""

    diff: float
    low: float
    high: float
    relative: float  # (b - a) / a; nan when a is 0
    num_utts: int
    coverage: Optional[Coverage] = None  # what the interval resampled (hierarchical only)

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0.0 or self.high < 0.0


def paired_bootstrap(
    a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
    num_samples: int = 2000, confidence: float = 0.95, seed: int = 0,
) -> Difference:
    """Error rate of ``b`` minus that of ``a`` (in %), with a percentile interval.

    Args:
        a, b: ``{utt: (errors, reference length)}`` of the two models on one test set.
        num_samples: bootstrap resamples of the utterances.
        confidence: of the two-sided percentile interval.
    """
    if set(a) != set(b):
        raise ValueError(f"the two models scored different utterances ({len(a)} vs {len(b)}); "
                         "compare decodings of the same test set")
    if not a:
        raise ValueError("no utterances to compare")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    utts = sorted(a)
    err_a = np.array([a[u][0] for u in utts], dtype=np.float64)
    err_b = np.array([b[u][0] for u in utts], dtype=np.float64)
    length = np.array([a[u][1] for u in utts], dtype=np.float64)
    if np.any(length != np.array([b[u][1] for u in utts], dtype=np.float64)):
        raise ValueError("the two models have different reference lengths; same references?")
    if length.sum() <= 0:
        raise ValueError("the references are empty")
    rate_a, rate_b = 100.0 * err_a.sum() / length.sum(), 100.0 * err_b.sum() / length.sum()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(utts), size=(num_samples, len(utts)))
    n = length[idx].sum(axis=1)
    n[n == 0] = 1.0  # a resample of only empty references: no errors either
    diffs = 100.0 * (err_b[idx].sum(axis=1) - err_a[idx].sum(axis=1)) / n
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    relative = (rate_b - rate_a) / rate_a if rate_a > 0 else float("nan")
    return Difference(rate_b - rate_a, float(low), float(high), relative, len(utts))


# Runs of one model: per pretraining seed, per downstream seed, {utt: (errors, length)}.
Runs = Mapping[int, Mapping[int, Mapping[str, Sequence[float]]]]


def _grid(runs: Runs, utts: List[str], name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(S, D, U) errors and (U,) lengths of a model's runs (a full seed grid)."""
    if not runs or not all(runs.values()):
        raise ValueError(f"model {name} has no runs")
    num_seeds = {len(by_seed) for by_seed in runs.values()}
    if len(num_seeds) != 1:
        raise ValueError(
            f"model {name}: the pretraining seeds have different numbers of downstream seeds "
            f"({sorted(num_seeds)}); train every downstream seed on every pretraining seed")
    errors = np.zeros((len(runs), num_seeds.pop(), len(utts)))
    length = None
    for i, ssl_seed in enumerate(sorted(runs)):
        for j, seed in enumerate(sorted(runs[ssl_seed])):
            run = runs[ssl_seed][seed]
            if set(run) != set(utts):
                raise ValueError(
                    f"model {name} (pretraining seed {ssl_seed}, seed {seed}) scored different "
                    f"utterances ({len(run)} vs {len(utts)}); decode the same test set")
            errors[i, j] = [run[u][0] for u in utts]
            lens = np.array([run[u][1] for u in utts], dtype=np.float64)
            if length is not None and np.any(lens != length):
                raise ValueError(f"model {name}: runs have different reference lengths")
            length = lens
    return errors, length


def _run_weights(num_ssl: int, num_ds: int, num_samples: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(num_samples, S * D) weights of each run in a two-level resample (summing to 1)."""
    draws = np.zeros((num_samples, num_ssl, num_ds))
    ssl = rng.integers(0, num_ssl, size=(num_samples, num_ssl))
    ds = rng.integers(0, num_ds, size=(num_samples, num_ssl, num_ds))
    rows = np.broadcast_to(np.arange(num_samples)[:, None, None], ds.shape)
    np.add.at(draws, (rows, np.broadcast_to(ssl[:, :, None], ds.shape), ds), 1.0)
    return draws.reshape(num_samples, -1) / (num_ssl * num_ds)


def hierarchical_bootstrap(
    a: Runs, b: Runs, num_samples: int = 2000, confidence: float = 0.95, seed: int = 0,
) -> Difference:
    """Error rate of ``b`` minus that of ``a`` (in %, each the mean over its runs), with a
    percentile interval over pretraining seeds x downstream seeds x utterances (see the
    module docstring); its ``coverage`` says how many of each were resampled.

    Args:
        a, b: ``{pretraining seed: {downstream seed: {utt: (errors, length)}}}``; a model
            without pretraining (a log-mel floor) has one pretraining "seed".
        num_samples: bootstrap resamples.
        confidence: of the two-sided percentile interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    first = next(iter(next(iter(a.values())).values()), None) if a else None
    if not first:
        raise ValueError("no utterances to compare")
    utts = sorted(first)
    err_a, len_a = _grid(a, utts, "a")
    err_b, len_b = _grid(b, utts, "b")
    if np.any(len_a != len_b):
        raise ValueError("the two models have different reference lengths; same references?")
    if len_a.sum() <= 0:
        raise ValueError("the references are empty")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(utts), np.full(len(utts), 1.0 / len(utts)), size=num_samples)
    n = counts @ len_a
    n[n == 0] = 1.0  # a resample of only empty references: no errors either

    def rates(errors: np.ndarray) -> np.ndarray:
        s, d, u = errors.shape
        per_utt = _run_weights(s, d, num_samples, rng) @ errors.reshape(s * d, u)
        return 100.0 * (counts * per_utt).sum(axis=1) / n

    diffs = rates(err_b) - rates(err_a)
    rate_a = float(100.0 * err_a.mean(axis=(0, 1)).sum() / len_a.sum())
    rate_b = float(100.0 * err_b.mean(axis=(0, 1)).sum() / len_a.sum())
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    relative = (rate_b - rate_a) / rate_a if rate_a > 0 else float("nan")
    coverage = Coverage((err_a.shape[0], err_b.shape[0]), (err_a.shape[1], err_b.shape[1]),
                        len(utts))
    return Difference(rate_b - rate_a, float(low), float(high), relative, len(utts), coverage)
