"""The s3prl upstream ``ofa_local``: registered by installing espnet_ofa, accepted by s3prl's
S3PRLUpstream/Featurizer and ESPnet's ``frontend: s3prl``, lengths exactly s3prl's."""

import math

import pytest
import torch

from espnet_ofa.compression import alpha_for_lengths, cif, lam_to_period
from espnet_ofa.integrations.s3prl import s3prl_lengths
from espnet_ofa.models.pretrained import load_student, save_student
from espnet_ofa.models.student import build_student

s3prl_nn = pytest.importorskip("s3prl.nn")  # imports s3prl.hub: the registration runs here

PERIODS = (20.0, 40.0, 42.5, 60.0, 90.0)


def cnn_frames(samples: int) -> int:
    return (samples - 400) // 320 + 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_student(build_student("tiny"), tmp_path_factory.mktemp("ofa"), preset="tiny")


def upstream(checkpoint, **extra_conf):
    return s3prl_nn.S3PRLUpstream("ofa_local", path_or_url=str(checkpoint),
                                  extra_conf=extra_conf).eval()


def agreeing_length(period: float, near: int):
    """A length near ``near`` samples where s3prl's count equals round(T * 20 / period);
    None where there is none (at 20 ms s3prl always counts one or two frames more)."""
    stride = round(period * 16)
    for n in range(near, near + 4000):
        if (n - 1) // stride + 1 == max(1, round(cnn_frames(n) * 20 / period)):
            return n
    return None


def test_registered_by_installing_the_package():
    assert "ofa_local" in s3prl_nn.S3PRLUpstream.available_names()
    # A local-path entry: s3prl lists it only where path_or_url may be given.
    assert "ofa_local" not in s3prl_nn.S3PRLUpstream.available_names(only_registered_ckpt=True)


