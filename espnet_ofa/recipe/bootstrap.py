"""Paired bootstrap over utterances: how sure is a difference in error rate between two models?

Both models decoded the same test set; each utterance has an error count and a reference
length. Resampling the *utterances* (with replacement, the same draw for both models) and
recomputing the corpus error rate of each gives the distribution of the difference that
comes from which utterances happened to be in the test set (Koehn 2004; Bisani and Ney
2004). It does not include the variation between training runs: the recipes report that
as the spread over seeds, and average each utterance's errors over the seeds first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Difference:
    """``b - a`` in percentage points of the error rate, with its bootstrap interval."""

    diff: float
    low: float
    high: float
    relative: float  # (b - a) / a; nan when a is 0
    num_utts: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0.0 or self.high < 0.0


def average_errors(runs: Sequence[Mapping[str, Sequence[float]]]) -> Dict[str, Tuple[float, float]]:
    """Per utterance, the errors averaged over runs (seeds) and the reference length.

    ``runs``: one ``{utt: [errors, length]}`` per run; they must cover the same utterances.
    """
    if not runs:
        raise ValueError("no runs to average")
    utts = set(runs[0])
    for r in runs[1:]:
        if set(r) != utts:
            raise ValueError("the runs scored different utterances; decode the same test set")
    return {u: (float(np.mean([r[u][0] for r in runs])), float(runs[0][u][1])) for u in utts}


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
