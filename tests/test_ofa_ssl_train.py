"""OFA pretraining through ESPnet's trainer on real speech (FSDD), end to end.

One module-scoped run: pseudo boundaries, collect-stats, 2 epochs, a resume to epoch 3,
and an uninterrupted 3-epoch run to compare against; the ESPnet runs two per process, as the
recipes' training stages run them.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from espnet_ofa.data.audio import load_audio
from espnet_ofa.models.pretrained import load_student
from espnet_ofa.segmentation.pipeline import SegmentConfig, segment_data_dir
from tiny_models import save_tiny_teacher

ITERS_PER_EPOCH = 6


CONFIG = f"""
student_preset: tiny
teacher: teacher.pth
batch_type: folded
batch_size: 6
num_iters_per_epoch: {ITERS_PER_EPOCH}
optim: adam
optim_conf: {{lr: 0.002}}
best_model_criterion: [[valid, loss, min]]
keep_nbest_models: 1
num_workers: 0
use_tensorboard: false
use_matplotlib: false
"""


def write_data_dir(workdir: Path, name: str, files) -> Path:
    data = workdir / "data" / name
    data.mkdir(parents=True)
    lines = []
    for f in files:
        wav, _ = load_audio(str(f), 16000)  # FSDD is 8 kHz
        out = workdir / "wav" / f.name
        out.parent.mkdir(exist_ok=True)
        sf.write(out, wav.numpy(), 16000)
        lines.append(f"{f.stem} {out}")
    (data / "wav.scp").write_text("\n".join(sorted(lines)) + "\n")
    return data


def train_options(output_dir: str, *extra: str) -> list:
    options = ["--config", "train.yaml", "--output_dir", output_dir]
    for split in ("train", "valid"):
        options += [f"--{split}_data_path_and_name_and_type", f"data/{split}/wav.scp,speech,sound",
                    f"--{split}_data_path_and_name_and_type",
                    f"seg/{split}/boundaries,boundaries,text_int",
                    f"--{split}_shape_file", f"exp/stats/{split}/speech_shape"]
    return options + ["--fold_length", "80000", *extra]


def train(workdir: Path, name: str, *runs: list) -> None:
    """The runs one after another in one process, as the recipes' stages run them
    (``espnet_ofa.bin.train_queue``: ESPnet's start-up paid once); logs ``logs/<name>.<i>``."""
    queue = workdir / "queue" / name
    queue.mkdir(parents=True)
    cmd = [sys.executable, "-m", "espnet_ofa.bin.train_queue",
           "--entry", "espnet_ofa.bin.ofa_ssl_train", "--queue_dir", str(queue)]
    for i, options in enumerate(runs):
        args = workdir / "logs" / f"{name}.{i}.args"
        args.parent.mkdir(exist_ok=True)
        args.write_text("\n".join(options) + "\n")
        cmd += ["--run", str(args), str(workdir / "logs" / f"{name}.{i}.log")]
    run = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, fsdd_recordings):
    workdir = tmp_path_factory.mktemp("ofa_ssl")
    train_files = [fsdd_recordings / f"{d}_{s}_{i}.wav" for d in range(10)
                   for s in ("jackson", "theo") for i in (5, 6)]
    valid_files = [fsdd_recordings / f"{d}_nicolas_0.wav" for d in range(0, 10, 2)]
    write_data_dir(workdir, "train", train_files)
    write_data_dir(workdir, "valid", valid_files)
    conf = SegmentConfig(n_clusters=12, min_duration=2)
    segment_data_dir(workdir / "data/train", workdir / "seg/train/boundaries", conf, progress=False)
    segment_data_dir(workdir / "data/valid", workdir / "seg/valid/boundaries", conf, progress=False,
                     kmeans=workdir / "seg/train/boundaries.kmeans.npy")
    save_tiny_teacher(workdir / "teacher.pth")
    (workdir / "train.yaml").write_text(CONFIG)

    stats = ["--config", "train.yaml", "--collect_stats", "true", "--output_dir", "exp/stats"]
    for split in ("train", "valid"):
        stats += [f"--{split}_data_path_and_name_and_type", f"data/{split}/wav.scp,speech,sound",
                  f"--{split}_shape_file", f"data/{split}/wav.scp"]
    train(workdir, "first", stats, train_options("exp/ofa", "--max_epoch", "2"))
    (workdir / "after_two").write_bytes((workdir / "exp/ofa/checkpoint.pth").read_bytes())
    train(workdir, "second", train_options("exp/ofa", "--max_epoch", "3", "--resume", "true"),
          train_options("exp/ofa_uninterrupted", "--max_epoch", "3"))
    return workdir


def reporter_stats(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=False)["reporter"]["stats"]


