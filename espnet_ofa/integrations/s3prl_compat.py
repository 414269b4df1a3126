"""Let s3prl 0.4.x import under torchaudio >= 2.9.

torchaudio 2.9 removed its I/O backends: ``torchaudio.set_audio_backend`` and the
``torchaudio.sox_effects`` module are gone. s3prl's hub (``s3prl.hub``, which
``S3PRLUpstream`` and ESPnet's ``frontend: s3prl`` import) still calls the first at import
time and imports the second, so it fails before any upstream is built. `patch_torchaudio`,
run by `espnet_ofa.registration` when ``s3prl`` is imported, puts both names back:

* ``set_audio_backend`` as a no-op (torchaudio has one I/O path now, nothing to choose);
* ``sox_effects.apply_effects_tensor`` raising an error that names the removal, so the two
  s3prl features that use SoX effects (mos_prediction, effects in load_audio) fail clearly
  when called; nothing else in s3prl reaches it.

It does nothing on a torchaudio that still has them.
"""

from __future__ import annotations

import importlib
import sys
import types

import torchaudio


def _sox_effects_removed(*args, **kwargs):
    raise RuntimeError(
        "torchaudio.sox_effects was removed in torchaudio 2.9; this s3prl feature needs "
        "SoX effects: apply them with the sox command line before loading the audio")


def patch_torchaudio(module: types.ModuleType = None) -> None:
    """Add the removed names s3prl imports (see the module docstring); idempotent."""
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend=None: None
    if "torchaudio.sox_effects" not in sys.modules:
        try:
            importlib.import_module("torchaudio.sox_effects")  # present before 2.9
        except ImportError:
            stub = types.ModuleType("torchaudio.sox_effects", "Removed in torchaudio 2.9.")
            stub.apply_effects_tensor = _sox_effects_removed
            stub.apply_effects_file = _sox_effects_removed
            sys.modules[stub.__name__] = stub
            torchaudio.sox_effects = stub
