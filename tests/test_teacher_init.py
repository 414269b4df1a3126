"""Starting the student from its teacher (DistilHuBERT's initialisation)."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from espnet_ofa.models.student import build_student
from espnet_ofa.models.teacher_init import init_cnn_from_teacher, init_transformer_from_teacher
from espnet_ofa.teachers.base import Teacher

CONV = [(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)]


def _teacher(num_layers: int = 3, embed: int = 64) -> Teacher:
    torch.manual_seed(0)
    model = torchaudio.models.wav2vec2_model(
        extractor_mode="group_norm", extractor_conv_layer_config=CONV, extractor_conv_bias=False,
        encoder_embed_dim=embed, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4, encoder_num_layers=num_layers, encoder_num_heads=2,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=128,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False,
        encoder_layer_drop=0.0, aux_num_out=None)
    with torch.no_grad():  # distinct weights, so a wrong copy cannot pass unnoticed
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    return Teacher(model, layers=tuple(range(min(num_layers, 2) + 1)))


def test_student_from_teacher_reproduces_its_lower_layers():
    teacher = _teacher()
    student = build_student("tiny").eval()  # 2 layers, 64-d, the same CNN
    init_cnn_from_teacher(student, teacher)
    init_transformer_from_teacher(student, teacher)
    wav = torch.randn(1, 16000)
    lengths = torch.tensor([16000])
    # At lam = 0 every 20 ms frame fires alone: no compression, the teacher's own sequence.
    hidden = student(wav, lengths, lam=0.0).hidden
    target = teacher(wav, lengths).hidden
    for k in range(3):
        assert hidden[k].shape == target[k].shape
        torch.testing.assert_close(hidden[k], target[k], atol=1e-4, rtol=1e-4)


def test_mismatched_sizes_say_what_to_change():
    student = build_student("tiny")
    with pytest.raises(ValueError, match="Transformer layers, the teacher only 1"):
        init_transformer_from_teacher(student, _teacher(num_layers=1))
    with pytest.raises(ValueError, match="feature projection.*embed_dim"):
        init_transformer_from_teacher(student, _teacher(embed=32))
    wide = build_student("tiny", conv_layers=[(16, 10, 5)] + CONV[1:])
    with pytest.raises(ValueError, match="CNN.*conv_layers"):
        init_cnn_from_teacher(wide, _teacher())


def test_cheaper_fronts_are_left_to_the_distillation():
    light = build_student("tiny", front="light")
    before = {k: v.clone() for k, v in light.feature_extractor.state_dict().items()}
    init_cnn_from_teacher(light, _teacher())
    after = light.feature_extractor.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
