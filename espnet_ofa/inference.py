"""Inference with ESPnet's own Speech2Text/Speech2Understand at a chosen frame period.

ESPnet's classes are used unmodified (the import hook makes them see ``frontend: ofa``);
this module only reaches the OFA frontend inside them to set the period, at loading or
between calls, without reloading anything.
"""

from __future__ import annotations

from typing import Any, Optional

TASK_CLASSES = {
    "asr": ("espnet2.bin.asr_inference", "Speech2Text"),
    "slu": ("espnet2.bin.slu_inference", "Speech2Understand"),
    "st": ("espnet2.bin.st_inference", "Speech2Text"),
}


def ofa_frontend(speech2x: Any):
    """The `OFAFrontend` of a Speech2Text / Speech2Understand (ASR, SLU or ST)."""
    from espnet_ofa.frontend.ofa import OFAFrontend

    for attr in ("asr_model", "st_model"):
        model = getattr(speech2x, attr, None)
        frontend = getattr(model, "frontend", None)
        if isinstance(frontend, OFAFrontend):
            return frontend
    raise ValueError(
        f"{type(speech2x).__name__} has no OFA frontend: this model was not trained with "
        "'frontend: ofa', so its frame period cannot be changed"
    )


def set_frame_period(speech2x: Any, frame_period: Optional[float] = None,
                     lam: Optional[float] = None) -> None:
    """Set the period (ms) or lambda of a loaded model; neither restores its own rate."""
    ofa_frontend(speech2x).set_rate(frame_period=frame_period, lam=lam)


def load_pretrained(model: str, task: str = "asr", frame_period: Optional[float] = None,
                    lam: Optional[float] = None, **kwargs: Any) -> Any:
    """ESPnet's ``from_pretrained`` for ``task``, then the asked rate.

    Args:
        model: a packed .zip, an ``espnet_model_zoo`` name, a URL or a Hugging Face id.
        task: "asr", "slu" or "st".
        kwargs: passed on to the Speech2* class (beam_size, ctc_weight, device, ...).
    """
    import importlib

    if task not in TASK_CLASSES:
        raise ValueError(f"task must be one of {sorted(TASK_CLASSES)}, got {task!r}")
    module, name = TASK_CLASSES[task]
    speech2x = getattr(importlib.import_module(module), name).from_pretrained(model, **kwargs)
    if frame_period is not None or lam is not None:
        set_frame_period(speech2x, frame_period, lam)
    return speech2x
