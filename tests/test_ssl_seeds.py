"""Pretraining seeds: every student pretrained N times from one teacher (``--ssl_seeds N``),
a downstream per (pretraining seed, downstream seed), and intervals from a bootstrap over
pretraining seeds x downstream seeds x utterances."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from espnet_ofa.recipe.bootstrap import hierarchical_bootstrap, paired_bootstrap
from espnet_ofa.recipe.experiments import (
    OFA,
    OTHER,
    SINGLE_RATE,
    model_id,
    plan_experiments,
    plan_students,
    seed_of,
    ssl_seed_of,
)

OFA_MODEL = "../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth"


def test_every_arm_is_pretrained_with_every_seed():
    plan = plan_students("exp/ssl_a", fixed_rate_periods=[40], single_rate_periods=[40],
                         ssl_seeds=3)
    assert [Path(s.exp_dir).name for s in plan] == [
        "ssl_a", "ssl_a_fixed40", "ssl_a_cif40",
        "ssl_a_seed1", "ssl_a_fixed40_seed1", "ssl_a_cif40_seed1",
        "ssl_a_seed2", "ssl_a_fixed40_seed2", "ssl_a_cif40_seed2"]
    assert plan[0].extra == [] and plan[3].extra == ["--seed 1"]
    assert plan[8].extra[-1] == "--seed 2" and plan[8].ssl_seed == 2


def test_downstreams_per_pretraining_and_downstream_seed(tmp_path):
    ofa = tmp_path / "train_ofa.yaml"
    ofa.write_text(yaml.safe_dump({"frontend": "ofa", "frontend_conf": {"model": "x.pth",
                                                                        "frame_period": 40}}))
    logmel = tmp_path / "train_logmel.yaml"
    logmel.write_text(yaml.safe_dump({"frontend": "default"}))
    plan = plan_experiments("asr", [str(ofa), str(logmel)], "exp", [40], [], OFA_MODEL,
                            seeds=2, single_rate_periods=[40], ssl_seeds=2)
    names = [Path(e.exp_dir).name for e in plan]
    assert names == [
        "asr_train_ofa_p40", "asr_train_ofa_cif40", "asr_train_logmel",
        "asr_train_ofa_p40_sslseed1", "asr_train_ofa_cif40_sslseed1",
        "asr_train_ofa_p40_seed1", "asr_train_ofa_cif40_seed1", "asr_train_logmel_seed1",
        "asr_train_ofa_p40_sslseed1_seed1", "asr_train_ofa_cif40_sslseed1_seed1"]
    e = plan[names.index("asr_train_ofa_cif40_sslseed1_seed1")]
    assert e.kind == SINGLE_RATE and e.seed == 1
    assert e.ssl_model == "../ssl1/exp/ssl_train_ofa_tiny_cif40_seed1/valid.loss.best.pth"
    assert e.extra[-1] == "--seed 1" and f"--frontend_conf model={e.ssl_model}" in e.extra
    # Each pretraining seed is another model: its own statistics; downstream seeds share.
    keys = {Path(e.exp_dir).name: e.stats_key for e in plan}
    assert keys["asr_train_ofa_p40_sslseed1"] == "ofa_ssl_train_ofa_tiny_seed1_p40"
    assert keys["asr_train_ofa_p40_sslseed1_seed1"] == keys["asr_train_ofa_p40_sslseed1"]
    assert keys["asr_train_ofa_p40"] == "ofa_ssl_train_ofa_tiny_p40"
    # The log-mel floor has no pretraining: once per downstream seed.
    assert [e.kind for e in plan].count(OTHER) == 2
    assert (seed_of(names[-1]), ssl_seed_of(names[-1]), model_id(names[-1])) == (
        1, 1, "asr_train_ofa_cif40")
    assert (seed_of("a_p40_seed3"), ssl_seed_of("a_p40_seed3")) == (3, 0)
    assert plan[0].kind == OFA
    with pytest.raises(ValueError, match="need --ofa_model"):
        plan_experiments("asr", [str(ofa)], "exp", ssl_seeds=2)


# --------------------------------------------------------------------------------------------
# The hierarchical bootstrap, on synthetic per-utterance errors.

NUM_UTTS, LENGTH = 200, 10


def _model(seed_offsets, num_seeds=2, noise=0.0, rng=None):
    """Runs whose utterance u has ``base[u] + offset`` errors for each pretraining seed's
    offset, plus downstream noise (0/1 flips with probability ``noise``)."""
    rng = rng or np.random.default_rng(0)
    base = (np.arange(NUM_UTTS) % 5).astype(float)  # 0..4 errors: 20 % WER
    runs = {}
    for s, offset in enumerate(seed_offsets):
        runs[s] = {}
        for d in range(num_seeds):
            flips = (rng.random(NUM_UTTS) < noise).astype(float)
            runs[s][d] = {f"u{u:03d}": (base[u] + offset + flips[u], LENGTH)
                          for u in range(NUM_UTTS)}
    return runs


def test_interval_widens_with_the_spread_between_pretraining_seeds():
    ref = _model([1, 1, 1, 1])
    steady = hierarchical_bootstrap(ref, _model([1, 1, 1, 1], rng=np.random.default_rng(1)))
    spread = hierarchical_bootstrap(ref, _model([0, 2, 0, 2], rng=np.random.default_rng(1)))
    assert steady.diff == pytest.approx(0.0) and spread.diff == pytest.approx(0.0)
    # Same errors in every run of both: the difference is exactly 0 in every resample.
    assert (steady.low, steady.high) == (0.0, 0.0)
    # Pretraining seeds 20 points apart (offsets 0 and 2 errors in 10 words): half-width about
    # 1.96 * 10 / sqrt(4) = 9.8 points, less since 4 seeds give few distinct means.
    assert spread.low < -5.0 and spread.high > 5.0 and not spread.significant
    assert spread.high - spread.low > 10.0 * (steady.high - steady.low + 1e-9)
    assert str(spread.coverage) == "4 x 2 x 200"


def test_interval_matches_the_spread_of_the_seed_means():
    """With no utterance or downstream noise the bootstrap is one over the pretraining seeds:
    its percentile interval is that of the mean of 8 seed values resampled."""
    offsets = [0.0, 1.0, 0.5, 2.0, 1.5, 0.0, 1.0, 2.5]
    b = _model(offsets, num_seeds=1)
    d = hierarchical_bootstrap(_model([0.0], num_seeds=1), b, num_samples=4000)
    seed_wer = 100.0 * np.array(offsets) / LENGTH
    assert d.diff == pytest.approx(seed_wer.mean())
    expected_half = 1.96 * seed_wer.std() / np.sqrt(len(offsets))
    assert (d.high - d.low) / 2 == pytest.approx(expected_half, rel=0.2)


def test_downstream_seeds_and_utterances_count_too():
    ref = _model([1, 1], num_seeds=3)
    quiet = hierarchical_bootstrap(ref, _model([1, 1], num_seeds=3, noise=0.0))
    noisy = hierarchical_bootstrap(ref, _model([1, 1], num_seeds=3, noise=0.5))
    assert noisy.high - noisy.low > quiet.high - quiet.low
    # One run per model: the paired bootstrap over utterances, the same interval up to
    # resampling noise.
    rng = np.random.default_rng(3)
    a = {0: {0: {f"u{u}": (float(rng.integers(0, 3)), 5.0) for u in range(300)}}}
    b = {0: {0: {u: (float(rng.integers(0, 3)), 5.0) for u in a[0][0]}}}
    h, p = hierarchical_bootstrap(a, b), paired_bootstrap(a[0][0], b[0][0])
    assert h.diff == pytest.approx(p.diff)
    assert h.high - h.low == pytest.approx(p.high - p.low, rel=0.15)
    assert str(h.coverage) == "1 x 1 x 300"


def test_bad_run_grids_are_refused():
    ragged = _model([1, 1], num_seeds=2)
    del ragged[1][1]
    with pytest.raises(ValueError, match="different numbers of downstream seeds"):
        hierarchical_bootstrap(_model([1]), ragged)
    other = _model([1])
    other[0][0] = {"x": (0, 1)}
    with pytest.raises(ValueError, match="scored different utterances"):
        hierarchical_bootstrap(_model([1]), other)


def _row(exp, period, per_utt, **extra):
    errors = sum(e for e, _ in per_utt.values())
    value = 100.0 * errors / sum(n for _, n in per_utt.values())
    return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": period,
            "train_frame_period": period, "learned": False, "metric": "WER", "value": value,
            "WER": value, "num_utts": len(per_utt), "achieved_period": period,
            "gmacs_per_second": 1.0, "rtf": 0.1, "frontend": "ofa", "compression": "cif",
            "ssl_period_range": [20.0, 90.0], "per_utt": per_utt, **extra}


def test_results_say_what_the_intervals_cover():
    from espnet_ofa.recipe.results import comparison

    rows = []
    for ssl_seed, offset in enumerate([0, 2, 1]):
        for seed in range(2):
            suffix = (f"_sslseed{ssl_seed}" if ssl_seed else "") + (f"_seed{seed}" if seed else "")
            ofa = _model([offset], num_seeds=1)[0][0]
            cif = _model([offset + 0.5], num_seeds=1)[0][0]
            rows.append(_row(f"exp/asr_p40{suffix}", 40.0, ofa))
            rows.append(_row(f"exp/asr_cif40{suffix}", 40.0, cif,
                             ssl_period_range=[40.0, 40.0]))
    rows.append(_row("exp/asr_logmel", 40.0, _model([3], num_seeds=1)[0][0], frontend="default",
                     compression=None, rate="native", train_frame_period=None))
    text = "\n".join(comparison(rows))
    assert "OFA 3 × 2 × 200" in text and "single-period CIF 3 × 2 × 200" in text
    assert "log-mel 1 × 1 × 200 (no pretraining)" in text
    assert "do not cover the pretraining run" not in text
    assert "mean ± standard deviation over the runs (up to 6)" in text
    # OFA: mean over 3 x 2 runs of 20 + 10 * offset (0, 2, 1) = 30 %, sd over the 6 runs.
    line = next(ln for ln in text.splitlines() if ln.startswith("|test|40|"))
    cells = line.split("|")
    assert cells[3] == "30.00 ± 8.94" and cells[4] == "35.00 ± 8.94"
    assert cells[5].startswith("+5.00 [")  # the CIF student: half an error more per utterance


def test_seeds_without_a_baseline_show_ofa_alone():
    """Downstream seeds of the OFA grid and nothing to set it against: the table has the
    OFA models' mean and spread per period, and no empty baseline columns."""
    from espnet_ofa.recipe.results import comparison

    rows = [_row(f"exp/asr_p{period:g}" + (f"_seed{seed}" if seed else ""), period,
                 _model([seed], num_seeds=1)[0][0])
            for period in (40.0, 80.0) for seed in range(2)]
    lines = comparison(rows)
    assert lines[0] == ("## Summary: the OFA models over seeds, each model at the period it "
                        "was trained at")
    header = next(ln for ln in lines if ln.startswith("|dataset|"))
    assert header == "|dataset|period (ms)|OFA WER|"
    assert next(ln for ln in lines if ln.startswith("|test|40|")) == "|test|40|25.00 ± 7.07|"
    assert not any("fixed-rate" in ln or "Relative" in ln for ln in lines)
