"""The OFA model as an ESPnet frontend (``frontend: ofa``) and adaptive rate learning.

Names are imported on first use, so that importing the light submodules (e.g.
``learnable_rate``) does not pull in ESPnet.
"""

from __future__ import annotations

from espnet_ofa.lazy_exports import lazy_exports

_EXPORTS = {
    "OFAFrontend": "espnet_ofa.frontend.ofa",
    "CachedOFAFrontend": "espnet_ofa.frontend.cached",
    "SSLTeacherFrontend": "espnet_ofa.frontend.teacher",
    "resolve_model": "espnet_ofa.frontend.ofa",
    "ENV_FRAME_PERIOD": "espnet_ofa.frontend.ofa",
    "ENV_LAM": "espnet_ofa.frontend.ofa",
    "LearnableRate": "espnet_ofa.frontend.learnable_rate",
    "WeightedLayerSum": "espnet_ofa.frontend.layers",
    "attach_rate_learning": "espnet_ofa.frontend.espnet_hooks",
    "find_ofa_frontend": "espnet_ofa.frontend.lookup",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
