"""Unit tests of the recipe's experiment plan (baselines, seeds, statistics per frontend),
the paired bootstrap, and the comparison at the top of RESULTS.md."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from espnet_ofa.bin.recipe import main as recipe_main
from espnet_ofa.recipe.bootstrap import paired_bootstrap
from espnet_ofa.recipe.experiments import (
    FIXED_RATE,
    LEARNED,
    OFA,
    OTHER,
    model_id,
    plan_experiments,
    seed_of,
    stats_groups,
    student_exp,
    student_model,
)
from espnet_ofa.recipe.results import comparison, render
from espnet_ofa.recipe.scoring import score

OFA_MODEL = "../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth"


def _configs(tmp_path: Path):
    ofa = {"frontend": "ofa", "frontend_conf": {"model": "x.pth", "frame_period": 40}}
    learned = {"frontend": "ofa",
               "frontend_conf": {"model": "x.pth", "frame_period": 40, "learnable_rate": True}}
    logmel = {"frontend": "default", "frontend_conf": {"n_mels": 80, "hop_length": 320}}
    paths = []
    for name, conf in (("train_learned.yaml", learned), ("train_ofa.yaml", ofa),
                       ("train_logmel.yaml", logmel)):
        (tmp_path / name).write_text(yaml.safe_dump(conf))
        paths.append(str(tmp_path / name))
    return paths


def test_plan_has_baselines_seeds_and_stats_per_frontend(tmp_path):
    plan = plan_experiments("asr", _configs(tmp_path), "exp", [20, 40], [40, 80], OFA_MODEL,
                            seeds=2)
    names = [Path(e.exp_dir).name for e in plan]
    assert names[:6] == ["asr_train_learned", "asr_train_ofa_p20", "asr_train_ofa_p40",
                         "asr_train_ofa_fixed40", "asr_train_ofa_fixed80", "asr_train_logmel"]
    assert names[6:] == [f"{n}_seed1" for n in names[:6]]  # seed 0 keeps the plain name
    kinds = {Path(e.exp_dir).name: e.kind for e in plan}
    assert kinds["asr_train_learned"] == LEARNED and kinds["asr_train_ofa_p20"] == OFA
    assert kinds["asr_train_ofa_fixed80"] == FIXED_RATE and kinds["asr_train_logmel"] == OTHER
    fixed80 = plan[4]
    assert fixed80.ssl_model == "../ssl1/exp/ssl_train_ofa_tiny_fixed80/valid.loss.best.pth"
    assert f"--frontend_conf model={fixed80.ssl_model}" in fixed80.extra
    assert "--frontend_conf frame_period=80" in fixed80.extra and fixed80.frame_period == 80
    assert plan[1].extra == [f"--frontend_conf model={OFA_MODEL}", "--frontend_conf frame_period=20"]
    assert plan[7].extra[-1] == "--seed 1" and plan[7].seed == 1
    # Statistics: one per SSL model and period; the learnt rate shares its starting period's.
    groups = stats_groups(plan)
    assert list(groups) == ["ofa_ssl_train_ofa_tiny_p40", "ofa_ssl_train_ofa_tiny_p20",
                            "ofa_ssl_train_ofa_tiny_fixed40_p40",
                            "ofa_ssl_train_ofa_tiny_fixed80_p80", plan[5].stats_key]
    assert plan[5].stats_key.startswith("default_") and plan[5].ssl_model is None
    assert groups["ofa_ssl_train_ofa_tiny_p40"].exp_dir == "exp/asr_train_learned"


def test_plan_without_periods_and_errors(tmp_path):
    cfgs = _configs(tmp_path)
    plan = plan_experiments("asr", cfgs[1:2], "exp")
    assert [(e.exp_dir, e.extra, e.stats_key) for e in plan] == [
        ("exp/asr_train_ofa", [], "ofa_x_p40")]  # the config's own model and period
    with pytest.raises(ValueError, match="need --ofa_model"):
        plan_experiments("asr", cfgs, "exp", fixed_rate_periods=[40])
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        plan_experiments("asr", cfgs, "exp", seeds=0)
    with pytest.raises(FileNotFoundError, match="nope.yaml not found"):
        plan_experiments("asr", [str(tmp_path / "nope.yaml")], "exp")


def test_plan_cli_prints_tab_separated_lines(tmp_path, capsys):
    cfgs = _configs(tmp_path)
    assert recipe_main(["plan", "--task", "asr", "--configs", cfgs[1], "--ofa_model", OFA_MODEL,
                        "--fixed_rate_periods", "40"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[:3] for ln in lines] == [
        ["exp/asr_train_ofa", cfgs[1], "ofa_ssl_train_ofa_tiny_p40"],
        ["exp/asr_train_ofa_fixed40", cfgs[1], "ofa_ssl_train_ofa_tiny_fixed40_p40"]]
    assert recipe_main(["plan", "--task", "asr", "--configs", "missing.yaml"]) == 1
    assert "missing.yaml not found" in capsys.readouterr().err


def test_fixed_rate_names_and_seeds():
    assert student_exp("exp/ssl_a", FIXED_RATE, 40.0) == Path("exp/ssl_a_fixed40")
    assert student_model("exp/ssl_a/m.pth", FIXED_RATE, 62.5) == Path("exp/ssl_a_fixed62.5/m.pth")
    assert seed_of("exp/asr_p40_seed2") == 2 and seed_of("exp/asr_p40") == 0
    assert model_id("exp/asr_p40_seed2") == "asr_p40" == model_id("exp/asr_p40")


def test_per_utterance_errors_in_scores():
    r = score("asr", {"a": "one two three", "b": "four"}, {"a": "one tree", "b": "four five"})
    assert r["per_utt"] == {"a": [2, 3], "b": [1, 1]}
    assert r["WER"] == pytest.approx(100 * 3 / 4)
    r = score("slu", {"a": "billing one", "b": "sales two"}, {"a": "billing one", "b": "x two"})
    assert r["per_utt"] == {"a": [0, 1], "b": [1, 1]}
    assert "per_utt" not in score("st", {"a": "eins"}, {"a": "eins"})


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    n = 200
    a = {f"u{i}": (int(rng.integers(0, 2)), 4) for i in range(n)}
    same = paired_bootstrap(a, a)
    assert same.diff == 0 and same.low == 0 and same.high == 0 and not same.significant
    worse = {u: (e + 1, length) for u, (e, length) in a.items()}  # one more error everywhere
    d = paired_bootstrap(a, worse)
    assert d.diff == pytest.approx(25.0) and d.low == pytest.approx(25.0) and d.significant
    noisy = {u: (int(rng.integers(0, 2)), 4) for u in a}  # same distribution: unsure
    d = paired_bootstrap(a, noisy)
    assert d.low < d.diff < d.high and d.low < 0 < d.high and not d.significant
    rate_a = 100 * sum(e for e, _ in a.values()) / (4 * n)
    assert d.relative == pytest.approx(d.diff / rate_a)
    assert paired_bootstrap(a, noisy, seed=1).diff == d.diff  # the estimate is not random
    with pytest.raises(ValueError, match="different utterances"):
        paired_bootstrap(a, {"x": (0, 1)})


def _row(exp, period, value, per_utt, train=None, **extra):
    return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": period,
            "train_frame_period": train if train is not None else period, "learned": False,
            "metric": "WER", "value": value, "WER": value, "num_utts": len(per_utt),
            "achieved_period": period, "gmacs_per_second": 1.0 / period, "rtf": 0.1,
            "frontend": "ofa", "compression": "cif", "per_utt": per_utt, **extra}


def _errors(rate_per_10):
    """20 utterances of 5 words; ``rate_per_10`` of every 10 have one error."""
    return {f"u{i:02d}": [int(i % 10 < rate_per_10), 5] for i in range(20)}


def test_comparison_table_with_baselines_and_seeds(tmp_path):
    rows = [
        _row("exp/asr_p40", 40.0, 10.0, _errors(5)),
        _row("exp/asr_p40_seed1", 40.0, 6.0, _errors(3)),
        _row("exp/asr_p80", 80.0, 8.0, _errors(4)),
        _row("exp/asr_fixed40", 40.0, 20.0, _errors(10), compression="fixed"),
        _row("exp/asr_fixed40_seed1", 40.0, 20.0, _errors(10), compression="fixed"),
        _row("exp/asr_logmel", 20.0, 30.0, {u: [e * 3, n] for u, (e, n) in _errors(5).items()},
             train=None, frontend="default", compression=None, rate="native"),
        {**_row("exp/asr_learned", 44.0, 4.0, _errors(2)), "learned": True,
         "train_frame_period": None, "rate": "learned"},
    ]
    rows[5]["train_frame_period"] = None
    text = "\n".join(comparison(rows))
    # 40 ms: OFA mean 8 +- 2.83 over two seeds; fixed-rate 20: +12 points, +150%.
    assert "|test|40|8.00 ± 2.83|20.00 ± 0.00|+12.00 [" in text and "|+150%|" in text
    assert "|test|80|8.00|-|-|-|30.00|+22.00 [" in text  # no fixed-rate student at 80 ms
    assert "log-mel" in text and "up to 2" in text
    assert "do not cover the pretraining run" in text  # one pretraining seed per student
    assert "|test|44.0|4.00|40 ms|8.00 ± 2.83|-4.00 [" in text  # the learnt rate vs 40 ms
    full = render(rows, env={"date": "now"})
    assert full.index("OFA against the baselines") < full.index("## exp/asr_p40")
    assert "|test|native (20.0)|20.0|20|30.00|" in full
    assert "Model log-mel features (no OFA frontend)." in full
    assert "Model on a fixed-rate student, trained at 40 ms." in full
    from espnet_ofa.recipe.results import plot_results

    plot_results(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10000


def test_no_comparison_without_baselines_or_seeds():
    rows = [_row("exp/asr_p40", 40.0, 10.0, _errors(5)), _row("exp/asr_p80", 80.0, 8.0, _errors(4))]
    text = render(rows, env={"date": "now"})
    assert "OFA against the baselines" not in text and "## Summary: a model per frame" in text


def test_decode_rates_of_ofa_models_and_baselines():
    from espnet_ofa.recipe.decode import decode_rates

    assert decode_rates([20, 40]) == [20.0, 40.0]
    assert decode_rates([20, 40], "auto", has_rate=True) == [None]  # at its learnt period
    assert decode_rates([20], "true", has_rate=True) == [20.0, None]
    assert decode_rates([20, 80], compression="fixed", trained_at=40.0) == [40.0]  # as trained
    assert decode_rates([20, 80], native=True) == [None]  # log-mel: once
    with pytest.raises(ValueError, match="no learnt rate"):
        decode_rates([20], "true", native=True)
    with pytest.raises(ValueError, match="no learnt rate"):
        decode_rates([20], "true")
    with pytest.raises(ValueError, match="without a frame_period"):
        decode_rates([20], compression="fixed")
    with pytest.raises(ValueError, match="nothing to decode"):
        decode_rates([], "false")
    with pytest.raises(ValueError, match="auto, true or false"):
        decode_rates([20], "maybe")
