"""Teachers from ESPnet ``hubert_train`` experiments (encoder ``torchaudio_hubert``).

The model is rebuilt from the experiment's ``config.yaml`` by ``HubertTask.build_model``;
its ``encoder.hubert_pretrain_model.wav2vec2`` is the torchaudio ``Wav2Vec2Model`` that
becomes the teacher. The model's ``normalize`` layer (``utterance_mvn`` by default:
per-utterance mean removal of the waveform) ran before the encoder in training, so the
teacher applies it too (:class:`WaveformMVN`, a linear-cost equivalent).

Checkpoint: ``checkpoint=`` if given (absolute, relative to the working directory, or
to the experiment directory), else the first of ``valid.loss.best.pth``, any other
``valid.*.best.pth``, ``latest.pth``, the highest ``N epoch.pth``, ``checkpoint.pth``.

Unlike ESPnet's ``build_model_from_file`` (which loads with ``strict=False``), the
encoder's weights must match exactly: a teacher left partly random would silently give
useless targets.
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import yaml
from torch import Tensor

from espnet_ofa.teachers.base import LOCAL_FORMATS_HELP, Teacher, TeacherLoadError
from espnet_ofa.teachers.serialization import load_checkpoint, load_strict

ENCODER_PREFIX = "encoder.hubert_pretrain_model.wav2vec2."


class WaveformMVN(torch.nn.Module):
    """ESPnet's ``UtteranceMVN`` / ``GlobalMVN`` on (B, N) waveforms, in O(B N).

    The same arithmetic as ESPnet's layers, but ESPnet builds their padding mask with
    ``make_pad_mask``'s ONNX-traceable path, which for 2-D input allocates an N x N
    matrix: 64 M elements for half a second of audio, far beyond any GPU for a few
    seconds. A teacher sees long utterances, so it uses this instead.
    """

    def __init__(self, normalize: torch.nn.Module) -> None:
        super().__init__()
        from espnet2.layers.global_mvn import GlobalMVN
        from espnet2.layers.utterance_mvn import UtteranceMVN

        if isinstance(normalize, UtteranceMVN):
            self.kind = "utterance"
        elif isinstance(normalize, GlobalMVN):
            self.kind = "global"
            self.register_buffer("mean", normalize.mean.detach().clone())
            self.register_buffer("std", normalize.std.detach().clone())
        else:
            raise TypeError(f"unsupported ESPnet normalize layer {type(normalize).__name__}")
        self.norm_means = bool(normalize.norm_means)
        self.norm_vars = bool(normalize.norm_vars)
        self.eps = float(normalize.eps)

    def forward(self, wav: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, N) waveforms, (B,) lengths -> normalised (B, N) (zero padded), lengths."""
        pad = torch.arange(wav.shape[1], device=wav.device)[None, :] >= lengths[:, None]
        wav = wav.masked_fill(pad, 0.0)
        if self.kind == "global":
            if self.norm_means:
                wav = (wav - self.mean.to(wav)).masked_fill(pad, 0.0)
            return (wav / self.std.to(wav) if self.norm_vars else wav), lengths
        count = lengths.clamp_min(1).to(wav.dtype)[:, None]
        centred = (wav - wav.sum(dim=1, keepdim=True) / count).masked_fill(pad, 0.0)
        if self.norm_means:
            wav = centred
        if self.norm_vars:
            var = centred.pow(2).sum(dim=1, keepdim=True) / count
            # ESPnet's floor: a silent utterance gets std = eps rather than 0.
            wav = wav / var.sqrt().clamp_min(self.eps)
        return wav, lengths


def is_espnet_source(path: Path) -> bool:
    return (path.is_dir() and (path / "config.yaml").is_file()) or (
        path.is_file() and path.suffix in (".yaml", ".yml")
    )


def find_checkpoint(exp_dir: Path, checkpoint: Optional[str] = None) -> Path:
    """The ``.pth`` to load from an experiment directory (see the module docstring)."""
    if checkpoint is not None:
        for candidate in (Path(checkpoint), exp_dir / checkpoint):
            if candidate.is_file():
                return candidate
        raise TeacherLoadError(
            f"ESPnet checkpoint {checkpoint!r} not found (looked in the working directory "
            f"and in {str(exp_dir)!r})"
        )
    candidates = [exp_dir / "valid.loss.best.pth"]
    candidates += sorted(exp_dir.glob("valid.*.best.pth"))
    candidates.append(exp_dir / "latest.pth")
    epochs = [(int(m.group(1)), p) for p in exp_dir.glob("*epoch.pth")
              if (m := re.fullmatch(r"(\d+)epoch\.pth", p.name))]
    candidates += [p for _, p in sorted(epochs, reverse=True)]
    candidates.append(exp_dir / "checkpoint.pth")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise TeacherLoadError(
        f"no model checkpoint in ESPnet experiment {str(exp_dir)!r}: expected "
        "valid.loss.best.pth, valid.*.best.pth, latest.pth or N epoch.pth there; pass "
        "checkpoint='path/to/model.pth' (--teacher_conf checkpoint=...) to choose one"
    )


