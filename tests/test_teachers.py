"""Frozen teachers from every supported source give the hidden states of their model.

Each source test builds a tiny random torchaudio model, writes it in that source's
format (the inverse key mappings below stand in for fairseq / transformers, which are
not installed), loads it back with `load_teacher`, and compares the hidden states with
what the original torchaudio model computes.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
from typing import Dict, List, Sequence

import pytest
import torch
import torchaudio
import yaml

from espnet_ofa.teachers import (
    LOCAL_FORMATS_HELP,
    Teacher,
    TeacherLoadError,
    TeacherOutput,
    load_teacher,
    normalize_waveform,
    save_torchaudio_checkpoint,
)

CONV = [(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)]
LAYERS = (0, 1, 2)
LENGTHS = (8000, 5000)  # 24 and 15 frames


def tiny_kwargs(mode: str = "group_norm", layer_norm_first: bool = False, wavlm: bool = False) -> Dict:
    """torchaudio wav2vec2_model / wavlm_model arguments of a 2-layer, 32-wide model."""
    kwargs = dict(
        extractor_mode=mode,
        extractor_conv_layer_config=CONV,
        extractor_conv_bias=False,
        encoder_embed_dim=32,
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4,
        encoder_num_layers=2,
        encoder_num_heads=2,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=64,
        encoder_ff_interm_dropout=0.1,
        encoder_dropout=0.1,
        encoder_layer_norm_first=layer_norm_first,
        encoder_layer_drop=0.0,
    )
    if wavlm:
        kwargs.update(encoder_num_buckets=16, encoder_max_distance=32)
    return kwargs


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make every parameter distinct (layer norms start at 1/0), so a mapping that
    swaps two same-shaped weights cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model.eval()


def tiny_model(mode: str = "group_norm", layer_norm_first: bool = False, wavlm: bool = False,
               seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    factory = torchaudio.models.wavlm_model if wavlm else torchaudio.models.wav2vec2_model
    model = factory(**tiny_kwargs(mode, layer_norm_first, wavlm), aux_num_out=None)
    return perturb(model, seed)


def batch(seed: int = 0):
    """(2, 8000) padded waveforms and their lengths; padding holds garbage on purpose
    (a teacher must ignore it)."""
    gen = torch.Generator().manual_seed(seed)
    wav = torch.randn(len(LENGTHS), max(LENGTHS), generator=gen) * 0.3 + 0.05
    lengths = torch.tensor(LENGTHS)
    return wav, lengths


@torch.no_grad()
def reference(model: torch.nn.Module, wav: torch.Tensor, lengths=None) -> List[torch.Tensor]:
    """All hidden states [layer 0, 1, ..., L] straight from torchaudio.

    Layer 0 (the first Transformer layer's input) is rebuilt from torchaudio's own
    pre-processing steps, independently of the teacher's hook.
    """
    model.eval()
    feats, frame_lengths = model.feature_extractor(wav, lengths)
    x, _ = model.encoder._preprocess(feats, frame_lengths)
    layer0 = model.encoder.transformer._preprocess(x)
    outputs, _ = model.extract_features(wav, lengths)
    return [layer0] + list(outputs)


def assert_matches(teacher: Teacher, model: torch.nn.Module, layers: Sequence[int] = LAYERS,
                   normalize: bool = False, transform=None) -> TeacherOutput:
    """The teacher's padded-batch output = the model run on each utterance alone."""
    wav, lengths = batch()
    out = teacher(wav, lengths)
    frames = (lengths - 400) // 320 + 1
    assert torch.equal(out.lengths, frames)
    assert len(out.hidden) == len(layers)
    for i, n in enumerate(lengths.tolist()):
        utt = wav[i : i + 1, :n]
        if transform is not None:
            utt, _ = transform(utt.clone(), torch.tensor([n]))
        if normalize:
            utt = torch.nn.functional.layer_norm(utt, utt.shape)
        ref = reference(model, utt)
        t = int(frames[i])
        for h, k in zip(out.hidden, layers):
            assert h.shape == (2, (wav.shape[1] - 400) // 320 + 1, teacher.hidden_size)
            torch.testing.assert_close(h[i, :t], ref[k][0], rtol=1e-4, atol=1e-4)
            assert not h[i, t:].any(), "padded frames must be zero"
    return out


# ----------------------------------------------------------------------------------------
# The Teacher itself
# ----------------------------------------------------------------------------------------


def test_teacher_is_frozen_and_returns_requested_layers():
    model = tiny_model()
    teacher = Teacher(model, layers=(2, 0, -2))
    assert teacher.layers == (2, 0, 1)
    assert (teacher.hidden_size, teacher.num_layers) == (32, 2)
    assert (teacher.receptive_field, teacher.frame_shift) == (400, 320)
    assert teacher.feature_extractor is model.feature_extractor
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    wav, lengths = batch()
    wav.requires_grad_(True)
    before = wav.detach().clone()
    with torch.enable_grad():
        out = teacher(wav, lengths)
    assert all(h.grad_fn is None and not h.requires_grad for h in out.hidden)
    assert torch.equal(wav.detach(), before), "the caller's waveform must not change"
    assert_matches(teacher, model, layers=(2, 0, 1))


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_batched_cnn_is_padding_invariant(mode):
    # The default (batched) CNN normalises over valid samples only: the short utterance's
    # targets equal those of the utterance alone, and of the per-utterance mode.
    model = tiny_model(mode)
    wav, lengths = batch()
    teacher = Teacher(model, LAYERS)
    assert not teacher.cnn_per_utterance
    padded = teacher(wav, lengths)
    alone = teacher(wav[1:, : LENGTHS[1]], lengths[1:])
    per_utt = Teacher(model, LAYERS, cnn_per_utterance=True)(wav, lengths)
    for h_pad, h_alone, h_utt in zip(padded.hidden, alone.hidden, per_utt.hidden):
        assert relative_difference(h_pad[1, :15], h_alone[0]) < 1e-4
        assert relative_difference(h_pad, h_utt) < 1e-4
    # The unpadded utterance is exactly torchaudio's.
    ref = reference(model, wav[:1])
    for h, k in zip(padded.hidden, LAYERS):
        torch.testing.assert_close(h[0], ref[k][0])


def test_torchaudio_group_norm_cnn_depends_on_padding():
    # Why the masked normalisation exists: torchaudio's own batched CNN gives the short
    # utterance different frames than alone (so the check above can fail).
    model = tiny_model()
    wav, lengths = batch()
    with torch.no_grad():
        batched, _ = model.feature_extractor(wav, lengths)
        alone, _ = model.feature_extractor(wav[1:, : LENGTHS[1]], lengths[1:])
    assert relative_difference(batched[1, :15], alone[0]) > 1e-2


def test_nan_in_padding_does_not_reach_valid_frames():
    teacher = Teacher(tiny_model(), LAYERS)
    wav, lengths = batch()
    clean = teacher(wav, lengths)
    wav[1, LENGTHS[1]:] = float("nan")
    dirty = teacher(wav, lengths)
    for h_clean, h_dirty in zip(clean.hidden, dirty.hidden):
        assert torch.isfinite(h_dirty).all()
        torch.testing.assert_close(h_dirty, h_clean)


def test_short_utterance_gets_zero_frames():
    teacher = Teacher(tiny_model(), LAYERS)
    wav = torch.randn(2, 4000)
    out = teacher(wav, torch.tensor([4000, 300]))
    assert out.lengths.tolist() == [12, 0]
    assert all(not h[1].any() for h in out.hidden)


def test_bad_layers_and_inputs_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"layer 13 does not exist.*2 Transformer layers.*0\.\.2"):
        Teacher(model, layers=(1, 13))
    with pytest.raises(ValueError, match="layers must be"):
        Teacher(model, layers=())
    teacher = Teacher(model, LAYERS)
    with pytest.raises(ValueError, match=r"wav must be a \(batch, samples\)"):
        teacher(torch.randn(8000), torch.tensor([8000]))
    with pytest.raises(ValueError, match="wav_lengths must lie in"):
        teacher(torch.randn(2, 8000), torch.tensor([9000, 10]))
    with pytest.raises(ValueError, match="integer tensor"):
        teacher(torch.randn(2, 8000), torch.tensor([8000.0, 10.0]))


def test_normalize_waveform_is_per_utterance_over_valid_samples():
    wav, lengths = batch()
    out = normalize_waveform(wav, lengths)
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(out[i, :n], torch.nn.functional.layer_norm(wav[i, :n], (n,)))
        assert not out[i, n:].any()


# ----------------------------------------------------------------------------------------
# 1. torchaudio bundles
# ----------------------------------------------------------------------------------------


def test_bundle_name_is_case_insensitive_and_wrapped(monkeypatch):
    model = tiny_model()
    calls = []

    def get_model(*, dl_kwargs=None):
        calls.append(dl_kwargs)
        return model

    monkeypatch.setattr(torchaudio.pipelines.HUBERT_BASE, "get_model", get_model)
    teacher = load_teacher("hubert_base", layers=LAYERS, dl_kwargs={"progress": False})
    assert calls == [{"progress": False}]
    assert teacher.source == "torchaudio.pipelines.HUBERT_BASE"
    assert not teacher.normalize_waveform and not teacher.training
    assert_matches(teacher, model)


def test_large_bundle_wrapper_is_unwrapped_and_normalises(monkeypatch):
    model = tiny_model("layer_norm", layer_norm_first=True)

    class Wrapped(torch.nn.Module):  # what get_model returns for the "Large" bundles
        def __init__(self, inner):
            super().__init__()
            self.model, self.normalize_waveform = inner, True

    monkeypatch.setattr(torchaudio.pipelines.HUBERT_LARGE, "get_model",
                        lambda *, dl_kwargs=None: Wrapped(model))
    teacher = load_teacher("HUBERT_LARGE", layers=LAYERS)
    assert teacher.model is model and teacher.normalize_waveform
    assert_matches(teacher, model, normalize=True)


def test_bundle_offline_error_says_how_to_use_a_local_file(monkeypatch):
    def offline(*, dl_kwargs=None):  # what torch.hub raises without network
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchaudio.pipelines.WAVLM_BASE_PLUS, "get_model", offline)
    with pytest.raises(TeacherLoadError) as info:
        load_teacher("WAVLM_BASE_PLUS", layers=LAYERS)
    message = str(info.value)
    assert "WAVLM_BASE_PLUS" in message and "internet" in message
    assert "factory='wavlm_base'" in message and "checkpoints" in message
    assert "fairseq" in message and "Hugging Face" in message and "ESPnet" in message


