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

# The teachers the project documents: the torchaudio.models preset that rebuilds each
# (for the pickle-free format and the offline hint), whether the model expects
# normalised waveforms, and the file torchaudio downloads (under _DOWNLOAD_ROOT).
KNOWN_BUNDLES: Dict[str, Tuple[str, bool, str]] = {
    "HUBERT_BASE": ("hubert_base", False, "hubert_fairseq_base_ls960.pth"),
    "HUBERT_LARGE": ("hubert_large", True, "hubert_fairseq_large_ll60k.pth"),
    "WAVLM_BASE": ("wavlm_base", False, "wavlm_base.pth"),
    "WAVLM_BASE_PLUS": ("wavlm_base", False, "wavlm_base_plus.pth"),
    "WAV2VEC2_BASE": ("wav2vec2_base", False, "wav2vec2_fairseq_base_ls960.pth"),
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


def _offline_hint(name: str) -> str:
    if name not in KNOWN_BUNDLES:
        return ""
    factory, normalize, filename = KNOWN_BUNDLES[name]
    url = _DOWNLOAD_ROOT + filename
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    norm = ", normalize_waveform=True" if normalize else ""
    return (
        f"The bundle's weights are {url}: fetch that file on a machine with internet, then "
        f"either copy it to {cached} (torchaudio then finds it offline)\n"
        f"or call load_teacher('/path/to/{filename}', factory='{factory}'{norm}).\n"
    )


def _preset_of(name: str, model: torch.nn.Module) -> Optional[str]:
    """The torchaudio.models preset that rebuilds the bundle's model, if the model has
    exactly the preset's parameters (names and shapes; built on the meta device, free)."""
    if name not in KNOWN_BUNDLES:
        return None
    factory = KNOWN_BUNDLES[name][0]
    with torch.device("meta"):
        reference = getattr(torchaudio.models, factory)()
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    wanted = {key: value.shape for key, value in reference.state_dict().items()}
    return factory if shapes == wanted else None


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
            f"needs internet. Pass a local file instead.\n{_offline_hint(name)}"
            f"{LOCAL_FORMATS_HELP}"
        ) from err
    # Bundles of "Large" models come wrapped to layer-normalise the waveform (over the
    # whole padded batch); unwrap and let the Teacher normalise per utterance.
    wrapped_normalize = False
    if not hasattr(model, "feature_extractor") and hasattr(model, "model"):
        wrapped_normalize = bool(getattr(model, "normalize_waveform", False))
        model = model.model
    if normalize_waveform is None:
        normalize_waveform = wrapped_normalize or KNOWN_BUNDLES.get(name, (None, False))[1]
    # A preset (its defaults differ from the bundle's only in dropout, off in a frozen
    # teacher) lets the teacher be saved in the pickle-free torchaudio format.
    factory = _preset_of(name, model)
    return Teacher(
        model,
        layers,
        normalize_waveform=normalize_waveform,
        source=f"torchaudio.pipelines.{name}",
        factory=factory,
        factory_kwargs={} if factory else None,
        **teacher_kwargs,
    )
