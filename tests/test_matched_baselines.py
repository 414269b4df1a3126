"""The single-period baselines OFA is compared with, and what a pretrained student records.

- ``ssl.sh`` stage 10 pretrains, beside the OFA student, a fixed-rate (pooling) and a
  single-period CIF student per period, from the same config; the downstream recipe trains
  on each at its own period, normalised with statistics of that model at that period, and
  RESULTS.md compares OFA with both.
- In the lam modes the periods a student claims to serve come from its predictor's mean
  alpha, measured after training, not from the port's assumed 2/9.
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet_ofa.bin.recipe import main as recipe_main
from espnet_ofa.compression import Rate, RateSampler
from espnet_ofa.compression.rate import PORT_MEAN_ALPHA
from espnet_ofa.recipe.experiments import (
    FIXED_RATE,
    OFA,
    OTHER,
    SINGLE_RATE,
    plan_experiments,
    plan_students,
    stats_groups,
)

OFA_MODEL = "../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth"
SSL_CONFIG = Path(__file__).resolve().parents[1] / "egs2/fsdd/ssl1/conf/train_ofa_tiny.yaml"


def _configs(tmp_path: Path):
    confs = {
        "train_learned.yaml": {"frontend": "ofa", "frontend_conf": {
            "model": "x.pth", "frame_period": 40, "learnable_rate": True}},
        "train_ofa.yaml": {"frontend": "ofa", "frontend_conf": {"model": "x.pth",
                                                                "frame_period": 40}},
        "train_logmel.yaml": {"frontend": "default", "frontend_conf": {"n_mels": 80}},
    }
    for name, conf in confs.items():
        (tmp_path / name).write_text(yaml.safe_dump(conf))
    return [str(tmp_path / name) for name in confs]


def test_students_pretrained_beside_the_ofa_model():
    plan = plan_students("exp/ssl_a", fixed_rate_periods=[40], single_rate_periods=[40, 80])
    assert [(Path(s.exp_dir).name, s.arm, s.period) for s in plan] == [
        ("ssl_a", OFA, None), ("ssl_a_fixed40", FIXED_RATE, 40.0),
        ("ssl_a_cif40", SINGLE_RATE, 40.0), ("ssl_a_cif80", SINGLE_RATE, 80.0)]
    assert plan[0].extra == []  # the OFA config as given
    held80 = ("--rate_conf mode=frame_period --rate_conf low=80 --rate_conf high=80 "
              "--model_conf valid_frame_period=80")
    # The CIF baseline is the OFA config with its rate held: predictor and CIF kept.
    assert plan[3].extra == [held80]
    assert "--student_conf compression=fixed" in " ".join(plan[1].extra)
    with pytest.raises(ValueError, match="ssl_seeds must be >= 1"):
        plan_students("exp/ssl_a", ssl_seeds=0)


def test_ssl_plan_cli_lines_for_ssl_sh(capsys):
    assert recipe_main(["ssl_plan", "--ssl_exp", "exp/ssl_a", "--single_rate_periods", "40"]) == 0
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines()]
    assert [ln[0] for ln in lines] == ["exp/ssl_a", "exp/ssl_a_cif40"]
    assert lines[0][1] == "" and "--rate_conf low=40" in lines[1][1]


def test_downstream_plan_has_both_baselines_with_their_own_statistics(tmp_path):
    plan = plan_experiments("asr", _configs(tmp_path), "exp", [20, 40, 80], [40, 80], OFA_MODEL,
                            single_rate_periods=[40, 80])
    by_name = {Path(e.exp_dir).name: e for e in plan}
    assert list(by_name) == [
        "asr_train_learned", "asr_train_ofa_p20", "asr_train_ofa_p40", "asr_train_ofa_p80",
        "asr_train_ofa_fixed40", "asr_train_ofa_fixed80", "asr_train_ofa_cif40",
        "asr_train_ofa_cif80", "asr_train_logmel"]
    cif80 = by_name["asr_train_ofa_cif80"]
    assert cif80.kind == SINGLE_RATE and cif80.frame_period == 80.0
    assert cif80.ssl_model == "../ssl1/exp/ssl_train_ofa_tiny_cif80/valid.loss.best.pth"
    assert cif80.extra == [f"--frontend_conf model={cif80.ssl_model}",
                           "--frontend_conf frame_period=80"]
    assert cif80.stats_key == "ofa_ssl_train_ofa_tiny_cif80_p80"
    # Statistics per (model, period): OFA at 80 ms is not normalised with 20 ms statistics.
    assert by_name["asr_train_ofa_p80"].stats_key == "ofa_ssl_train_ofa_tiny_p80"
    assert by_name["asr_train_ofa_p20"].stats_key == "ofa_ssl_train_ofa_tiny_p20"
    # No key is shared by two models or two periods; the learnt rate shares the statistics
    # of the same model at its starting period (the features it starts from).
    owners = {}
    for e in plan:
        if e.kind != OTHER:
            owners.setdefault(e.stats_key, set()).add(
                (e.ssl_model, e.frame_period if e.frame_period is not None else 40.0))
    assert all(len(v) == 1 for v in owners.values()), owners
    assert len(stats_groups(plan)) == 8  # 3 OFA periods, 4 baselines, log-mel


def test_single_period_student_is_decoded_at_its_own_period_only():
    from espnet_ofa.recipe.decode import decode_rates

    assert decode_rates([20, 40, 80], ssl_period_range=[40.0, 40.0], trained_at=40.0) == [40.0]
    assert decode_rates([20, 40], ssl_period_range=[20.0, 90.0]) == [20.0, 40.0]  # OFA


def _row(exp, period, errors, compression="cif", ssl_range=(20.0, 90.0), **extra):
    n = len(errors)
    value = 100.0 * sum(errors) / (5 * n)
    return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": period,
            "train_frame_period": period, "learned": False, "metric": "WER", "value": value,
            "WER": value, "num_utts": n, "achieved_period": period, "gmacs_per_second": 1.0,
            "rtf": 0.1, "frontend": "ofa", "compression": compression,
            "ssl_period_range": list(ssl_range),
            "per_utt": {f"u{i:02d}": [e, 5] for i, e in enumerate(errors)}, **extra}


def test_results_compare_ofa_with_both_baselines_per_period(tmp_path):
    from espnet_ofa.recipe.results import comparison, kind, render

    base = [i % 2 for i in range(40)]  # 20 errors in 200 words: 10 %
    rows = [
        _row("exp/asr_p40", 40.0, base),
        _row("exp/asr_p80", 80.0, base),
        _row("exp/asr_cif40", 40.0, [e + 1 for e in base], ssl_range=(40.0, 40.0)),
        _row("exp/asr_fixed80", 80.0, [0] * 40, compression="fixed", ssl_range=(80.0, 80.0)),
    ]
    assert [kind(r) for r in rows] == [OFA, OFA, SINGLE_RATE, FIXED_RATE]
    text = "\n".join(comparison(rows))
    header = next(ln for ln in text.splitlines() if ln.startswith("|dataset"))
    assert "fixed-rate − OFA [95% CI]" in header and "single-period CIF − OFA [95% CI]" in header
    assert "floor" not in text  # no model without SSL: no floor column, no floor in the text
    # 40 ms: no fixed-rate student; the CIF student has one more error per utterance: +20
    # points exactly, whatever the resample.
    assert "|test|40|10.00|-|-|-|30.00|+20.00 [+20.00, +20.00]|+200%|" in text
    # 80 ms: the fixed-rate student makes no error: -10 points.
    assert "|test|80|10.00|0.00|-10.00 [" in text and "|-|-|-|" in text
    assert "single-period CIF 1 × 1 × 40" in text
    assert "do not cover the pretraining run" in text
    full = render(rows, env={"date": "now"})
    assert "Model on a single-period CIF student, trained at 40 ms." in full


# --------------------------------------------------------------------------------------------
# The pretraining config of a single-period CIF student, as ssl.sh stage 10 runs it.

def test_single_period_cif_student_trains_at_its_period_only(tmp_path):
    from espnet_ofa.tasks.ofa_ssl import OFASSLTask
    from tiny_models import save_tiny_teacher

    teacher = save_tiny_teacher(tmp_path / "teacher.pth")
    student = plan_students("exp/ssl", single_rate_periods=[40])[1]
    args = OFASSLTask.get_parser().parse_args(
        ["--config", str(SSL_CONFIG), "--teacher", str(teacher),
         *" ".join(student.extra).split()])
    model = OFASSLTask.build_model(args)
    assert model.student.config.compression == "cif" and model.student.alpha_predictor is not None
    assert model.student.config.frame_period_range == (40.0, 40.0)
    assert args.student_conf["frame_period_range"] == [40.0, 40.0]  # what config.yaml records
    optim = torch.optim.Adam(model.student.parameters(), lr=1e-3)
    speech = 0.1 * torch.randn(2, 16000)
    lengths = torch.tensor([16000, 12000])
    boundaries = torch.tensor([[10, 30, 49], [20, 37, -1]])
    model.train()
    for _ in range(3):  # every batch at 40 ms: 49 and 37 frames of 20 ms -> 24 and 18
        loss, stats, _ = model(speech, lengths, boundaries, torch.tensor([3, 2]))
        assert float(stats["frame_period"]) == 40.0
        assert float(stats["achieved_period"]) == pytest.approx(20.0 * 86 / 42)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert model.student.alpha_predictor.proj.weight.grad is not None  # the predictor learns
    model.eval()
    assert model.next_rate().frame_period == 40.0
    with pytest.raises(ValueError, match=r"outside .*\[40, 40\] ms"):
        model.student.check_rate(Rate(frame_period=60.0))


# --------------------------------------------------------------------------------------------
# lam modes: the trained range from the predictor's measured mean alpha.

def test_period_range_from_a_measured_mean_alpha():
    lam = RateSampler(mode="lam")
    assert lam.frame_period_range == pytest.approx((20.0, 20.0 / PORT_MEAN_ALPHA))  # assumed
    assert lam.period_range(0.5) == pytest.approx((20.0, 40.0))  # fires every other frame
    half = RateSampler(mode="lam", low=0.5, high=1.0)
    assert half.period_range(0.25) == pytest.approx((20.0 / 0.625, 80.0))
    # lam_from_period drew lam for the port's 2/9; a predictor at 1/3 makes them shorter.
    port = RateSampler(mode="lam_from_period", low=20, high=90)
    assert port.frame_period_range == (20.0, 90.0)
    assert port.period_range(1 / 3) == pytest.approx((20.0, 60.0))
    assert RateSampler(mode="frame_period", low=30, high=70).period_range(0.5) == (30.0, 70.0)
    with pytest.raises(ValueError, match="mean_alpha must be in \\(0, 1\\]"):
        lam.period_range(0.0)


def _student_with_constant_alpha(value: float):
    from espnet_ofa.models.student import build_student

    student = build_student("tiny")
    proj = student.alpha_predictor.proj
    with torch.no_grad():  # the predictor gives sigmoid(bias) on every frame
        proj.weight.zero_()
        proj.bias.fill_(float(np.log(value / (1.0 - value))))
    return student.eval()


def _data_dir(tmp_path: Path, seconds=(1.0, 0.5, 2.0)) -> Path:
    data = tmp_path / "dev"
    data.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i, s in enumerate(seconds):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32), 16000)
        lines.append(f"u{i} {path}\n")
    (data / "wav.scp").write_text("".join(lines))
    return data


def test_measured_range_is_recorded_where_the_frontend_reads_it(tmp_path):
    from espnet_ofa.models.pretrained import load_student, save_student
    from espnet_ofa.models.trained_range import measure_mean_alpha, record_trained_range

    student = _student_with_constant_alpha(0.4)
    data = _data_dir(tmp_path)
    wavs = [torch.from_numpy(sf.read(p)[0].astype(np.float32))
            for p in sorted(data.parent.glob("u*.wav"))]
    mean, frames = measure_mean_alpha(student, wavs)
    assert mean == pytest.approx(0.4, abs=1e-6) and frames == 49 + 24 + 99
    # A lam-mode student, built with the port's assumed range.
    rate_conf = {"mode": "lam", "low": 0.0, "high": 1.0}
    exp = tmp_path / "exp"
    assumed = RateSampler(**rate_conf).frame_period_range
    student.config.frame_period_range = assumed
    save_student(student, exp, preset="tiny", rate_conf=rate_conf)
    assert recipe_main(["trained_range", "--exp_dir", str(exp), "--data_dir", str(data)]) == 0
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert conf["rate_conf"] == rate_conf  # the rest of config.yaml is kept
    assert conf["student_conf"]["mean_alpha"] == pytest.approx(0.4, abs=1e-6)
    assert conf["student_conf"]["frame_period_range"] == pytest.approx([20.0, 50.0])
    loaded = load_student(exp / "valid.loss.best.pth")
    assert loaded.config.frame_period_range == pytest.approx((20.0, 50.0))
    loaded.check_rate(Rate(frame_period=49.9))
    with pytest.raises(ValueError, match="outside"):  # served under the assumption, not now
        loaded.check_rate(Rate(frame_period=80.0))


def test_frame_period_students_need_no_measurement(tmp_path):
    from espnet_ofa.models.pretrained import save_student
    from espnet_ofa.models.trained_range import record_trained_range

    exp = tmp_path / "exp"
    save_student(_student_with_constant_alpha(0.4), exp, preset="tiny",
                 rate_conf={"mode": "frame_period", "low": 20, "high": 90})
    before = (exp / "config.yaml").read_text()
    assert record_trained_range(exp, _data_dir(tmp_path)) is None
    assert (exp / "config.yaml").read_text() == before
    with pytest.raises(ValueError, match="config.yaml not found"):
        record_trained_range(tmp_path / "none", tmp_path)


def test_a_measured_config_can_be_trained_again():
    """config.yaml of a measured lam-mode student, used as a training config: its measured
    range is accepted (and measured again after this run), a foreign range still refused."""
    import argparse

    from espnet_ofa.tasks.ofa_ssl import OFASSLTask

    def args(student_conf):
        return argparse.Namespace(student_preset="tiny", student_conf=student_conf,
                                  rate_conf={"mode": "lam"}, seed=0)

    sampler = OFASSLTask.build_rate_sampler(args({}))
    measured = {"frame_period_range": [20.0, 50.0], "mean_alpha": 0.4}
    student = OFASSLTask.build_student(args(measured), sampler)
    assert student.config.frame_period_range == sampler.frame_period_range
    assert student.config.mean_alpha is None  # not measured yet for this run
    with pytest.raises(ValueError, match="disagrees with rate_conf"):
        OFASSLTask.build_student(args({"frame_period_range": [20.0, 50.0]}), sampler)


def test_bleu_comparison_says_it_has_no_intervals():
    from espnet_ofa.recipe.results import comparison

    rows = [_row("exp/st_p40", 40.0, [0] * 4, metric="BLEU"),
            _row("exp/st_cif40", 40.0, [0] * 4, ssl_range=(40.0, 40.0), metric="BLEU")]
    for r in rows:
        del r["per_utt"]
    text = "\n".join(comparison(rows))
    assert "No intervals: the metric has no per-utterance errors" in text
    # The CIF student, no interval and no relative difference; no floor model, no column.
    assert "|test|40|0.00|0.00|-|-|" in text.splitlines()