def test_unknown_bundle_name_lists_known_ones():
    with pytest.raises(TeacherLoadError, match=r"unknown teacher 'HUBERT_TINY'.*HUBERT_BASE"):
        load_teacher("HUBERT_TINY", layers=LAYERS)
    with pytest.raises(TeacherLoadError, match="not a torchaudio bundle"):
        load_teacher("nonsense", layers=LAYERS, format="bundle")


# ----------------------------------------------------------------------------------------
# 2. fairseq / unilm checkpoints
# ----------------------------------------------------------------------------------------


def to_fairseq(state: Dict[str, torch.Tensor], mode: str = "group_norm") -> Dict[str, torch.Tensor]:
    """torchaudio -> fairseq parameter names (the inverse of torchaudio's _map_key),
    plus WavLM's unilm names; adds pre-training-only weights a loader must drop."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("feature_extractor.conv_layers."):
            i, kind, param = parts[2], parts[3], parts[4]
            if kind == "conv":
                out[f"feature_extractor.conv_layers.{i}.0.{param}"] = value
            elif mode == "group_norm":
                out[f"feature_extractor.conv_layers.{i}.2.{param}"] = value
            else:
                out[f"feature_extractor.conv_layers.{i}.2.1.{param}"] = value
        elif key.startswith("encoder.feature_projection.projection."):
            out["post_extract_proj." + parts[-1]] = value
        elif key.startswith("encoder.feature_projection.layer_norm."):
            out["layer_norm." + parts[-1]] = value
        elif key.startswith("encoder.transformer.pos_conv_embed.conv."):
            name = {"original0": "weight_g", "original1": "weight_v"}.get(parts[-1], parts[-1])
            out["encoder.pos_conv.0." + name] = value
        elif key.startswith("encoder.transformer.layer_norm."):
            out["encoder.layer_norm." + parts[-1]] = value
        else:
            i, rest = parts[3], ".".join(parts[4:])
            base = f"encoder.layers.{i}."
            if rest.startswith("attention.attention.in_proj_"):  # WavLM: split q, k, v
                q, k, v = value.chunk(3)
                kind = "weight" if rest.endswith("weight") else "bias"
                for name, part in zip("qkv", (q, k, v)):
                    out[f"{base}self_attn.{name}_proj.{kind}"] = part
                continue
            for ta, fs in (
                ("attention.attention.out_proj.", "self_attn.out_proj."),
                ("attention.gru_rel_pos_linear.", "self_attn.grep_linear."),
                ("attention.gru_rel_pos_const", "self_attn.grep_a"),
                ("attention.rel_attn_embed.", "self_attn.relative_attention_bias."),
                ("attention.", "self_attn."),
                ("layer_norm.", "self_attn_layer_norm."),
                ("feed_forward.intermediate_dense.", "fc1."),
                ("feed_forward.output_dense.", "fc2."),
                ("final_layer_norm.", "final_layer_norm."),
            ):
                if rest.startswith(ta):
                    out[base + fs + rest[len(ta):]] = value
                    break
            else:
                raise AssertionError(f"unmapped {key}")
    out["mask_emb"] = torch.randn(32)
    out["final_proj.weight"] = torch.randn(16, 32)
    out["label_embs_concat"] = torch.randn(10, 16)
    return out


def fairseq_model_cfg(mode: str = "default", layer_norm_first: bool = False, **extra) -> Dict:
    return dict(
        _name="hubert",
        extractor_mode=mode,
        conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
        encoder_layers=2,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=2,
        conv_pos=16,
        conv_pos_groups=4,
        layer_norm_first=layer_norm_first,
        activation_fn="gelu",
        **extra,
    )


def test_fairseq_hubert_cfg_checkpoint(tmp_path):
    model = tiny_model()
    path = tmp_path / "hubert_tiny.pt"
    torch.save({"cfg": {"model": fairseq_model_cfg(), "task": {"normalize": False}},
                "model": to_fairseq(model.state_dict())}, path)
    teacher = load_teacher(path, layers=LAYERS)
    assert teacher.source.startswith("fairseq:hubert")
    assert not teacher.normalize_waveform
    assert_matches(teacher, model)


def test_fairseq_old_args_layer_norm_large_style(tmp_path):
    """Old fairseq: argparse.Namespace 'args'; wav2vec 2.0 Large-like (layer-norm CNN,
    pre-LN Transformer, normalised input)."""
    model = tiny_model("layer_norm", layer_norm_first=True)
    cfg = fairseq_model_cfg("layer_norm", True, normalize=True)
    cfg.pop("_name")
    args = argparse.Namespace(arch="wav2vec2", **cfg)
    state = to_fairseq(model.state_dict(), mode="layer_norm")
    state["quantizer.vars"] = torch.randn(1, 8, 16)
    state["project_q.weight"] = torch.randn(16, 16)
    path = tmp_path / "wav2vec_small.pt"
    torch.save({"args": args, "model": state}, path)
    teacher = load_teacher(path, layers=LAYERS)
    assert teacher.normalize_waveform
    assert_matches(teacher, model, normalize=True)


def test_unilm_wavlm_flat_cfg(tmp_path):
    model = tiny_model(wavlm=True)
    cfg = fairseq_model_cfg(relative_position_embedding=True, num_buckets=16, max_distance=32,
                            gru_rel_pos=True, normalize=False)
    cfg.pop("_name")
    path = tmp_path / "WavLM-Tiny.pt"
    torch.save({"cfg": cfg, "model": to_fairseq(model.state_dict())}, path)
    teacher = load_teacher(path, layers=LAYERS)
    assert teacher.source.startswith("fairseq:wavlm")
    assert_matches(teacher, model)


def test_fairseq_finetuned_and_identity_projection(tmp_path):
    """A CTC fine-tuned checkpoint (w2v_encoder.* + proj head), whose pre-trained model
    had no post_extract_proj (CNN width == encoder width)."""
    model = tiny_model()
    with torch.no_grad():
        model.encoder.feature_projection.projection.weight.copy_(torch.eye(32))
        model.encoder.feature_projection.projection.bias.zero_()
    state = {f"w2v_encoder.w2v_model.{k}": v for k, v in to_fairseq(model.state_dict()).items()
             if not k.startswith("post_extract_proj")}
    state["w2v_encoder.proj.weight"] = torch.randn(30, 32)
    state["w2v_encoder.proj.bias"] = torch.randn(30)
    cfg = {"model": {"_name": "hubert_ctc", "w2v_args": {"model": fairseq_model_cfg(),
                                                         "task": {"normalize": False}}},
           "task": {"normalize": False}}
    path = tmp_path / "hubert_ctc.pt"
    torch.save({"cfg": cfg, "model": state}, path)
    teacher = load_teacher(path, layers=LAYERS)
    assert "fine-tuned" in teacher.source
    assert_matches(teacher, model)


def test_fairseq_pickled_config_needs_trust(tmp_path):
    import omegaconf  # an ESPnet dependency: always there

    model = tiny_model()
    cfg = omegaconf.OmegaConf.create({"model": fairseq_model_cfg(), "task": {"normalize": False}})
    path = tmp_path / "omega.pt"
    torch.save({"cfg": cfg, "model": to_fairseq(model.state_dict())}, path)
    with pytest.raises(TeacherLoadError, match="trust_checkpoint=True"):
        load_teacher(path, layers=LAYERS)
    teacher = load_teacher(path, layers=LAYERS, trust_checkpoint=True)
    assert_matches(teacher, model)
    # ... and can be converted once into the pickle-free torchaudio format.
    safe = save_torchaudio_checkpoint(tmp_path / "safe.pth", teacher)
    assert_matches(load_teacher(safe, layers=LAYERS), model)


def test_fairseq_weights_that_do_not_fit_the_config(tmp_path):
    model = tiny_model()
    state = to_fairseq(model.state_dict())
    del state["encoder.layers.1.fc2.weight"]
    path = tmp_path / "broken.pt"
    torch.save({"cfg": {"model": fairseq_model_cfg()}, "model": state}, path)
    with pytest.raises(TeacherLoadError, match=r"missing .*layers\.1\.feed_forward\.output_dense"):
        load_teacher(path, layers=LAYERS)


# ----------------------------------------------------------------------------------------
# 3. Hugging Face directories
# ----------------------------------------------------------------------------------------


def to_huggingface(state: Dict[str, torch.Tensor], prefix: str = "",
                   parametrized: bool = False) -> Dict[str, torch.Tensor]:
    """torchaudio -> transformers parameter names (Wav2Vec2Model / HubertModel / WavLMModel;
    with ``prefix`` as inside *ForCTC)."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("encoder.feature_projection."):
            key = key[len("encoder."):]
        elif key.startswith("encoder.transformer."):
            key = "encoder." + key[len("encoder.transformer."):]
            if not parametrized:
                key = key.replace("parametrizations.weight.original0", "weight_g")
                key = key.replace("parametrizations.weight.original1", "weight_v")
            if ".attention.attention.in_proj_" in key:  # WavLM
                kind = key.rsplit("_", 1)[-1]
                head = key.split(".attention.attention.")[0]
                for name, part in zip("qkv", value.chunk(3)):
                    out[prefix + f"{head}.attention.{name}_proj.{kind}"] = part
                continue
            key = key.replace(".attention.attention.out_proj.", ".attention.out_proj.")
        out[prefix + key] = value
    out[prefix + "masked_spec_embed"] = torch.randn(32)
    return out