def _read_config(config_path: Path) -> Dict[str, Any]:
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise TeacherLoadError(f"cannot read ESPnet config {str(config_path)!r}: {err}") from err
    if not isinstance(config, dict):
        raise TeacherLoadError(f"{str(config_path)!r} is not an ESPnet config (a YAML mapping)")
    encoder = config.get("encoder")
    if encoder != "torchaudio_hubert":
        hint = (
            " (fairseq's HuBERT: export it and load the fairseq .pt instead)"
            if encoder == "hubert_pretrain"
            else ""
        )
        raise TeacherLoadError(
            f"{str(config_path)!r} is not an ESPnet hubert_train config with encoder "
            f"'torchaudio_hubert' (encoder: {encoder!r}){hint}\n{LOCAL_FORMATS_HELP}"
        )
    return config


def _factory_kwargs(encoder_conf: Dict[str, Any]) -> Dict[str, Any]:
    """The encoder's settings (its defaults + encoder_conf) as wav2vec2_model arguments."""
    from espnet2.asr.encoder.hubert_encoder import TorchAudioHuBERTPretrainEncoder
    from torchaudio.models import wav2vec2_model

    defaults = {
        name: p.default
        for name, p in inspect.signature(TorchAudioHuBERTPretrainEncoder.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    wanted = inspect.signature(wav2vec2_model).parameters
    merged = {**defaults, **encoder_conf}
    kwargs = {k: v for k, v in merged.items() if k in wanted}
    kwargs["aux_num_out"] = None
    return kwargs


def teacher_from_espnet(
    source: Path,
    layers: Sequence[int],
    *,
    checkpoint: Optional[str] = None,
    normalize_waveform: Optional[bool] = None,
    **teacher_kwargs: Any,
) -> Teacher:
    """An ESPnet hubert_train experiment directory or config.yaml -> Teacher."""
    config_path = source / "config.yaml" if source.is_dir() else source
    exp_dir = config_path.parent
    config = _read_config(config_path)
    model_path = find_checkpoint(exp_dir, checkpoint)

    # Importing ESPnet takes seconds: only when an ESPnet teacher is asked for.
    from espnet2.tasks.hubert import HubertTask

    args = argparse.Namespace(**config)
    # Every weight comes from the checkpoint (checked below), so no initialisation:
    # it would be wasted work, and an init name this ESPnet lacks would fail.
    args.init = None
    try:
        espnet_model = HubertTask.build_model(args)
    except Exception as err:  # ESPnet raises many kinds on a bad config
        raise TeacherLoadError(
            f"ESPnet could not build the model of {str(config_path)!r}: "
            f"{type(err).__name__}: {err}"
        ) from err
    for part in ("frontend", "preencoder"):
        if getattr(espnet_model, part, None) is not None:
            raise TeacherLoadError(
                f"{str(config_path)!r} has a {part} ({type(getattr(espnet_model, part)).__name__}); "
                "a teacher takes raw waveforms into the torchaudio encoder (train with "
                "input_size: 1, i.e. no frontend)"
            )

    state = load_checkpoint(model_path)
    for wrapper in ("model", "module", "state_dict"):  # checkpoint.pth, DeepSpeed, Lightning
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not any(k.startswith(ENCODER_PREFIX) for k in state):
        raise TeacherLoadError(
            f"{str(model_path)!r} holds no '{ENCODER_PREFIX}*' weights: it is not a checkpoint "
            f"of the torchaudio_hubert model of {str(config_path)!r}"
        )
    wav2vec2 = espnet_model.encoder.hubert_pretrain_model.wav2vec2
    load_strict(
        wav2vec2,
        {k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)},
        repr(str(model_path)),
    )
    normalize = espnet_model.normalize
    if normalize is not None:
        load_strict(
            normalize,
            {k[len("normalize.") :]: v for k, v in state.items() if k.startswith("normalize.")},
            f"{str(model_path)!r} (normalize)",
        )
        try:
            normalize = WaveformMVN(normalize)
        except TypeError as err:
            raise TeacherLoadError(
                f"{str(config_path)!r}: {err}; a teacher supports normalize: utterance_mvn, "
                "global_mvn or null"
            ) from err
    return Teacher(
        wav2vec2,
        layers,
        normalize_waveform=bool(normalize_waveform),
        waveform_transform=normalize,
        source=f"espnet:hubert_train:{model_path}",
        factory="wav2vec2_model",
        factory_kwargs=_factory_kwargs(dict(config.get("encoder_conf") or {})),
        **teacher_kwargs,
    )
