"""Student waveform fronts: frame counts, padding invariance, checkpoints, compile."""

import warnings

import pytest
import torch
from torch import nn

from espnet_ofa.models import fronts
from espnet_ofa.models.fronts import light_channels, masked_group_norm
from espnet_ofa.models.pretrained import load_student, save_student
from espnet_ofa.models.student import WAV2VEC2_CONV_LAYERS, StudentConfig, build_student

FRONTS = ["cnn", "light", "mel"]
# Small enough for a fast test; light/mel widths overridden to stay tiny.
SMALL = dict(light_channels=[8, 8, 8, 16, 16, 32, 32], mel_bins=24, mel_channels=32)


def tiny(front: str, seed: int = 0):
    torch.manual_seed(seed)
    student = build_student("tiny", front=front, **SMALL).eval()
    with torch.no_grad():  # norms start at 1/0: make their parameters matter
        for module in student.modules():
            if isinstance(module, nn.GroupNorm):
                module.weight.add_(0.3 * torch.randn_like(module.weight))
                module.bias.add_(0.3 * torch.randn_like(module.bias))
    return student


def padded_batch(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    # A DC offset and a ramp: a norm over the padding would see very different statistics.
    wav = 0.1 * torch.randn(len(lengths), int(lengths.max()), generator=gen) + 0.2
    wav = wav * (torch.arange(wav.shape[1])[None] < lengths[:, None])
    return wav, lengths


def relative_difference(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_masked_group_norm_equals_group_norm_on_the_valid_part():
    torch.manual_seed(0)
    for groups in (1, 4, 8):
        norm = nn.GroupNorm(groups, 8)
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
        x = torch.randn(3, 8, 50)
        lengths = torch.tensor([50, 20, 2])
        x[1, :, 20:] = 1e4  # padding that would dominate unmasked statistics
        x[2, :, 2:] = -3e3
        y = masked_group_norm(x, lengths, norm)
        for b, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(y[b, :, :n], norm(x[b : b + 1, :, :n])[0])
        torch.testing.assert_close(masked_group_norm(x[:1], None, norm), norm(x[:1]))


@pytest.mark.parametrize("front", FRONTS)
def test_every_front_gives_the_cnn_frame_count(front):
    student = tiny(front)
    lengths = [400, 401, 719, 720, 1040, 8000, 23456]
    wav, wav_lengths = padded_batch(lengths)
    with torch.no_grad():
        feats, frames = student.feature_extractor(wav, wav_lengths)
    expected = (wav_lengths - 400) // 320 + 1
    assert torch.equal(frames, expected)
    assert feats.shape == (len(lengths), (wav.shape[1] - 400) // 320 + 1,
                           student.feature_extractor.output_dim)
    for b, t in enumerate(expected.tolist()):
        assert not feats[b, t:].any(), "padded frames must be zero"
    assert student.config.receptive_field == 400


@pytest.mark.parametrize("front", FRONTS)
def test_features_do_not_depend_on_the_batch(front):
    student = tiny(front)
    wav, lengths = padded_batch([48000, 16000])  # 1 s utterance with 2 s of padding
    with torch.no_grad():
        feats, _ = student.feature_extractor(wav, lengths)
        alone_feats, _ = student.feature_extractor(wav[1:, :16000], lengths[1:])
        out = student(wav, lengths, frame_period=40.0)
        alone = student(wav[1:, :16000], lengths[1:], frame_period=40.0)
    assert relative_difference(feats[1, : alone_feats.shape[1]], alone_feats[0]) < 1e-4
    t = int(alone.lengths[0])
    assert int(out.lengths[1]) == t
    for h_pad, h_alone in zip(out.hidden, alone.hidden):
        assert relative_difference(h_pad[1, :t], h_alone[0]) < 1e-4


@pytest.mark.parametrize("front", FRONTS)
def test_nan_in_padding_does_not_reach_valid_frames(front):
    student = tiny(front)
    wav, lengths = padded_batch([16000, 9000])
    with torch.no_grad():
        clean = student(wav, lengths, frame_period=30.0)
        wav[1, 9000:] = float("nan")
        dirty = student(wav, lengths, frame_period=30.0)
    for h_clean, h_dirty in zip(clean.hidden, dirty.hidden):
        assert torch.isfinite(h_dirty).all()
        torch.testing.assert_close(h_dirty, h_clean)


@pytest.mark.parametrize("front", FRONTS)
def test_save_load_round_trip(tmp_path, front):
    student = tiny(front)
    wav, lengths = padded_batch([12000, 7000])
    save_student(student, tmp_path, "model.pth", preset="tiny")
    loaded = load_student(tmp_path / "model.pth")
    assert loaded.config.front == front
    with torch.no_grad():
        a = student(wav, lengths, frame_period=50.0)
        b = loaded(wav, lengths, frame_period=50.0)
    torch.testing.assert_close(b.last_hidden, a.last_hidden)


def test_teacher_cnn_loads_into_the_cnn_front():
    # A torchaudio FeatureExtractor's state dict (the teacher's CNN) has the cnn front's keys.
    import torchaudio

    conv = [tuple(layer) for layer in StudentConfig(**{"conv_layers": [
        (32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)]}
    ).conv_layers]
    teacher = torchaudio.models.wav2vec2_model(
        extractor_mode="group_norm", extractor_conv_layer_config=conv, extractor_conv_bias=False,
        encoder_embed_dim=32, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4, encoder_num_layers=1, encoder_num_heads=2,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=64,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False,
        encoder_layer_drop=0.0, aux_num_out=None).eval()
    student = tiny("cnn")
    student.feature_extractor.load_state_dict(teacher.feature_extractor.state_dict())
    wav, lengths = padded_batch([8000])
    with torch.no_grad():
        ours, _ = student.feature_extractor(wav, lengths)
        theirs, _ = teacher.feature_extractor(wav, lengths)
    torch.testing.assert_close(ours, theirs)  # no padding: torchaudio's computation
    with pytest.raises(RuntimeError, match="size mismatch"):
        tiny("light").feature_extractor.load_state_dict(teacher.feature_extractor.state_dict())


def test_light_and_mel_fronts_are_cheaper():
    assert light_channels(WAV2VEC2_CONV_LAYERS) == (64, 64, 64, 128, 256, 512, 512)
    from espnet_ofa.models.macs import count_macs

    wav = torch.zeros(1, 16000)
    macs = {}
    for front in FRONTS:
        module = fronts.build_front(front, WAV2VEC2_CONV_LAYERS)
        with torch.no_grad():
            macs[front] = count_macs(lambda: module(wav, None))
    assert 2.3e9 < macs["cnn"] < 2.6e9  # wav2vec 2.0's CNN, per second of audio
    assert macs["light"] < macs["cnn"] / 15
    assert macs["mel"] < macs["cnn"] / 30


@pytest.mark.parametrize("conf, message", [
    (dict(front="sinc"), "front must be one of"),
    (dict(front="light", light_channels=[8, 8]), "one positive width per conv layer"),
    (dict(front="light", light_channels=[8, 8, 0, 8, 8, 8, 8]), "positive"),
    (dict(front="mel", mel_bins=0), "mel_bins"),
])
def test_bad_front_configs_raise(conf, message):
    with pytest.raises(ValueError, match=message):
        build_student("tiny", **conf)


def test_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    student = tiny("mel")
    wav, lengths = padded_batch([9000, 6000])
    with torch.no_grad():
        eager = student(wav, lengths, frame_period=40.0).last_hidden

    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    student.enable_compile()
    with pytest.warns(RuntimeWarning, match="running it eagerly"), torch.no_grad():
        out = student(wav, lengths, frame_period=40.0).last_hidden
    torch.testing.assert_close(out, eager)


def test_compile_does_not_recompile_per_length():
    import torch._dynamo

    torch._dynamo.reset()
    student = tiny("light")
    student.enable_compile(backend="eager")  # dynamo's tracing without a C++ build
    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
        for n in (9000, 11000, 13000, 17000):
            wav, lengths = padded_batch([n, n - 3000])
            with torch.no_grad():
                out = student(wav, lengths, frame_period=40.0)
            assert torch.equal(out.frame_lengths, (lengths - 400) // 320 + 1)
            counts.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert counts[0] > 0
    assert counts[1:] == counts[1:2] * 3, f"graphs compiled after each call: {counts}"


@pytest.fixture(scope="module")
def mel_checkpoint(tmp_path_factory):
    exp = tmp_path_factory.mktemp("mel_exp")
    return save_student(tiny("mel"), exp, "model.pth", preset="tiny")


def frontend(checkpoint, **conf):
    from espnet_ofa.frontend.ofa import OFAFrontend

    return OFAFrontend(fs="16k", model=str(checkpoint), frame_period=40.0, **conf).eval()


def test_frontend_loads_any_front_and_autocasts_to_float32_features(mel_checkpoint):
    wav, lengths = padded_batch([12000, 7000])
    with torch.no_grad():
        ref, ref_lengths = frontend(mel_checkpoint)(wav, lengths)
        feats, feat_lengths = frontend(mel_checkpoint, autocast="bfloat16")(wav, lengths)
    assert torch.equal(feat_lengths, ref_lengths)
    assert feats.dtype == torch.float32 and feats.shape == ref.shape
    assert relative_difference(feats, ref) < 0.1  # bf16 precision, not a different model
    with pytest.raises(ValueError, match="autocast"):
        frontend(mel_checkpoint, autocast="int8")


def test_compiled_or_eager_builds_and_runs_inductor_code(monkeypatch):
    """The real torch.compile path, C++ build included, on a module small enough to build
    in seconds: no fallback, the output of eager, and a second length without a rebuild
    that falls back (dynamic shapes)."""
    import torch._dynamo
    import torch._inductor.config

    from espnet_ofa.models.student import CompiledOrEager

    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)  # no worker pool
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    compiled = CompiledOrEager(layer, "a layer", "inductor")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager warns
        for shape in ((3, 5, 8), (2, 7, 8)):
            x = torch.randn(shape)
            torch.testing.assert_close(compiled(x), layer(x))
    assert compiled.compiled is not None
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0


def test_frontend_compile_option_compiles_the_student(mel_checkpoint, monkeypatch):
    """``compile=True`` puts the front, the projection and the Transformer through
    torch.compile and runs them compiled (dynamo's tracing with its eager backend here: the
    C++ build is the test above)."""
    import torch._dynamo

    torch._dynamo.reset()
    wav, lengths = padded_batch([12000, 7000])
    with torch.no_grad():
        ref, _ = frontend(mel_checkpoint)(wav, lengths)
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda fn, **kw: real_compile(fn, **{**kw, "backend": "eager"}))
    compiled = frontend(mel_checkpoint, compile=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
        feats, _ = compiled(wav, lengths)
    parts = compiled.student._compiled
    assert set(parts) == {"front", "projection", "encode"}
    assert all(part.compiled is not None for part in parts.values())
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    torch.testing.assert_close(feats, ref)


def test_frontend_compile_option_falls_back_to_eager_with_a_warning(mel_checkpoint, monkeypatch):
    wav, lengths = padded_batch([12000, 7000])
    with torch.no_grad():
        ref, _ = frontend(mel_checkpoint)(wav, lengths)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: (lambda *a: 1 / 0))
    with pytest.warns(RuntimeWarning, match="running it eagerly"), torch.no_grad():
        feats, _ = frontend(mel_checkpoint, compile=True)(wav, lengths)
    torch.testing.assert_close(feats, ref)
