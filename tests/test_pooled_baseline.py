"""The pooled rival: the OFA model at 20 ms, its features average-pooled before the downstream.

Values and lengths of the pool, the frontend option (features, lengths, compute, errors),
the experiments the recipe plans for it (options ESPnet parses into a working frontend),
how it is decoded, and its table in RESULTS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import yaml

from espnet_ofa.frontend.pooling import average_pool, pool_factor
from espnet_ofa.recipe.experiments import OFA, POOLED, plan_experiments, stats_groups

OFA_MODEL = "../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth"


@pytest.fixture
def checkpoint(tiny_ofa_checkpoint):
    """The tiny random OFA model built once per run (conftest.py)."""
    return tiny_ofa_checkpoint


pytestmark = pytest.mark.usefixtures("no_rate_override")  # conftest.py


def test_average_pool_means_every_k_valid_frames_and_ignores_padding():
    feats = torch.arange(2 * 7 * 2, dtype=torch.float32).view(2, 7, 2)
    feats[1, 4:] = 1000.0  # padding of utterance 1: must not enter any mean
    pooled, lengths = average_pool(feats, torch.tensor([7, 4]), 3)
    assert lengths.tolist() == [3, 2]  # ceil(7 / 3), ceil(4 / 3)
    assert pooled.shape == (2, 3, 2)
    assert torch.equal(pooled[0, 0], feats[0, 0:3].mean(0))
    assert torch.equal(pooled[0, 2], feats[0, 6])  # a partial last window: its one frame
    assert torch.equal(pooled[1, 1], feats[1, 3])  # frame 3 only, not the padding after it
    assert torch.equal(pooled[1, 2], torch.zeros(2))  # zero past the length
    # Full windows: exactly torch's AvgPool1d.
    full = torch.randn(3, 12, 5)
    reference = torch.nn.AvgPool1d(4)(full.transpose(1, 2)).transpose(1, 2)
    got, got_lengths = average_pool(full, torch.tensor([12, 12, 12]), 4)
    assert torch.allclose(got, reference) and got_lengths.tolist() == [3, 3, 3]


def test_pool_factor_needs_an_integer_multiple():
    assert pool_factor(40, 20) == 2 and pool_factor(80.0, 20.0) == 4
    for bad in (30, 20, 10):
        with pytest.raises(ValueError, match="integer multiple"):
            pool_factor(bad, 20)


def test_pooled_frontend_pools_the_20ms_features(checkpoint):
    from espnet_ofa.frontend.ofa import OFAFrontend

    torch.manual_seed(0)
    speech = 0.1 * torch.randn(2, 16000)
    lengths = torch.tensor([16000, 11300])  # 49 and 35 frames of 20 ms
    at20 = OFAFrontend(model=str(checkpoint), frame_period=20).eval()
    pooled = OFAFrontend(model=str(checkpoint), frame_period=None, pooled_period=40).eval()
    at40 = OFAFrontend(model=str(checkpoint), frame_period=40).eval()
    pooled.load_state_dict(at20.state_dict())
    with torch.no_grad():
        feats20, len20 = at20(speech, lengths)
        feats, out_lengths = pooled(speech, lengths)
    assert len20.tolist() == [49, 35] and out_lengths.tolist() == [25, 18]
    assert torch.allclose(feats[0, 3], feats20[0, 6:8].mean(0), atol=1e-6)
    assert torch.allclose(feats[1, 17], feats20[1, 34], atol=1e-6)  # partial window
    assert torch.equal(feats[1, 18:], torch.zeros_like(feats[1, 18:]))
    assert pooled.extra_stats() == {"frame_period": 40.0}
    # Compute: the pooled rival runs the SSL Transformer on 20 ms frames, OFA at 40 ms on
    # half as many (the decode stage counts the MACs of the whole system).
    seen = {}
    for name, f in (("pooled", pooled), ("40", at40)):
        def frames_in(_module, args, _output, name=name):
            seen[name] = args[0].shape[1]

        f.student.transformer.layers[0].register_forward_hook(frames_in)
        with torch.no_grad():
            f(speech, lengths)
    assert seen == {"pooled": 49, "40": 24}  # round(49 / 2), half to even
    # Its period is fixed.
    with pytest.raises(ValueError, match="period is fixed"):
        pooled.set_rate(frame_period=80)


def test_pooled_frontend_rejects_bad_options(checkpoint):
    from espnet_ofa.frontend.ofa import OFAFrontend

    with pytest.raises(ValueError, match="integer multiple"):
        OFAFrontend(model=str(checkpoint), frame_period=None, pooled_period=50)
    with pytest.raises(ValueError, match="exclude each other"):
        OFAFrontend(model=str(checkpoint), frame_period=20, pooled_period=40,
                    learnable_rate=True)
    with pytest.raises(ValueError, match="exclude each other"):
        OFAFrontend(model=str(checkpoint), frame_period=20, pooled_period=40,
                    rate_sampling={"low": 20, "high": 90})


def _configs(tmp_path: Path):
    ofa = {"frontend": "ofa", "frontend_conf": {"model": "x.pth", "frame_period": 40},
           "encoder": "rnn", "encoder_conf": {"num_layers": 2}}
    logmel = {"frontend": "default", "frontend_conf": {"n_mels": 80}}
    paths = []
    for name, conf in (("train_ofa.yaml", ofa), ("train_logmel.yaml", logmel)):
        (tmp_path / name).write_text(yaml.safe_dump(conf))
        paths.append(str(tmp_path / name))
    return paths


def test_plan_trains_the_pooled_rival_beside_ofa(tmp_path, checkpoint):
    from espnet2.utils.nested_dict_action import NestedDictAction

    from espnet_ofa.frontend.ofa import OFAFrontend

    plan = plan_experiments("asr", _configs(tmp_path), "exp", [20, 40], [], OFA_MODEL,
                            seeds=2, pooled_periods=[40, 80])
    names = [Path(e.exp_dir).name for e in plan]
    assert names[:5] == ["asr_train_ofa_p20", "asr_train_ofa_p40", "asr_train_ofa_pooled40",
                         "asr_train_ofa_pooled80", "asr_train_logmel"]
    assert names[5:] == [f"{n}_seed1" for n in names[:5]]
    pooled = plan[3]
    assert pooled.kind == POOLED and pooled.frame_period == 80 and pooled.ssl_model == OFA_MODEL
    assert plan[0].kind == OFA
    # Pooled features have statistics of their own (averaging shrinks their variance): those
    # of the model's 20 ms features, pooled to the period.
    keys = {Path(e.exp_dir).name: e.stats_key for e in plan}
    assert keys["asr_train_ofa_pooled40"] == keys["asr_train_ofa_p20"] + "_pooled40"
    assert len(set(keys.values())) == 5  # OFA at 20 and 40 ms, pooled 40 and 80, log-mel
    assert len(stats_groups(plan)) == 5
    assert plan[8].extra[-1] == "--seed 1"

    # The options, as ESPnet parses them over the config, build the rival: SSL at 20 ms.
    parser = argparse.ArgumentParser()
    parser.add_argument("--frontend_conf", action=NestedDictAction, default={})
    words = " ".join(pooled.extra).split()
    conf = yaml.safe_load(Path(pooled.config).read_text())["frontend_conf"]
    conf.update(vars(parser.parse_args(words))["frontend_conf"])
    conf["model"] = str(checkpoint)
    frontend = OFAFrontend(**conf)
    assert frontend.pool == 4 and frontend.current_rate().frame_period == 20.0


def test_pooled_rival_is_decoded_at_its_own_period(tmp_path):
    from espnet_ofa.recipe.decode import decode_rates, train_frame_period, variant

    conf = {"frontend": "ofa", "frontend_conf": {"model": "x.pth", "frame_period": None,
                                                 "pooled_period": 80}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    assert variant(conf) == POOLED and train_frame_period(tmp_path / "config.yaml") == 80.0
    assert decode_rates([20, 40, 80], trained_at=80.0, own_period_only=True) == [80.0]


def _row(exp, period, value, errors, gmacs, **extra):
    per_utt = {f"u{i:02d}": [int(i % 10 < errors), 5] for i in range(20)}
    return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": period,
            "train_frame_period": period, "learned": False, "metric": "WER", "value": value,
            "WER": value, "num_utts": 20, "achieved_period": period,
            "gmacs_per_second": gmacs, "rtf": 0.1, "frontend": "ofa", "compression": "cif",
            "per_utt": per_utt, **extra}


def test_results_show_the_pooled_rival_beside_ofa_with_compute(tmp_path):
    from espnet_ofa.recipe.results import kind, plot_results, render

    rows = [_row("exp/asr_p40", 40.0, 4.0, 2, 0.05), _row("exp/asr_p80", 80.0, 8.0, 4, 0.03),
            _row("exp/asr_pooled40", 40.0, 6.0, 3, 0.09, variant=POOLED),
            _row("exp/asr_pooled40_seed1", 40.0, 10.0, 5, 0.09, variant=POOLED)]
    assert kind(rows[2]) == POOLED
    text = render(rows, env={"date": "now"})
    section = text[text.index("## The pooled rival"):]
    # Seeds averaged: 8 +- 2.83; per-utterance errors 0.4 vs 0.2 per 5 words: +4 points.
    assert "|test|40|4.00|0.0500|8.00 ± 2.83|0.0900|+4.00 [" in section
    assert "|+100%|" in section and "OFA 1 × 1 × 20, pooled rival 1 × 2 × 20" in section
    assert "|test|80|" not in section.split("\n\n")[2]  # no pooled model at 80 ms
    assert "Model on the OFA model at 20 ms, its features average-pooled to 40 ms." in text
    plot_results(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10000


def test_plot_colours_series_apart_with_one_test_set_and_test_sets_apart_with_several(
        tmp_path, monkeypatch):
    from espnet_ofa.recipe import results

    drawn = []
    monkeypatch.setattr(results, "_draw",
                        lambda axes, label, group, style: drawn.append((label, style["color"])))
    rows = [_row("exp/asr_p40", 40.0, 4.0, 2, 0.05), _row("exp/asr_p80", 80.0, 8.0, 4, 0.03),
            _row("exp/asr_pooled40", 40.0, 6.0, 3, 0.09, variant=POOLED)]
    results.plot_results(rows, tmp_path / "one.png")
    assert len(drawn) >= 2 and len({color for _, color in drawn}) == len(drawn), drawn
    drawn.clear()
    results.plot_results(rows + [{**r, "test_set": "dev"} for r in rows], tmp_path / "two.png")
    colours = {}
    for label, color in drawn:
        colours.setdefault(label.split(":")[0], set()).add(color)
    assert sorted(colours) == ["dev", "test"] and all(len(c) == 1 for c in colours.values())
    assert colours["dev"] != colours["test"]


def test_model_card_says_the_pooled_period_is_fixed():
    from espnet_ofa.zoo.downstream import _period_field

    assert _period_field({"frame_period": None, "pooled_period": 80}).startswith("80 ms, fixed")
    assert "changeable" in _period_field({"frame_period": 40})


# ----------------------------------------------------------------------------- the teacher
def _ofa_exp_with_teacher(tmp_path: Path, teacher: str) -> str:
    """An ssl1-like layout: ssl1/exp/ssl_train_ofa_tiny/config.yaml names its teacher as
    ofa_ssl_train ran it, from ssl1 (paths relative to there)."""
    exp = tmp_path / "ssl1" / "exp" / "ssl_train_ofa_tiny"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump(
        {"teacher": teacher, "output_dir": "exp/ssl_train_ofa_tiny"}))
    return str(exp / "valid.loss.best.pth")


def test_teacher_of_the_ofa_model_is_the_one_its_config_names(tmp_path):
    from espnet_ofa.recipe.experiments import teacher_of

    model = _ofa_exp_with_teacher(tmp_path, "exp/hubert_train_hubert_tiny")
    assert teacher_of(model) == str(tmp_path / "ssl1" / "exp" / "hubert_train_hubert_tiny")
    other = _ofa_exp_with_teacher(tmp_path / "b", "HUBERT_BASE")
    assert teacher_of(other) == "HUBERT_BASE"  # a bundle name as it is
    with pytest.raises(FileNotFoundError, match="name the teacher with --teacher"):
        teacher_of(tmp_path / "nowhere" / "valid.loss.best.pth")


def test_plan_trains_the_teacher_as_a_pooled_rival(tmp_path, monkeypatch):
    """``<exp>_teacher_pooled<P>``: the OFA config with frontend ssl_teacher on the OFA
    model's teacher, once (no pretraining seeds), statistics per (teacher, period)."""
    from espnet2.utils.nested_dict_action import NestedDictAction

    from espnet_ofa.recipe.decode import own_period_only, train_frame_period, variant
    from espnet_ofa.recipe.experiments import TEACHER_POOLED

    model = _ofa_exp_with_teacher(tmp_path, "exp/hubert_train_hubert_tiny")
    configs = _configs(tmp_path)
    plan = plan_experiments("asr", configs, tmp_path / "exp", [40], [], model, seeds=2,
                            ssl_seeds=2, pooled_periods=[80], teacher_pooled_periods=[40, 80])
    names = [Path(e.exp_dir).name for e in plan]
    teacher = [e for e in plan if e.kind == TEACHER_POOLED]
    assert [Path(e.exp_dir).name for e in teacher] == [
        "asr_train_ofa_teacher_pooled40", "asr_train_ofa_teacher_pooled80",
        "asr_train_ofa_teacher_pooled40_seed1", "asr_train_ofa_teacher_pooled80_seed1"]
    assert "asr_train_ofa_pooled80_sslseed1" in names  # the OFA rivals keep their seeds
    assert [e.frame_period for e in teacher] == [40.0, 80.0, 40.0, 80.0]
    assert teacher[0].ssl_model is None
    keys = {Path(e.exp_dir).name: e.stats_key for e in plan}
    own = {keys["asr_train_ofa_teacher_pooled40"], keys["asr_train_ofa_teacher_pooled80"]}
    assert len(own) == 2 and not own & {k for n, k in keys.items() if "teacher" not in n}

    # Its config: the OFA one with the teacher for frontend; the options over it give the pool.
    conf = yaml.safe_load(Path(teacher[1].config).read_text())
    assert conf["frontend"] == "ssl_teacher"
    assert Path(teacher[1].config) == tmp_path / "exp" / "conf" / "asr_train_ofa_teacher.yaml"
    original = yaml.safe_load(Path(configs[0]).read_text())
    assert conf["frontend_conf"]["layer"] == -1 and "model" not in conf["frontend_conf"]
    assert {k: v for k, v in conf.items() if not k.startswith("frontend")} == {
        k: v for k, v in original.items() if not k.startswith("frontend")}
    parser = argparse.ArgumentParser()
    parser.add_argument("--frontend_conf", action=NestedDictAction, default=conf["frontend_conf"])
    conf["frontend_conf"] = vars(parser.parse_args(" ".join(teacher[1].extra).split()))[
        "frontend_conf"]
    assert conf["frontend_conf"] == {"fs": "16k", "layer": -1, "pooled_period": 80,
                                     "source": str(tmp_path / "ssl1/exp/hubert_train_hubert_tiny")}
    # ... decoded at its own period only.
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    assert variant(conf) == TEACHER_POOLED
    assert train_frame_period(tmp_path / "config.yaml") == 80.0
    assert own_period_only(TEACHER_POOLED, 80.0)
    # --teacher names another one; without an OFA model to ask, it is required.
    plan = plan_experiments("asr", configs[:1], tmp_path / "exp2", teacher_pooled_periods=[40],
                            teacher="HUBERT_BASE")
    assert yaml.safe_load(Path(plan[-1].config).read_text())["frontend_conf"]["source"] == \
        "HUBERT_BASE"
    with pytest.raises(FileNotFoundError, match="--teacher"):
        plan_experiments("asr", configs[:1], tmp_path / "exp3", teacher_pooled_periods=[40])