def hf_config(model_type: str) -> Dict:
    config = dict(
        model_type=model_type,
        architectures=[{"wav2vec2": "Wav2Vec2Model", "hubert": "HubertForCTC",
                        "wavlm": "WavLMModel"}[model_type]],
        feat_extract_norm="group",
        conv_dim=[c for c, _, _ in CONV],
        conv_kernel=[k for _, k, _ in CONV],
        conv_stride=[s for _, _, s in CONV],
        conv_bias=False,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=False,
        hidden_act="gelu",
    )
    if model_type == "wavlm":
        config.update(num_buckets=16, max_bucket_distance=32)
    return config


@pytest.mark.parametrize(
    "model_type,prefix,parametrized",
    [("wav2vec2", "", False), ("hubert", "hubert.", True), ("wavlm", "", False)],
)
def test_huggingface_directory(tmp_path, model_type, prefix, parametrized):
    wavlm = model_type == "wavlm"
    model = tiny_model(wavlm=wavlm)
    state = to_huggingface(model.state_dict(), prefix, parametrized)
    if prefix:
        state["lm_head.weight"] = torch.randn(30, 32)
        state["lm_head.bias"] = torch.randn(30)
    (tmp_path / "config.json").write_text(json.dumps(hf_config(model_type)))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    torch.save(state, tmp_path / "pytorch_model.bin")
    teacher = load_teacher(tmp_path, layers=LAYERS)
    assert teacher.source.startswith(f"huggingface:{model_type}")
    assert teacher.normalize_waveform  # from preprocessor_config.json
    assert_matches(teacher, model, normalize=True)
    # The weights file or config.json itself also points at the directory.
    again = load_teacher(tmp_path / "config.json", layers=(2,), normalize_waveform=False)
    assert again.layers == (2,) and not again.normalize_waveform


