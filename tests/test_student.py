"""The OFA student: lengths at each rate, shapes, checkpoints and input errors."""

import math

import pytest
import torch

from espnet_ofa.models.pretrained import CheckpointError, load_student, save_student
from espnet_ofa.models.student import StudentConfig, build_student


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_student("tiny").eval()


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    wav_lengths = torch.tensor([8000, 48000, 23456])  # 0.5 s, 3 s, 1.47 s
    wav = 0.1 * torch.randn(3, int(wav_lengths.max()), generator=gen)
    wav = wav * (torch.arange(wav.shape[1])[None] < wav_lengths[:, None])
    return wav, wav_lengths


def frames_at_20ms(wav_lengths):
    return (wav_lengths - 400) // 320 + 1


@pytest.mark.parametrize("frame_period", [20.0, 45.0, 90.0, 33.3])
def test_lengths_follow_frame_period(student, batch, frame_period):
    wav, wav_lengths = batch
    with torch.no_grad():
        out = student(wav, wav_lengths, frame_period=frame_period)
    frames = frames_at_20ms(wav_lengths)
    assert torch.equal(out.frame_lengths, frames)
    assert torch.equal(out.lengths, torch.round(frames * 20.0 / frame_period).long())
    assert len(out.hidden) == student.num_hidden == 3
    for h in out.hidden:
        assert h.shape == (3, int(out.lengths.max()), 64)
        assert torch.isfinite(h).all()
    preds = student.predict(out.last_hidden)
    assert [p.shape for p in preds] == [(3, int(out.lengths.max()), 64)] * 2


def test_lam_zero_keeps_every_frame_and_default_uses_predictor(student, batch):
    wav, wav_lengths = batch
    with torch.no_grad():
        full = student(wav, wav_lengths, lam=0.0)
        own = student(wav, wav_lengths)
    assert torch.equal(full.lengths, frames_at_20ms(wav_lengths))
    predicted = torch.floor(own.alpha_pred.double().sum(1) + 1e-3).long()
    assert torch.equal(own.lengths, predicted)


def test_fixed_mode_pools_at_the_asked_period(batch):
    student = build_student("tiny", compression="fixed", default_frame_period=40.0).eval()
    wav, wav_lengths = batch
    frames = frames_at_20ms(wav_lengths)
    with torch.no_grad():
        assert torch.equal(student(wav, wav_lengths).lengths, frames // 2)
        assert torch.equal(student(wav, wav_lengths, frame_period=60.0).lengths, frames // 3)
        assert student(wav, wav_lengths).alpha_pred is None
    with pytest.raises(ValueError, match="lam needs the alpha predictor"):
        student(wav, wav_lengths, lam=0.5)


def test_gradients_reach_predictor_and_cnn(batch):
    student = build_student("tiny").train()
    wav, wav_lengths = batch
    out = student(wav, wav_lengths, frame_period=60.0)
    sum(p.square().mean() for p in student.predict(out.last_hidden)).backward()
    for module in (student.alpha_predictor, student.feature_extractor, student.transformer):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda w, l: (w[:, None], l), "2-D|\\(batch"),
        (lambda w, l: (w.clone().fill_(math.nan), l), "NaN"),
        (lambda w, l: (w[:, :300], torch.tensor([300, 300, 300])), "at least 400"),
        (lambda w, l: (w, l.clone().fill_(0)), "empty|at least"),
        (lambda w, l: (w, l + 1), "longer|length"),
    ],
)
def test_bad_waveforms_raise(student, batch, make_input, message):
    wav, wav_lengths = make_input(*batch)
    with pytest.raises(ValueError, match=message):
        student(wav, wav_lengths)


@pytest.mark.parametrize("kwargs, message", [
    (dict(frame_period=10.0), "outside the range"),
    (dict(frame_period=120.0), "outside the range"),
    (dict(frame_period=float("nan")), "finite"),
    (dict(frame_period="40"), "number of milliseconds"),
    (dict(frame_period=40.0, lam=0.5), "only one of frame_period and lam"),
    (dict(lam=3.0), "lam must be in"),
])
def test_bad_rates_raise(student, batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        student(*batch, **kwargs)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="total stride of 320"):
        StudentConfig(conv_layers=[(8, 10, 5), (8, 3, 2)])
    with pytest.raises(ValueError, match="compression"):
        StudentConfig(compression="pool")
    with pytest.raises(ValueError, match="preset"):
        build_student("huge")


def test_load_student_round_trip_and_errors(tmp_path, student, batch):
    exp = tmp_path / "exp"
    save_student(student, exp, "model.pth", preset="tiny")
    loaded = load_student(exp / "model.pth")
    with torch.no_grad():
        a = student(*batch, frame_period=50.0)
        b = loaded(*batch, frame_period=50.0)
    torch.testing.assert_close(a.last_hidden, b.last_hidden)

    with pytest.raises(CheckpointError, match="does not exist"):
        load_student(exp / "missing.pth")
    (exp / "corrupt.pth").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="truncated"):
        load_student(exp / "corrupt.pth")
    (tmp_path / "alone.pth").write_bytes((exp / "model.pth").read_bytes())
    with pytest.raises(CheckpointError, match="config.yaml"):
        load_student(tmp_path / "alone.pth")



def test_exact_lengths_under_bf16_autocast():
    # Mixed precision training/decoding: the predictor's weights come out in bf16.
    torch.manual_seed(0)
    student = build_student("tiny").eval()
    gen = torch.Generator().manual_seed(0)
    wav_lengths = torch.tensor([300000, 160000])  # 18.75 s, 10 s
    wav = 0.1 * torch.randn(2, int(wav_lengths.max()), generator=gen)
    wav = wav * (torch.arange(wav.shape[1])[None] < wav_lengths[:, None])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for period in (45.0, 85.0):
            out = student(wav, wav_lengths, frame_period=period)
            expected = torch.round(frames_at_20ms(wav_lengths) * 20.0 / period).long()
            assert torch.equal(out.lengths, expected), period