def test_an_untrained_ofa_model_leaves_the_teacher_pending(tmp_path):
    """Before the SSL recipe ran, the teacher is unknown: the plan fails, or leaves the
    teacher's experiments out when the recipe says it will plan again (``teacher_pending``),
    and has them once the OFA model's config names its teacher."""
    configs = _configs(tmp_path)
    model = tmp_path / "ssl1" / "exp" / "ssl_train_ofa_tiny" / "valid.loss.best.pth"
    args = ("asr", configs, tmp_path / "exp", [40], [], model)
    with pytest.raises(FileNotFoundError, match="--teacher"):
        plan_experiments(*args, teacher_pooled_periods=[40])
    pending = plan_experiments(*args, teacher_pooled_periods=[40], teacher_pending=True)
    assert [Path(e.exp_dir).name for e in pending] == ["asr_train_ofa_p40", "asr_train_logmel"]
    _ofa_exp_with_teacher(tmp_path, "exp/hubert_train_hubert_tiny")  # the SSL recipe ran
    later = plan_experiments(*args, teacher_pooled_periods=[40], teacher_pending=True)
    assert [Path(e.exp_dir).name for e in later] == [
        "asr_train_ofa_p40", "asr_train_ofa_teacher_pooled40", "asr_train_logmel"]