def test_loss_falls_and_reporter_has_the_ofa_stats(workdir):
    stats = reporter_stats(workdir / "exp/ofa/checkpoint.pth")
    assert sorted(stats) == [1, 2, 3]
    assert stats[3]["valid"]["loss"] < 0.9 * stats[1]["valid"]["loss"]
    assert stats[3]["train"]["loss"] < stats[1]["train"]["loss"]
    train = stats[1]["train"]
    for key in ("loss_layer1", "loss_layer2", "loss_alpha_l1", "loss_boundary",
                "frame_period", "length_ratio", "achieved_period"):
        assert key in train, key
    assert 20.0 <= train["frame_period"] <= 90.0
    # The achieved period follows the sampled one (exact per utterance, up to rounding).
    assert abs(train["achieved_period"] - train["frame_period"]) < 5.0
    assert stats[1]["valid"]["frame_period"] == pytest.approx(55.0)


def test_resume_continues_where_it_stopped(workdir):
    before = torch.load(workdir / "after_two", weights_only=False)
    resumed = reporter_stats(workdir / "exp/ofa/checkpoint.pth")
    for epoch in (1, 2):  # finished epochs are kept, not redone
        assert resumed[epoch]["train"]["loss"] == before["reporter"]["stats"][epoch]["train"]["loss"]
    resumed_model = torch.load(workdir / "exp/ofa/3epoch.pth")
    full_model = torch.load(workdir / "exp/ofa_uninterrupted/3epoch.pth")
    assert int(resumed_model["num_steps"]) == 3 * ITERS_PER_EPOCH
    for key, value in full_model.items():
        torch.testing.assert_close(resumed_model[key], value, msg=key)


def test_trained_student_loads_without_teacher_and_runs_at_any_period(workdir, fsdd_recordings):
    checkpoint = workdir / "exp/ofa/valid.loss.best.pth"
    assert not any(k.startswith("teacher") for k in torch.load(checkpoint))  # teacher left out
    student = load_student(checkpoint)
    wav, _ = load_audio(str(fsdd_recordings / "3_yweweler_9.wav"), 16000)
    frames = (wav.shape[0] - 400) // 320 + 1
    for period in (20.0, 45.0, 90.0):
        with torch.no_grad():
            out = student(wav[None], torch.tensor([wav.shape[0]]), frame_period=period)
        assert int(out.lengths) == round(frames * 20 / period)


def task_args(**overrides):
    import argparse

    return argparse.Namespace(**{"student_preset": "tiny", "student_conf": {},
                                 "rate_conf": {"mode": "frame_period"}, "seed": 0, **overrides})


@pytest.mark.parametrize("rate_conf, expected", [
    ({"mode": "frame_period"}, (20.0, 90.0)),
    ({"mode": "frame_period", "low": 30, "high": 70}, (30.0, 70.0)),
    ({"mode": "lam_from_period", "low": 25, "high": 60}, (25.0, 60.0)),
    ({"mode": "lam"}, (20.0, 90.0)),  # lam [0, 1] at the port's mean predictor rate
    ({"mode": "lam", "low": 0.5, "high": 1.0}, (20 / (0.5 + 1 / 9), 90.0)),
])
def test_student_range_is_derived_from_rate_conf(rate_conf, expected):
    from espnet_ofa.tasks.ofa_ssl import OFASSLTask

    args = task_args(rate_conf=rate_conf)
    sampler = OFASSLTask.build_rate_sampler(args)
    student = OFASSLTask.build_student(args, sampler)
    assert student.config.frame_period_range == pytest.approx(expected)


def test_student_range_that_disagrees_with_rate_conf_is_refused():
    from espnet_ofa.models.espnet_model import OFADistillModel
    from espnet_ofa.models.student import build_student
    from espnet_ofa.tasks.ofa_ssl import OFASSLTask

    args = task_args(rate_conf={"mode": "frame_period", "low": 30, "high": 70},
                     student_conf={"frame_period_range": [20, 90]})
    sampler = OFASSLTask.build_rate_sampler(args)
    with pytest.raises(ValueError, match=r"frame_period_range \[20, 90\] disagrees with "
                                         r"rate_conf.*\[30, 70\] ms.*remove"):
        OFASSLTask.build_student(args, sampler)
    args.student_conf = {"frame_period_range": [30.0, 70.0]}  # as config.yaml writes it back
    assert OFASSLTask.build_student(args, sampler).config.frame_period_range == (30.0, 70.0)
    with pytest.raises(ValueError, match="rate_conf has unknown keys \\['hgih'\\]"):
        OFASSLTask.build_rate_sampler(task_args(rate_conf={"mode": "lam", "hgih": 1.0}))
    with pytest.raises(ValueError, match="rate_conf: mode must be one of"):
        OFASSLTask.build_rate_sampler(task_args(rate_conf={"mode": "speed"}))
    # The model refuses a student built for another range than its sampler's.
    with pytest.raises(ValueError, match="not the range the rate sampler trains"):
        OFADistillModel(build_student("tiny"), torch.nn.Identity(), sampler)