def test_huggingface_safetensors(tmp_path):
    model = tiny_model()
    (tmp_path / "config.json").write_text(json.dumps(hf_config("wav2vec2")))
    try:
        from safetensors.torch import save_file
    except ImportError:
        # Without the package a safetensors-only directory says what to do.
        (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
        with pytest.raises(TeacherLoadError, match="pip install safetensors.*pytorch_model.bin"):
            load_teacher(tmp_path, layers=LAYERS)
        return
    save_file({k: v.contiguous() for k, v in to_huggingface(model.state_dict()).items()},
              str(tmp_path / "model.safetensors"))
    assert_matches(load_teacher(tmp_path, layers=LAYERS), model)


def test_huggingface_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hf_config("wav2vec2")))
    with pytest.raises(TeacherLoadError, match="no weights: expected pytorch_model.bin"):
        load_teacher(tmp_path, layers=LAYERS)
    (tmp_path / "config.json").write_text(json.dumps({**hf_config("wav2vec2"),
                                                      "model_type": "data2vec-audio"}))
    with pytest.raises(TeacherLoadError, match="model_type 'data2vec-audio' is not supported"):
        load_teacher(tmp_path, layers=LAYERS)


# ----------------------------------------------------------------------------------------
# 4. torchaudio state dicts
# ----------------------------------------------------------------------------------------


