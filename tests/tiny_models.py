"""Small models that several test files build the same way (``from tiny_models import ...``:
tests/ is on sys.path). The tiny OFA student itself is a conftest fixture
(``tiny_ofa_checkpoint``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from espnet_ofa.compression import cif, rate_alpha

REPO = Path(__file__).resolve().parents[1]

# A downstream ASR config on the tiny OFA student (one-block Transformer encoder/decoder).
TINY_ASR_CONF = REPO / "conf" / "tuning" / "train_asr_ofa_tiny.yaml"

# torchaudio.models.wav2vec2_model options of a HuBERT-shaped teacher small enough for a CPU
# test: 2 layers of 64 dims over the usual 20 ms convolutional extractor.
TINY_TEACHER = dict(
    extractor_mode="group_norm",
    extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
    extractor_conv_bias=False, encoder_embed_dim=64, encoder_projection_dropout=0.0,
    encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=2,
    encoder_num_heads=2, encoder_attention_dropout=0.0, encoder_ff_interm_features=128,
    encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False,
    encoder_layer_drop=0.0, aux_num_out=None,
)


def save_tiny_teacher(path: Path) -> Path:
    """A random-weight `TINY_TEACHER` (seed 0) saved as a torchaudio checkpoint at ``path``."""
    import torchaudio

    from espnet_ofa.teachers.torchaudio_checkpoint import save_torchaudio_checkpoint

    torch.manual_seed(0)
    save_torchaudio_checkpoint(path, torchaudio.models.wav2vec2_model(**TINY_TEACHER),
                               factory="wav2vec2_model", factory_kwargs=TINY_TEACHER)
    return path


class UniformCIF(nn.Module):
    """Stands in for the OFA student inside a real `OFAFrontend`: its input is already 20 ms
    frames, pooled by CIF with uniform weights at the period asked (fast; the rate control
    and its checks are the replaced student's)."""

    def __init__(self, student) -> None:
        super().__init__()
        self.check_rate = student.check_rate

    def forward(self, frames, lengths, frame_period=None, lam=None):
        valid = torch.arange(frames.shape[1])[None] < lengths[:, None]
        alpha = rate_alpha(0.2 * valid.float(), lengths, frame_period=frame_period, lam=lam)
        out = cif(frames, alpha, lengths)
        return SimpleNamespace(hidden=[out.frames], lengths=out.lengths)
