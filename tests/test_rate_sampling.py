"""One downstream model for every frame period: the period sampled per training batch.

The draws (reproducible, resumable, the pretraining sampler's), the frontend in training,
validation and decoding, its errors, the recipe's plan and decoding, and RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from espnet_ofa.compression.rate import RateSampler
from espnet_ofa.frontend.rate_sampling import SampledRate
from espnet_ofa.recipe.experiments import SAMPLED, plan_experiments


@pytest.fixture
def checkpoint(tiny_ofa_checkpoint):
    """The tiny random OFA model built once per run (conftest.py)."""
    return tiny_ofa_checkpoint


pytestmark = pytest.mark.usefixtures("no_rate_override")  # conftest.py


def test_draws_are_the_pretraining_samplers_and_resume():
    sampled = SampledRate(20, 90, seed=7)
    periods = [sampled.draw().frame_period for _ in range(50)]
    reference = RateSampler("frame_period", low=20, high=90, seed=7)
    assert periods == [reference.sample(step=i).frame_period for i in range(50)]
    assert all(20 <= p <= 90 for p in periods) and max(periods) - min(periods) > 50
    assert [SampledRate(20, 90, seed=7).draw().frame_period for _ in range(1)] == periods[:1]
    assert SampledRate(20, 90, seed=8).draw().frame_period != periods[0]
    # Resuming from a saved state goes on with the same periods.
    state = {k: v.clone() for k, v in sampled.state_dict().items()}
    resumed = SampledRate(20, 90, seed=7)
    resumed.load_state_dict(state)
    assert resumed.draw().frame_period == sampled.draw().frame_period


def test_log_uniform_draws_are_the_log_period_samplers():
    sampled = SampledRate(20, 90, seed=7, distribution="log_uniform")
    reference = RateSampler("log_frame_period", low=20, high=90, seed=7)
    assert ([sampled.draw().frame_period for _ in range(20)]
            == [reference.sample(step=i).frame_period for i in range(20)])
    assert "distribution=log_uniform" in repr(sampled)
    with pytest.raises(ValueError, match="distribution must be one of uniform, log_uniform"):
        SampledRate(20, 90, distribution="loguniform")


def test_frontend_trains_at_sampled_periods_and_decodes_at_any(checkpoint):
    from espnet_ofa.frontend.ofa import OFAFrontend

    torch.manual_seed(3)  # the default seed: ESPnet's --seed, set before build_model
    frontend = OFAFrontend(model=str(checkpoint), frame_period=40,
                           rate_sampling={"low": 20, "high": 90}).train()
    expected = [RateSampler("frame_period", low=20, high=90, seed=3).sample(step=i)
                for i in range(4)]
    speech, lengths = 0.1 * torch.randn(2, 16000), torch.tensor([16000, 12000])  # 49, 37 frames
    for rate in expected:
        _, out = frontend(speech, lengths)
        wanted = torch.round(torch.tensor([49.0, 37.0]) * 20.0 / rate.frame_period)
        assert out.tolist() == wanted.long().clamp_min(1).tolist()
        assert frontend.extra_stats() == {"frame_period": rate.frame_period}
    assert int(frontend.sampling.num_draws) == 4
    assert "sampling.num_draws" in frontend.state_dict()  # saved in ESPnet's checkpoints
    with torch.no_grad():  # collect_stats: train mode without gradients draws nothing
        assert frontend(speech, lengths)[1].tolist() == [24, 18]
    frontend.eval()  # validation at the configured period, decoding at any
    with torch.no_grad():
        assert frontend(speech, lengths)[1].tolist() == [24, 18]
        frontend.set_rate(frame_period=80)
        assert frontend(speech, lengths)[1].tolist() == [12, 9]
    assert int(frontend.sampling.num_draws) == 4


def test_rate_sampling_errors_name_the_fix(checkpoint):
    from espnet_ofa.frontend.ofa import OFAFrontend

    def build(**conf):
        return OFAFrontend(model=str(checkpoint), frame_period=40, **conf)

    with pytest.raises(ValueError, match="inside the range this OFA model was trained for"):
        build(rate_sampling={"low": 10, "high": 90})
    with pytest.raises(ValueError, match="unknown key"):
        build(rate_sampling={"low": 20, "high": 90, "hi": 3})
    with pytest.raises(ValueError, match="needs low and high"):
        build(rate_sampling={"low": 20})
    with pytest.raises(ValueError, match="distribution must be one of"):
        build(rate_sampling={"low": 20, "high": 90, "distribution": "geometric"})
    assert build(rate_sampling={"low": 20, "high": 90, "distribution": "log_uniform"}
                 ).sampling.sampler.mode == "log_frame_period"
    with pytest.raises(ValueError, match="exclude each other"):
        OFAFrontend(model=str(checkpoint), frame_period=40, learnable_rate=True,
                    rate_sampling={"low": 20, "high": 90})


def test_recipe_plans_it_once_and_decodes_it_at_every_period(tmp_path):
    from espnet_ofa.recipe.decode import decode_rates, train_frame_period, variant

    conf = {"frontend": "ofa", "frontend_conf": {"model": "x.pth", "frame_period": 40,
                                                 "rate_sampling": {"low": 20, "high": 90}}}
    (tmp_path / "train_sampled.yaml").write_text(yaml.safe_dump(conf))
    plan = plan_experiments("asr", [str(tmp_path / "train_sampled.yaml")], "exp", [20, 40],
                            [], "m.pth", seeds=2)
    assert [(Path(e.exp_dir).name, e.kind) for e in plan] == [
        ("asr_train_sampled", SAMPLED), ("asr_train_sampled_seed1", SAMPLED)]
    assert plan[1].extra == ["--frontend_conf model=m.pth", "--seed 1"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    assert variant(conf) == SAMPLED and train_frame_period(tmp_path / "config.yaml") is None
    assert decode_rates([20, 50, 90], trained_at=None) == [20.0, 50.0, 90.0]


def test_fsdd_config_is_a_sampled_model():
    conf = yaml.safe_load((Path(__file__).parents[1] / "egs2/fsdd/asr1/conf/"
                           "train_asr_ofa_sampled.yaml").read_text())
    assert conf["frontend_conf"]["rate_sampling"] == {"low": 20, "high": 90, "seed": None}
    run = (Path(__file__).parents[1] / "egs2/fsdd/asr1/run.sh").read_text()
    assert "conf/train_asr_ofa_sampled.yaml" in run


def test_results_compare_it_with_the_per_period_models():
    from espnet_ofa.recipe.results import render

    def row(exp, period, errors, **extra):
        per_utt = {f"u{i:02d}": [int(i % 10 < errors), 5] for i in range(20)}
        value = 100.0 * sum(e for e, _ in per_utt.values()) / 100
        return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": period,
                "train_frame_period": period, "learned": False, "metric": "WER",
                "value": value, "WER": value, "num_utts": 20, "achieved_period": period,
                "gmacs_per_second": 1 / period, "rtf": 0.1, "frontend": "ofa",
                "compression": "cif", "per_utt": per_utt, "rate": f"p{period:g}", **extra}

    rows = [row("exp/asr_p20", 20.0, 1), row("exp/asr_p80", 80.0, 4),
            row("exp/asr_sampled", 20.0, 2, variant=SAMPLED, train_frame_period=None),
            row("exp/asr_sampled", 50.0, 3, variant=SAMPLED, train_frame_period=None),
            row("exp/asr_sampled", 80.0, 4, variant=SAMPLED, train_frame_period=None)]
    text = render(rows, env={"date": "now"})
    section = text[text.index("## One model for every period"):].split("\n## ")[0]
    assert "|test|20|2.00|4.00|+2.00 [" in section and "|+100%|" in section
    assert "|test|50|-|6.00|-|-|" in section  # no per-period model at 50 ms
    assert "|test|80|8.00|8.00|+0.00 [+0.00, +0.00]|+0%|" in section
    assert "|model|" not in section  # one sampled model: no need to name it

    # Two sampled models (uniform and log-uniform draws): each row names its model, and
    # the plot draws each as its own line.
    rows.append(row("exp/asr_sampled_log", 20.0, 1, variant=SAMPLED, train_frame_period=None))
    section = render(rows, env={"date": "now"})
    section = section[section.index("## One model for every period"):].split("\n## ")[0]
    assert "|test|20|2.00|2.00|+0.00 [+0.00, +0.00]|+0%|asr_sampled_log|" in section
    assert "|test|20|2.00|4.00|+2.00 [" in section and section.count("|asr_sampled|") == 3
    from espnet_ofa.recipe.results import _plot_series

    series = {label: (group, style) for label, group, style in _plot_series(rows, "test")}
    uniform = series["one downstream, period sampled in training: asr_sampled"]
    log = series["one downstream, period sampled in training: asr_sampled_log"]
    assert [m.period for m in uniform[0]] == [20.0, 50.0, 80.0]
    assert [m.period for m in log[0]] == [20.0]
    # One colour per test set: the two lines differ in marker and dashes.
    assert uniform[1]["marker"] != log[1]["marker"]
    assert uniform[1]["linestyle"] != log[1]["linestyle"]
