"""``frontend: ssl_teacher``: a frozen off-the-shelf SSL model as an ESPnet frontend.

On the tiny random HuBERT-shaped teacher of tiny_models.py: shapes and lengths at 20, 40
and 80 ms, pooled values against the 20 ms features, what trains and what stays frozen,
an ESPnet ASR model with this frontend that trains a step and decodes, and the errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import TINY_TEACHER, save_tiny_teacher

from espnet_ofa.frontend.teacher import SSLTeacherFrontend
from espnet_ofa.teachers import TeacherLoadError, load_teacher

NUM_HIDDEN = TINY_TEACHER["encoder_num_layers"] + 1
DIM = TINY_TEACHER["encoder_embed_dim"]


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny_hubert.pth")


def _speech():
    torch.manual_seed(0)
    # 49 and 35 frames of 20 ms: (N - 400) // 320 + 1
    return 0.1 * torch.randn(2, 16000), torch.tensor([16000, 11300])


@pytest.mark.parametrize("pooled_period, lengths", [(None, [49, 35]), (40, [25, 18]),
                                                    (80, [13, 9])])
def test_shapes_and_lengths_at_20_40_80_ms(teacher_file, pooled_period, lengths):
    frontend = SSLTeacherFrontend(source=str(teacher_file), pooled_period=pooled_period)
    speech, speech_lengths = _speech()
    feats, out_lengths = frontend(speech, speech_lengths)
    assert frontend.output_size() == DIM
    assert out_lengths.tolist() == lengths  # ceil(frames / k): a partial window counts
    assert feats.shape == (2, lengths[0], DIM)
    assert torch.equal(feats[1, lengths[1]:], torch.zeros_like(feats[1, lengths[1]:]))
    assert frontend.extra_stats() == {"frame_period": float(pooled_period or 20)}


def test_features_are_the_teachers_layers_mixed_then_pooled(teacher_file):
    speech, speech_lengths = _speech()
    teacher = load_teacher(str(teacher_file), layers=tuple(range(NUM_HIDDEN)))
    hidden = teacher(speech, speech_lengths).hidden
    at20 = SSLTeacherFrontend(source=str(teacher_file))
    with torch.no_grad():
        at20.layer_mix.weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    mix = torch.softmax(at20.layer_mix.weights, 0)
    expected = sum(w * h for w, h in zip(mix, hidden))
    feats20, _ = at20(speech, speech_lengths)
    torch.testing.assert_close(feats20, expected)
    # layer: k is that hidden state as it is.
    one, _ = SSLTeacherFrontend(source=str(teacher_file), layer=1)(speech, speech_lengths)
    torch.testing.assert_close(one, hidden[1])

    pooled = SSLTeacherFrontend(source=str(teacher_file), pooled_period=80)
    pooled.load_state_dict(at20.state_dict())
    feats80, lengths80 = pooled(speech, speech_lengths)
    for b, frames in enumerate((49, 35)):
        for t in range(int(lengths80[b])):
            window = feats20[b, 4 * t:min(4 * t + 4, frames)]  # the last one: partial
            torch.testing.assert_close(feats80[b, t], window.mean(0))


def test_layer_weights_train_and_the_teacher_stays_frozen(teacher_file):
    frontend = SSLTeacherFrontend(source=str(teacher_file), pooled_period=40).train()
    assert not frontend.teacher.training  # train mode asked: the teacher runs no dropout
    before = {k: v.clone() for k, v in frontend.teacher.state_dict().items()}
    trainable = [p for p in frontend.parameters() if p.requires_grad]
    assert trainable == [frontend.layer_mix.weights]
    speech, speech_lengths = _speech()
    feats, _ = frontend(speech, speech_lengths)
    (feats ** 2).mean().backward()
    assert frontend.layer_mix.weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in frontend.teacher.parameters())
    torch.optim.SGD(frontend.parameters(), lr=1.0).step()
    assert all(torch.equal(before[k], v) for k, v in frontend.teacher.state_dict().items())


ASR_CONF = {
    "frontend": "ssl_teacher",
    "frontend_conf": {"fs": "16k", "layer": -1, "pooled_period": 40},
    "encoder": "transformer",
    "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 32,
                     "num_blocks": 1, "input_layer": "linear"},
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1},
    "model_conf": {"ctc_weight": 0.5},
    "init": "xavier_uniform",
}


def test_espnet_asr_model_trains_a_step_and_decodes(teacher_file, tmp_path):
    """ESPnet builds the model from a YAML naming ``frontend: ssl_teacher`` (its ``init:``
    reset does not reach the teacher), trains a step, and Speech2Text decodes with it."""
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.tasks.asr import ASRTask

    conf = {**ASR_CONF, "frontend_conf": {**ASR_CONF["frontend_conf"],
                                          "source": str(teacher_file)}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    tokens = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    (tmp_path / "tokens.txt").write_text("\n".join(tokens) + "\n")
    torch.manual_seed(0)
    args = ASRTask.get_parser().parse_args(
        ["--config", str(tmp_path / "train.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
         "--token_type", "char", "--output_dir", str(tmp_path / "exp")])
    model = ASRTask.build_model(args)
    fresh = load_teacher(str(teacher_file), layers=(0,))
    for name, value in fresh.state_dict().items():
        assert torch.equal(model.frontend.teacher.state_dict()[name], value), name

    model.train()
    speech, speech_lengths = _speech()
    text = torch.tensor([[2, 3, 4], [3, 2, -1]])
    loss, _, _ = model(speech, speech_lengths, text, torch.tensor([3, 2]))
    loss.backward()
    torch.optim.Adam(model.parameters(), lr=0.01).step()
    assert not torch.equal(model.frontend.layer_mix.weights, torch.zeros(NUM_HIDDEN))
    assert model.encode(speech, speech_lengths)[1].tolist() == [25, 18]  # 40 ms frames

    exp = tmp_path / "exp"
    exp.mkdir()
    saved = dict(vars(args), token_list=tokens)
    (exp / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    torch.save(model.state_dict(), exp / "model.pth")
    s2t = Speech2Text(asr_train_config=str(exp / "config.yaml"),
                      asr_model_file=str(exp / "model.pth"), beam_size=1, ctc_weight=0.5)
    torch.testing.assert_close(s2t.asr_model.frontend.layer_mix.weights,
                               model.frontend.layer_mix.weights)
    (hyp_text, hyp_tokens, _, _), *_ = s2t(speech[0])
    assert isinstance(hyp_text, str) and set(hyp_tokens) <= set(tokens)


def test_bad_options_say_what_to_do(teacher_file, tmp_path):
    with pytest.raises(TeacherLoadError, match="frontend_conf.source is required"):
        SSLTeacherFrontend()
    with pytest.raises(TeacherLoadError, match="unknown teacher 'HUBERT_TYPO'"):
        SSLTeacherFrontend(source="HUBERT_TYPO")
    with pytest.raises(TeacherLoadError, match="does not exist"):
        SSLTeacherFrontend(source=str(tmp_path / "missing" / "model.pth"))
    with pytest.raises(ValueError, match=r"integer multiple .*pooled_period: 40, 60 or 80"):
        SSLTeacherFrontend(source=str(teacher_file), pooled_period=50)
    with pytest.raises(ValueError, match=r"teacher has 3 hidden states .* use one of 0..2"):
        SSLTeacherFrontend(source=str(teacher_file), layer=3)
    with pytest.raises(ValueError, match="Resample the data to 16 kHz"):
        SSLTeacherFrontend(fs="8k", source=str(teacher_file))
    frontend = SSLTeacherFrontend(source=str(teacher_file))
    with pytest.raises(ValueError, match="shorter than the teacher's receptive field"):
        frontend(torch.zeros(2, 16000), torch.tensor([16000, 300]))


def test_registered_beside_ofa_in_every_task():
    from espnet_ofa.espnet_tasks import TASKS
    from espnet_ofa.registration import TEACHER_FRONTEND_NAME

    import importlib

    for task in TASKS.values():
        module = importlib.import_module(task.train_modules[0])
        assert module.frontend_choices.classes[TEACHER_FRONTEND_NAME] is SSLTeacherFrontend
