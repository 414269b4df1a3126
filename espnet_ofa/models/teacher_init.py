"""Start a student from its teacher's weights, as DistilHuBERT does.

DistilHuBERT copies the teacher's CNN waveform encoder and its *first* Transformer layers
into the student before distillation; the student then begins close to the teacher's lower
layers and distils faster. Both models are built from torchaudio's wav2vec 2.0 components,
so the copy is a state-dict load per block, and a shape mismatch is a clear error.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def _load(target: torch.nn.Module, source: torch.nn.Module, what: str, fix: str) -> None:
    try:
        target.load_state_dict(source.state_dict())
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"cannot initialise the student's {what} from the teacher's: {first}. "
                         f"{fix}") from err


def init_cnn_from_teacher(student: torch.nn.Module, teacher: torch.nn.Module) -> None:
    """Copy the teacher's CNN waveform encoder into ``student.feature_extractor``.

    Only the ``cnn`` front has the teacher's layout; the cheaper ``light`` and ``mel`` fronts
    are learnt from scratch by the distillation, so they are left as they are (logged).
    """
    front = getattr(student.config, "front", "cnn")
    if front != "cnn":
        logger.info("Student front %r has no counterpart in the teacher: not initialised", front)
        return
    _load(student.feature_extractor, teacher.model.feature_extractor, "CNN",
          "Set student_conf.conv_layers to the teacher's CNN, or --init_cnn_from_teacher false")
    logger.info("Student CNN initialised from the teacher's")


def init_transformer_from_teacher(student: torch.nn.Module, teacher: torch.nn.Module) -> None:
    """Copy the teacher's feature projection, positional convolution, encoder layer norm and
    first ``student.config.num_layers`` Transformer layers into the student.

    Needs the same embedding size, heads and feed-forward size (and a post-LN or pre-LN
    layout) as the teacher; the student keeps its own alpha predictor and heads.
    """
    fix = ("Give the student the teacher's embed_dim, num_heads, ffn_dim, pos_conv_kernel, "
           "pos_conv_groups and layer_norm_first, or set init_transformer_from_teacher: false")
    encoder = teacher.model.encoder
    num_layers = len(student.transformer.layers)
    if num_layers > len(encoder.transformer.layers):
        raise ValueError(f"the student has {num_layers} Transformer layers, the teacher only "
                         f"{len(encoder.transformer.layers)}: cannot copy the first "
                         f"{num_layers}. {fix}")
    _load(student.feature_projection, encoder.feature_projection, "feature projection", fix)
    _load(student.transformer.pos_conv_embed, encoder.transformer.pos_conv_embed,
          "positional convolution", fix)
    _load(student.transformer.layer_norm, encoder.transformer.layer_norm, "encoder layer norm",
          fix)
    for i in range(num_layers):
        _load(student.transformer.layers[i], encoder.transformer.layers[i],
              f"Transformer layer {i + 1}", fix)
    logger.info("Student Transformer initialised from the teacher's first %d layers", num_layers)