def test_torchaudio_format_round_trip(tmp_path):
    model = tiny_model(wavlm=True)
    path = save_torchaudio_checkpoint(tmp_path / "t.pth", model, "wavlm_model",
                                      tiny_kwargs(wavlm=True), normalize_waveform=True)
    stored = torch.load(path, weights_only=True)  # no pickled objects beyond tensors
    assert stored["torchaudio_factory"] == "wavlm_model"
    teacher = load_teacher(path, layers=LAYERS)
    assert teacher.normalize_waveform and teacher.factory == "wavlm_model"
    assert_matches(teacher, model, normalize=True)
    # The loaded teacher saves itself again, identically.
    again = load_teacher(save_torchaudio_checkpoint(tmp_path / "u.pth", teacher), layers=LAYERS)
    assert_matches(again, model, normalize=True)


def test_bare_state_dict_needs_factory(tmp_path):
    model = tiny_model()
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(TeacherLoadError, match="bare state dict.*factory='hubert_base'"):
        load_teacher(path, layers=LAYERS)
    teacher = load_teacher(path, layers=LAYERS, factory="wav2vec2_model",
                           factory_kwargs=tiny_kwargs())
    assert_matches(teacher, model)
    with pytest.raises(TeacherLoadError, match="unknown torchaudio factory 'hubert_tiny'"):
        load_teacher(path, layers=LAYERS, factory="hubert_tiny")


