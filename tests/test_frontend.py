"""`OFAFrontend` in-process: lengths, rates, layers, freezing, errors, ESPnet-side hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from espnet_ofa.frontend.espnet_hooks import attach_rate_learning
from espnet_ofa.frontend.ofa import ENV_FRAME_PERIOD, ENV_LAM, OFAFrontend, decoding_build
from espnet_ofa.models.pretrained import CheckpointError, save_student
from espnet_ofa.models.student import build_student
from espnet_ofa.zoo import ZooError


def frames_at_20ms(wav_lengths: torch.Tensor) -> torch.Tensor:
    return (wav_lengths - 400) // 320 + 1


@pytest.fixture(scope="module")
def checkpoint(tiny_ofa_checkpoint) -> Path:
    return tiny_ofa_checkpoint


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    wav_lengths = torch.tensor([32000, 8000, 23456, 16000])  # 2 s, 0.5 s, 1.47 s, 1 s
    wav = 0.1 * torch.randn(4, int(wav_lengths.max()), generator=gen)
    return wav * (torch.arange(wav.shape[1])[None] < wav_lengths[:, None]), wav_lengths


@pytest.fixture(autouse=True)
def no_env_rate(monkeypatch):
    monkeypatch.delenv(ENV_FRAME_PERIOD, raising=False)
    monkeypatch.delenv(ENV_LAM, raising=False)


def make(checkpoint, **conf) -> OFAFrontend:
    return OFAFrontend(**{"fs": "16k", "model": str(checkpoint), **conf})


@pytest.mark.parametrize("frame_period", [20, 45, 90])
def test_lengths_contract(checkpoint, batch, frame_period):
    frontend = make(checkpoint, frame_period=frame_period).eval()
    wav, wav_lengths = batch
    with torch.no_grad():
        feats, lengths = frontend(wav, wav_lengths)
    expected = torch.round(frames_at_20ms(wav_lengths) * 20.0 / frame_period).long()
    assert torch.equal(lengths, expected)
    # ESPnet's contract: padded length = the longest, D = output_size(), zero padding.
    assert feats.shape == (4, int(expected.max()), frontend.output_size())
    assert frontend.output_size() == 64
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(feats[b, n:] == 0) and feats[b, :n].abs().sum() > 0
    assert torch.isfinite(feats).all()


def test_lam_mode(checkpoint, batch):
    frontend = make(checkpoint, frame_period=None, lam=0.0).eval()
    with torch.no_grad():
        _, lengths = frontend(*batch)
    assert torch.equal(lengths, frames_at_20ms(batch[1]))  # lam = 0 keeps every 20 ms frame
    frontend.set_rate(lam=2.0)  # the authors' (2 - lam) * alpha_pred: nothing but one frame
    with torch.no_grad():
        assert frontend(*batch)[1].tolist() == [1, 1, 1, 1]


def test_set_rate_changes_length_without_reloading(checkpoint, batch):
    frontend = make(checkpoint, frame_period=60).eval()
    frames = frames_at_20ms(batch[1])
    weights = {k: v.clone() for k, v in frontend.state_dict().items()}
    with torch.no_grad():
        for period in (30, 90, 45):
            frontend.set_rate(frame_period=period)
            assert torch.equal(frontend(*batch)[1], torch.round(frames * 20.0 / period).long())
        frontend.set_rate(lam=0.0)
        assert torch.equal(frontend(*batch)[1], frames)
        frontend.set_rate()  # back to the configured 60 ms
        assert torch.equal(frontend(*batch)[1], torch.round(frames / 3.0).long())
    for k, v in frontend.state_dict().items():
        assert torch.equal(v, weights[k])
    with pytest.raises(ValueError, match="outside the range"):
        frontend.set_rate(frame_period=120)


def test_env_override_applies_at_decoding_only(checkpoint, batch, monkeypatch):
    monkeypatch.setenv(ENV_FRAME_PERIOD, "40")
    with decoding_build():
        frontend = make(checkpoint, frame_period=60)
    frames = frames_at_20ms(batch[1])
    with torch.no_grad():
        assert torch.equal(frontend.train()(*batch)[1], torch.round(frames / 3.0).long())
        assert torch.equal(frontend.eval()(*batch)[1], torch.round(frames / 2.0).long())
        # Built outside a decoding build (training): validation keeps the trained period.
        training = make(checkpoint, frame_period=60).eval()
        assert torch.equal(training(*batch)[1], torch.round(frames / 3.0).long())
    for value, message in (("10", f"{ENV_FRAME_PERIOD}.*outside the range"),
                           ("fast", "not a number"), ("nan", f"{ENV_FRAME_PERIOD}.*finite")):
        monkeypatch.setenv(ENV_FRAME_PERIOD, value)
        with pytest.raises(ValueError, match=message), decoding_build():
            make(checkpoint, frame_period=60)
    monkeypatch.setenv(ENV_FRAME_PERIOD, "40")
    monkeypatch.setenv(ENV_LAM, "0.5")
    with pytest.raises(ValueError, match=f"{ENV_FRAME_PERIOD}/{ENV_LAM}: set only one of"), \
            decoding_build():
        make(checkpoint, frame_period=60)


def test_env_override_never_reaches_an_espnet_training_build(checkpoint, tmp_path, monkeypatch):
    """ESPnet training builds with ASRTask.build_model, decoding with build_model_from_file."""
    import yaml

    import espnet_ofa

    espnet_ofa.register()
    from espnet2.tasks.asr import ASRTask

    args = ASRTask.get_parser().parse_args(["--token_list", "none", "--output_dir", "none"])
    conf = yaml.safe_load((Path(__file__).parents[1] / "conf/tuning/train_asr_ofa_tiny.yaml")
                          .read_text())
    vars(args).update(conf)
    args.frontend_conf = {**conf["frontend_conf"], "model": str(checkpoint)}
    args.token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    monkeypatch.setenv(ENV_FRAME_PERIOD, "40")
    trained = ASRTask.build_model(args)
    assert trained.frontend.eval().current_rate().frame_period == 60.0  # validation
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(vars(args)))
    decoder, _ = ASRTask.build_model_from_file(config, None)
    assert decoder.frontend.eval().current_rate().frame_period == 40.0  # Speech2Text's path
    assert decoder.frontend.train().current_rate().frame_period == 60.0
    monkeypatch.delenv(ENV_FRAME_PERIOD)
    assert ASRTask.build_model_from_file(config, None)[0].frontend.eval().current_rate() \
        .frame_period == 60.0


@pytest.mark.parametrize("conf, error, message", [
    (dict(fs="8k"), ValueError, r"16 kHz.*[Rr]esample.*fs: 16k"),
    (dict(fs=8000), ValueError, r"16 kHz.*[Rr]esample"),
    (dict(fs="fast"), ValueError, "not a sample rate"),
    (dict(frame_period=120), ValueError, r"outside the range.*\[20, 90\]"),
    (dict(frame_period=10), ValueError, "outside the range"),
    (dict(frame_period=60, lam=0.5), ValueError, "only one of frame_period and lam"),
    (dict(frame_period=None), ValueError, "set frame_period"),
    (dict(lam=3.0, frame_period=None), ValueError, r"lam must be in \[0, 2\]"),
    (dict(layer=7), ValueError, r"layer 7 does not exist.*0\.\.2.*-1"),
    (dict(rate_cost=0.1), ValueError, "learnable_rate: true"),
    (dict(learnable_rate=True, lam=0.5, frame_period=None), ValueError, "lam: null"),
    (dict(learnable_rate=True, rate_range=[10, 90]), ValueError, "inside the range"),
    (dict(learnable_rate=True, rate_range=[20, 40]), ValueError, "outside rate_range"),
])
def test_bad_configs_name_the_fix(checkpoint, conf, error, message):
    with pytest.raises(error, match=message):
        make(checkpoint, **conf)


def test_missing_or_unsupported_model_names_the_fix(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match=r"does not exist.*ofa_ssl_train.*frontend_conf.model"):
        OFAFrontend(fs="16k", model=str(tmp_path / "nowhere.pth"))
    with pytest.raises(CheckpointError, match="frontend_conf.model is required"):
        OFAFrontend(fs="16k")
    with pytest.raises(ZooError, match="not found.*packed .zip"):
        OFAFrontend(fs="16k", model=str(tmp_path / "ofa_model.zip"))
    with pytest.raises(ZooError, match="not found"):
        OFAFrontend(fs="16k", model="no_such_zoo_model")
    alone = tmp_path / "alone.pth"
    alone.write_bytes(checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="config.yaml"):
        OFAFrontend(fs="16k", model=str(alone))


def test_weighted_sum_is_learnable(checkpoint, batch):
    frontend = make(checkpoint, layer=-1).train()
    weights = frontend.layer_mix.weights
    assert weights.requires_grad and weights.shape == (3,)
    feats, _ = frontend(*batch)
    feats.square().mean().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    # Frozen SSL weights get no gradient (and no graph was built for them).
    assert all(p.grad is None and not p.requires_grad for p in frontend.student.parameters())


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_k_picks_hidden_state_k(checkpoint, batch, layer):
    frontend = make(checkpoint, layer=layer, frame_period=45).eval()
    reference = make(checkpoint, layer=-1, frame_period=45).eval()
    with torch.no_grad():
        feats, lengths = frontend(*batch)
        full = reference.student(*batch, frame_period=45)
    assert frontend.layer_mix is None
    assert len(frontend.student.transformer.layers) == layer  # layers above k are dropped
    expected = full.hidden[layer]
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(feats[b, :n], expected[b, :n])


def test_fine_tuning_reaches_the_ssl_weights(checkpoint, batch):
    frontend = make(checkpoint, freeze=False).train()
    assert frontend.student.training
    feats, _ = frontend(*batch)
    feats.square().mean().backward()
    grads = [p.grad for p in frontend.student.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    frozen = make(checkpoint, freeze=True).train()
    assert frozen.training and not frozen.student.training  # no dropout in a frozen model


def test_reload_pretrained_parameters_undoes_espnet_init(checkpoint, batch):
    from espnet2.torch_utils.initialize import initialize

    class Model(torch.nn.Module):  # initialize() looks for model.frontend
        def __init__(self):
            super().__init__()
            self.frontend = make(checkpoint, learnable_rate=True, frame_period=50)

    model = Model()
    before = {k: v.clone() for k, v in model.frontend.state_dict().items()}
    initialize(model, "xavier_uniform")  # ESPnet's `init: xavier_uniform` (calls reload)
    for k, v in model.frontend.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert model.frontend.rate.value == pytest.approx(50.0, abs=1e-3)


class TinyESPnetModel(torch.nn.Module):
    """Stands in for ESPnetASRModel: frontend -> linear -> (loss, stats, weight)."""

    def __init__(self, frontend):
        super().__init__()
        self.frontend = frontend
        self.head = torch.nn.Linear(frontend.output_size(), 1)
        self.periods = []

    def forward(self, speech, speech_lengths):
        self.periods.append(self.frontend.current_rate().frame_period)
        feats, lengths = self.frontend(speech, speech_lengths)
        valid = torch.arange(feats.shape[1])[None] < lengths[:, None]
        # A loss that grows with the number of frames: longer periods are better here.
        loss = (self.head(feats).squeeze(-1).square() * valid).sum() / len(lengths) + lengths.sum() * 0.01
        loss = loss.reshape(1)
        return loss, {"loss": loss.detach(), "acc": torch.tensor([0.5])}, torch.tensor([len(lengths)])


def test_rate_learning_hooks(checkpoint, batch):
    model = TinyESPnetModel(make(checkpoint, learnable_rate=True, frame_period=50, rate_cost=0.1))
    assert attach_rate_learning(model) and attach_rate_learning(model)  # idempotent
    rate = model.frontend.rate
    plus, minus = rate.probes()
    loss, stats, weight = model(*batch)
    # Training: two passes at the antithetic probes, objective = mean + cost.
    assert model.periods == [pytest.approx(plus), pytest.approx(minus)]
    assert set(stats) >= {"loss", "acc", "frame_period", "rate_slope"}
    assert float(stats["frame_period"]) == pytest.approx(50.0, abs=1e-3)
    loss.sum().backward()
    slope = float(stats["rate_slope"])
    assert slope < 0  # more frames, more loss: the loss falls as the period grows
    assert rate.raw.grad is not None and float(rate.raw.grad) < 0  # period will grow
    assert model.frontend._probe is None

    # Eval: one pass at the learnt period, which is reported; the cost is in the loss.
    model.periods.clear()
    model.eval()
    with torch.no_grad():
        loss, stats, _ = model(*batch)
    assert model.periods == [pytest.approx(rate.value)]
    assert float(stats["frame_period"]) == pytest.approx(rate.value)
    assert float(stats["loss"]) == pytest.approx(float(loss))


def test_hooks_report_fixed_rate_and_leave_other_models_alone(checkpoint, batch):
    model = TinyESPnetModel(make(checkpoint, frame_period=45))
    attach_rate_learning(model)
    _, stats, _ = model(*batch)
    assert model.periods == [45.0] and float(stats["frame_period"]) == 45.0

    class Other(torch.nn.Module):
        frontend = None

    assert not attach_rate_learning(Other())


def test_learnt_rate_is_saved_and_used_at_inference(checkpoint, batch):
    trained = make(checkpoint, learnable_rate=True, frame_period=50)
    trained.rate.reset(33.0)
    state = trained.state_dict()
    assert "rate.raw" in state
    fresh = make(checkpoint, learnable_rate=True, frame_period=50)
    fresh.load_state_dict(state)
    fresh.eval()
    with torch.no_grad():
        _, lengths = fresh(*batch)
    assert fresh.rate.value == pytest.approx(33.0, abs=1e-3)
    assert torch.equal(lengths, torch.round(frames_at_20ms(batch[1]) * 20.0 / fresh.rate.value).long())
    fresh.set_rate(frame_period=90)  # a decoding-time override beats the learnt value ...
    assert fresh.current_rate().frame_period == 90
    fresh.train()  # ... but training keeps learning the period
    assert fresh.current_rate().frame_period == pytest.approx(33.0, abs=1e-3)


def test_warns_when_rate_cannot_learn(checkpoint, batch):
    frontend = make(checkpoint, learnable_rate=True).train()
    with pytest.warns(RuntimeWarning, match="attach_rate_learning"):
        frontend(*batch)


def test_learnable_rate_range_defaults_to_the_trained_range(tmp_path):
    torch.manual_seed(0)
    narrow = save_student(build_student("tiny", frame_period_range=(30.0, 70.0)), tmp_path,
                          preset="tiny")
    frontend = make(narrow, learnable_rate=True, frame_period=None)
    assert (frontend.rate.low, frontend.rate.high) == (30.0, 70.0)
    assert frontend.rate.value == pytest.approx(50.0, abs=1e-3)
    with pytest.raises(ValueError, match=r"outside the range this model was trained for, "
                                         r"\[30, 70\] ms"):
        make(narrow, frame_period=20)
