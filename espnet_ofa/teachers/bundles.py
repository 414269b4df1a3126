"""Teachers from torchaudio pipeline bundles (``torchaudio.pipelines.HUBERT_BASE``, ...).

``bundle.get_model()`` downloads the weights once into torch.hub's cache
(``torch.hub.get_dir()/checkpoints``) and loads them from there afterwards. Offline,
the download fails; the error then names the file to fetch elsewhere and the two ways
to use it (copy it into the cache, or pass it with ``factory=``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torchaudio
from torchaudio.pipelines import Wav2Vec2Bundle

from espnet_ofa.teachers.base import LOCAL_FORMATS_HELP, Teacher, TeacherLoadError

# The teachers the project documents, with the torchaudio.models preset that rebuilds
# each (for the offline hint) and whether the model expects normalised waveforms.
KNOWN_BUNDLES: Dict[str, Tuple[str, bool]] = {
    "HUBERT_BASE": ("hubert_base", False),
    "HUBERT_LARGE": ("hubert_large", True),
    "WAVLM_BASE": ("wavlm_base", False),
    "WAVLM_BASE_PLUS": ("wavlm_base", False),
    "WAV2VEC2_BASE": ("wav2vec2_base", False),
}
_DOWNLOAD_ROOT = "https://download.pytorch.org/torchaudio/models/"


def bundle_names() -> Tuple[str, ...]:
    """Every Wav2Vec2Bundle in torchaudio.pipelines (the documented five among them)."""
    return tuple(
        sorted(
            name
            for name in dir(torchaudio.pipelines)
            if isinstance(getattr(torchaudio.pipelines, name), Wav2Vec2Bundle)
        )
    )


def find_bundle(name: str) -> Optional[str]:
    """Case-insensitive bundle lookup: the canonical name, or None."""
    wanted = name.strip().upper()
    return wanted if wanted in bundle_names() else None


def _offline_hint(name: str, bundle: Any) -> str:
    filename = getattr(bundle, "_path", None)  # private, hence the getattr
    if not filename:
        return ""
    url = filename if filename.startswith("https") else _DOWNLOAD_ROOT + filename
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    factory, normalize = KNOWN_BUNDLES.get(name, (None, False))
    lines = [
        f"The bundle's weights are {url}: fetch that file on a machine with internet, then "
        f"either copy it to {cached} (torchaudio then finds it offline)",
    ]
    if factory is not None:
        norm = ", normalize_waveform=True" if normalize else ""
        lines.append(f"or call load_teacher('/path/to/{os.path.basename(url)}', factory='{factory}'{norm}).")
    return "\n".join(lines) + "\n"


def teacher_from_bundle(
    name: str,
    layers: Sequence[int],
    *,
    dl_kwargs: Optional[Dict[str, Any]] = None,
    normalize_waveform: Optional[bool] = None,
    **teacher_kwargs: Any,
) -> Teacher:
    """``torchaudio.pipelines.<name>.get_model()`` -> Teacher.

    Args:
        name: canonical bundle name (see :func:`find_bundle`).
        dl_kwargs: passed to ``torch.hub.load_state_dict_from_url`` (e.g. ``model_dir``).
    """
    bundle = getattr(torchaudio.pipelines, name)
    try:
        model = bundle.get_model(dl_kwargs=dl_kwargs)
    except Exception as err:  # URLError/OSError offline, HTTPError, hash mismatch, ...
        raise TeacherLoadError(
            f"could not get the weights of torchaudio bundle {name} "
            f"({type(err).__name__}: {err}); torchaudio downloads them on first use, which "
            f"needs internet. Pass a local file instead.\n{_offline_hint(name, bundle)}"
            f"{LOCAL_FORMATS_HELP}"
        ) from err
    # Bundles of "Large" models come wrapped to layer-normalise the waveform (over the
    # whole padded batch); unwrap and let the Teacher normalise per utterance.
    wrapped_normalize = False
    if not hasattr(model, "feature_extractor") and hasattr(model, "model"):
        wrapped_normalize = bool(getattr(model, "normalize_waveform", False))
        model = model.model
    if normalize_waveform is None:
        normalize_waveform = wrapped_normalize or bool(getattr(bundle, "_normalize_waveform", False))
    # The preset arguments (private attributes: optional) let the teacher be saved in
    # the pickle-free torchaudio format; kept only if they describe the model we got.
    params = getattr(bundle, "_params", None)
    model_type = getattr(bundle, "_model_type", "Wav2Vec2")
    if not isinstance(params, dict) or params.get("encoder_num_layers") != len(
        model.encoder.transformer.layers
    ) or params.get("encoder_embed_dim") != model.encoder.feature_projection.projection.out_features:
        params = None
    return Teacher(
        model,
        layers,
        normalize_waveform=normalize_waveform,
        source=f"torchaudio.pipelines.{name}",
        factory=("wavlm_model" if model_type == "WavLM" else "wav2vec2_model") if params else None,
        factory_kwargs=params,
        **teacher_kwargs,
    )