def test_hubert_pretrain_factory_keeps_the_encoder(tmp_path):
    kwargs = dict(tiny_kwargs(), mask_prob=0.8, mask_selection="static", mask_other=0.0,
                  mask_length=10, no_mask_overlap=False, mask_min_space=1,
                  mask_channel_prob=0.0, mask_channel_selection="static",
                  mask_channel_other=0.0, mask_channel_length=10,
                  no_mask_channel_overlap=False, mask_channel_min_space=1, skip_masked=False,
                  skip_nomask=False, num_classes=10, final_dim=16, feature_grad_mult=0.1)
    torch.manual_seed(0)
    pretrain = torchaudio.models.hubert_pretrain_model(**kwargs)
    perturb(pretrain)
    path = tmp_path / "pretrain.pth"
    torch.save({"torchaudio_factory": "hubert_pretrain_model", "factory_kwargs": kwargs,
                "state_dict": pretrain.state_dict()}, path)
    assert_matches(load_teacher(path, layers=LAYERS), pretrain.wav2vec2)


# ----------------------------------------------------------------------------------------
# 5. ESPnet hubert_train experiments
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def espnet_exp(tmp_path_factory):
    """A tiny hubert_train experiment: config.yaml as the trainer writes it, plus a
    valid.loss.best.pth of a model with random (perturbed) weights."""
    from espnet2.tasks.hubert import HubertTask
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    exp = tmp_path_factory.mktemp("exp") / "hubert_tiny"
    exp.mkdir()
    tokens = exp / "tokens.txt"
    tokens.write_text("\n".join(["<unk>", *map(str, range(5)), "<sos/eos>"]) + "\n")
    conv = json.dumps([list(c) for c in CONV]).replace(" ", "")
    argv = ["--output_dir", str(exp), "--token_list", str(tokens), "--num_classes", "5",
            "--input_size", "1", "--encoder", "torchaudio_hubert", "--model", "torchaudio",
            "--encoder_conf", f"extractor_conv_layer_config={conv}"]
    for key, value in dict(encoder_embed_dim=32, encoder_num_layers=2, encoder_num_heads=2,
                           encoder_ff_interm_features=64, encoder_pos_conv_kernel=16,
                           encoder_pos_conv_groups=4, final_dim=16).items():
        argv += ["--encoder_conf", f"{key}={value}"]
    args = HubertTask.get_parser().parse_args(argv)
    torch.manual_seed(0)
    model = perturb(HubertTask.build_model(args))
    with (exp / "config.yaml").open("w") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    torch.save(model.state_dict(), exp / "valid.loss.best.pth")
    return exp, model