def test_results_show_the_pooled_teacher_beside_ofa_and_the_pooled_rival(tmp_path):
    from espnet_ofa.recipe.experiments import TEACHER_POOLED
    from espnet_ofa.recipe.results import kind, plot_results, render

    rows = [_row("exp/asr_p40", 40.0, 4.0, 2, 0.05), _row("exp/asr_p80", 80.0, 8.0, 4, 0.03),
            _row("exp/asr_pooled40", 40.0, 6.0, 3, 0.09, variant=POOLED),
            _row("exp/asr_teacher_pooled40", 40.0, 2.0, 1, 0.4, variant=TEACHER_POOLED,
                 frontend="ssl_teacher", compression=None),
            _row("exp/asr_teacher_pooled80", 80.0, 4.0, 2, 0.38, variant=TEACHER_POOLED,
                 frontend="ssl_teacher", compression=None)]
    assert kind(rows[3]) == TEACHER_POOLED
    text = render(rows, env={"date": "now"})
    section = text[text.index("## The pooled rival"):].split("\n\n")
    assert "*teacher* does the same with the OFA model's teacher" in section[1]
    header, _, at40, at80 = section[2].splitlines()
    assert header == ("|dataset|period (ms)|OFA WER|OFA GMACs/s|pooled WER|pooled GMACs/s|"
                      "pooled − OFA [95% CI]|relative|teacher WER|teacher GMACs/s|"
                      "teacher − OFA [95% CI]|relative|")
    assert at40.startswith("|test|40|4.00|0.0500|6.00|0.0900|+2.00 [")
    assert "|2.00|0.4000|-2.00 [" in at40  # the teacher: better, and 8 times the compute
    assert at80.startswith("|test|80|8.00|0.0300|-|-|-|-|4.00|0.3800|")  # no pooled OFA at 80
    assert ("Model on the OFA model's teacher at 20 ms, its features average-pooled to 80 ms."
            in text)
    plot_results(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10000
