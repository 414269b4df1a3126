"""Find the OFA frontend inside an ESPnet model or inference object (no ESPnet import).

The one place that knows where a frontend sits: ``model.frontend`` of an ESPnet model, and
the model attributes of ESPnet's ``Speech2*`` classes (`espnet_ofa.espnet_tasks`).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from espnet_ofa.espnet_tasks import model_attributes

_OFA_MODULE = "espnet_ofa.frontend.ofa"


def find_ofa_frontend(obj: Any) -> Optional[Any]:
    """The `OFAFrontend` of ``obj``, or None if it has none.

    Args:
        obj: an `OFAFrontend`, an ESPnet model (``obj.frontend``) or a ``Speech2Text`` /
            ``Speech2Understand`` (``obj.asr_model.frontend``, ``obj.st_model.frontend``).
    """
    module = sys.modules.get(_OFA_MODULE)
    if module is None:
        return None  # the frontend class was never imported, so no object can be one
    cls = module.OFAFrontend
    if isinstance(obj, cls):
        return obj
    for holder in (obj, *(getattr(obj, attr, None) for attr in model_attributes())):
        frontend = getattr(holder, "frontend", None)
        if isinstance(frontend, cls):
            return frontend
    return None