def test_espnet_hubert_experiment(espnet_exp):
    exp, espnet_model = espnet_exp
    inner = espnet_model.encoder.hubert_pretrain_model.wav2vec2
    # ESPnet's default normalize, utterance_mvn (means only), removes each utterance's
    # mean; the teacher must too. (Its equivalence to ESPnet's layer is tested below;
    # ESPnet's own layer needs an N x N mask, too slow for a reference.)
    assert type(espnet_model.normalize).__name__ == "UtteranceMVN"
    assert espnet_model.normalize.norm_means and not espnet_model.normalize.norm_vars

    def transform(wav, lengths):
        return wav - wav.mean(dim=1, keepdim=True), lengths

    for source in (exp, exp / "config.yaml", exp / "valid.loss.best.pth"):
        teacher = load_teacher(source, layers=LAYERS)
        assert teacher.source.startswith("espnet:hubert_train")
        assert_matches(teacher, inner, transform=transform)


@pytest.mark.parametrize("conf", [dict(), dict(norm_vars=True), dict(norm_means=False, norm_vars=True),
                                  "global"])
def test_waveform_mvn_matches_espnet_layers(tmp_path, conf):
    """ESPnet's normalisers, rewritten without their N x N padding mask."""
    import numpy as np
    from espnet2.layers.global_mvn import GlobalMVN
    from espnet2.layers.utterance_mvn import UtteranceMVN

    from espnet_ofa.teachers.espnet_hubert import WaveformMVN

    if conf == "global":
        np.savez(tmp_path / "stats.npz", count=np.array(50.0), sum=np.array([5.0]),
                 sum_square=np.array([80.0]))
        layer = GlobalMVN(tmp_path / "stats.npz")
    else:
        layer = UtteranceMVN(**conf)
    wav = torch.randn(3, 600) + 0.5
    lengths = torch.tensor([600, 350, 0])
    expected, _ = layer(wav.clone(), lengths)
    got, _ = WaveformMVN(layer)(wav, lengths)
    torch.testing.assert_close(got[:2], expected[:2])
    assert not got[2].any() and torch.isfinite(got).all()