@pytest.mark.parametrize("period", PERIODS)
def test_lengths_and_features_at_a_period(checkpoint, period):
    model = upstream(checkpoint, frame_period=period)
    stride = round(period * 16)
    assert model.downsample_rates == [stride] * model.num_layers
    assert len(set(model.hidden_sizes)) == 1 and model.num_layers == 3
    # Long, mid and short utterances, one of them where s3prl's and frontend: ofa's
    # counts agree (there the features must be the same as the student's at that period).
    same = agreeing_length(period, 12000)
    assert (same is None) == (period == 20.0)
    lengths = torch.tensor([16000, same or 12000, 7301, 900])
    gen = torch.Generator().manual_seed(2)
    wav = torch.randn(len(lengths), int(lengths.max()), generator=gen) * 0.1
    with torch.no_grad():
        hidden, hidden_lengths = model(wav, lengths)
    expected = ((lengths - 1) // stride + 1).tolist()
    for h, h_len in zip(hidden, hidden_lengths):
        assert h_len.tolist() == expected
        assert h.shape == (len(lengths), max(expected), model.hidden_sizes[0])
        for b, n in enumerate(expected):
            assert not h[b, n:].any()  # padding is zero
            assert h[b, n - 1].abs().sum() > 0  # the last counted frame is a real output
    ofa_counts = [max(1, round(cnn_frames(int(n)) * 20 / period)) for n in lengths]
    assert all(0 <= s - o <= 2 for s, o in zip(expected, ofa_counts))

    if same is None:
        return
    student = load_student(checkpoint).eval()
    with torch.no_grad():
        ref = student(wav[1:2, :same], torch.tensor([same]), frame_period=period)
    assert ref.lengths.tolist() == [expected[1]]
    for h, r in zip(hidden, ref.hidden):
        torch.testing.assert_close(h[1, :expected[1]], r[0], atol=1e-5, rtol=0)

    featurizer = s3prl_nn.Featurizer(model)
    feats, feat_lengths = featurizer(hidden, hidden_lengths)
    assert featurizer.downsample_rate == stride
    assert feats.shape == hidden[0].shape and feat_lengths.tolist() == expected


def test_lam_runs_at_its_period_in_whole_samples(checkpoint):
    model = upstream(checkpoint, lam=0.5)
    assert model.downsample_rates[0] == round(lam_to_period(0.5) * 16)


def test_alpha_for_lengths_gives_the_counts_asked():
    gen = torch.Generator().manual_seed(3)
    alpha_pred = torch.rand(3, 20, generator=gen)
    lengths = torch.tensor([20, 13, 5])
    for wanted in ([1, 1, 1], [7, 13, 5], [20, 4, 2]):
        alpha = alpha_for_lengths(alpha_pred, lengths, torch.tensor(wanted))
        out = cif(torch.randn(3, 20, 4, generator=gen), alpha, lengths)
        assert out.lengths.tolist() == wanted
        assert not alpha[1, 13:].any() and not alpha[2, 5:].any()
    with pytest.raises(ValueError, match="at most one output frame per input frame"):
        alpha_for_lengths(alpha_pred, lengths, torch.tensor([21, 1, 1]))
    with pytest.raises(ValueError, match=r"\[1, frames\]"):
        alpha_for_lengths(alpha_pred, lengths, torch.tensor([0, 1, 1]))


def test_s3prl_rule():
    assert s3prl_lengths(torch.tensor([1, 640, 641, 16000]), 640).tolist() == [1, 1, 2, 25]


@pytest.mark.parametrize("extra_conf, message", [
    ({"frame_period": 150.0}, "outside the range this model was trained for"),
    ({"frame_period": 41.03}, "whole number of samples"),
    ({"frame_period": 40.0, "sample_rate": 8000}, "resample"),
    ({}, "extra_conf {frame_period: P}"),
    ({"lam": 2.0}, "no finite frame period"),
])
def test_bad_rate_or_rate_of_audio_is_refused(checkpoint, extra_conf, message):
    with pytest.raises(ValueError, match=None) as err:
        upstream(checkpoint, **extra_conf)
    assert message in str(err.value)


def test_a_model_file_that_is_not_ofa_is_refused(tmp_path):
    import yaml

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"frontend": "default"}))
    torch.save({"encoder.w": torch.zeros(2)}, tmp_path / "valid.acc.best.pth")
    with pytest.raises(ValueError, match="ofa_local path_or_url=.*not an ofa_ssl_train config"):
        upstream(tmp_path / "valid.acc.best.pth", frame_period=40.0)
    with pytest.raises(ValueError, match="does not exist"):
        upstream(tmp_path / "missing.pth", frame_period=40.0)


def test_packed_model_as_path_or_url(checkpoint, tmp_path, monkeypatch):
    from espnet_ofa.zoo import pack_ofa_ssl

    monkeypatch.chdir(checkpoint.parent)
    packed = pack_ofa_ssl("config.yaml", checkpoint.name, tmp_path / "ofa.zip")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the zoo unpacks under ~/.cache
    model = upstream(packed, frame_period=60.0)
    direct = upstream(checkpoint, frame_period=60.0)
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        a, _ = model(wav, torch.tensor([8000]))
        b, _ = direct(wav, torch.tensor([8000]))
    torch.testing.assert_close(a[-1], b[-1])


def test_espnet_s3prl_frontend_with_ofa_local(checkpoint):
    from espnet2.asr.frontend.s3prl import S3prlFrontend

    frontend = S3prlFrontend(
        fs="16k", multilayer_feature=True,
        frontend_conf={"upstream": "ofa_local", "path_or_url": str(checkpoint),
                       "extra_conf": {"frame_period": 40.0}},
    ).eval()
    assert frontend.output_size() == 64 and frontend.hop_length == 640
    lengths = torch.tensor([16000, 5000])
    with torch.no_grad():
        feats, feat_lengths = frontend(torch.randn(2, 16000), lengths)
    assert feat_lengths.tolist() == [25, 8]
    assert feats.shape == (2, 25, 64) and not feats[1, 8:].any()
    assert math.isfinite(float(feats.sum()))