def test_espnet_checkpoint_choice_and_errors(espnet_exp, tmp_path):
    exp, espnet_model = espnet_exp
    other = tmp_path / "exp"
    other.mkdir()
    (other / "config.yaml").write_text((exp / "config.yaml").read_text())
    with pytest.raises(TeacherLoadError, match="no model checkpoint.*checkpoint="):
        load_teacher(other, layers=LAYERS)
    (other / "3epoch.pth").write_bytes((exp / "valid.loss.best.pth").read_bytes())
    teacher = load_teacher(other / "config.yaml", layers=LAYERS)
    assert teacher.source.endswith("3epoch.pth")
    with pytest.raises(TeacherLoadError, match="'nope.pth' not found"):
        load_teacher(other, layers=LAYERS, checkpoint="nope.pth")
    config = yaml.safe_load((exp / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**config, "encoder": "hubert_pretrain"}))
    with pytest.raises(TeacherLoadError, match="encoder 'torchaudio_hubert'.*fairseq"):
        load_teacher(other, layers=LAYERS)


# ----------------------------------------------------------------------------------------
# Errors common to every source
# ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(TeacherLoadError, match="does not exist") as info:
        load_teacher(tmp_path / "missing.pt", layers=LAYERS)
    assert LOCAL_FORMATS_HELP in str(info.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())  # random, but fixed
    with pytest.raises(TeacherLoadError, match="not a readable PyTorch checkpoint.*Re-download"):
        load_teacher(path, layers=LAYERS)
    good = tmp_path / "good.pt"
    torch.save({"cfg": {"model": fairseq_model_cfg()}, "model": to_fairseq(tiny_model().state_dict())}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(TeacherLoadError, match="not a readable PyTorch checkpoint"):
        load_teacher(truncated, layers=LAYERS)


def test_bad_layer_index_on_a_loaded_teacher(tmp_path):
    path = save_torchaudio_checkpoint(tmp_path / "t.pth", tiny_model(), "wav2vec2_model",
                                      tiny_kwargs())
    with pytest.raises(ValueError, match=r"layer 13 does not exist.*0\.\.2"):
        load_teacher(path, layers=(1, 13))
    with pytest.raises(ValueError, match="layer 4 does not exist"):
        load_teacher(path)  # the default (4, 8, 12) is for 12-layer models


def test_unknown_content_and_kwargs(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"hello": 1}, path)
    with pytest.raises(TeacherLoadError, match="no known teacher format"):
        load_teacher(path, layers=LAYERS)
    with pytest.raises(TypeError, match=r"\['checkpoint'\].*bundle"):
        load_teacher("HUBERT_BASE", layers=LAYERS, checkpoint="x.pth")
    with pytest.raises(TeacherLoadError, match="neither config.json"):
        load_teacher(tmp_path, layers=LAYERS)
