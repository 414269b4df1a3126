"""Inference with ESPnet's own Speech2Text/Speech2Understand at a chosen frame period.

ESPnet's classes are used unmodified (the import hook makes them see ``frontend: ofa``).
Models are found, verified and unpacked by `espnet_ofa.zoo` (local path, URL, local zoo
``$ESPNET_OFA_ZOO``, package table, Hugging Face id), so a zoo name works offline and a
truncated download says to download again; this module then builds the task's inference
class from the unpacked files and reaches the OFA frontend inside it to set the period, at
loading or between calls, without reloading anything.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from espnet_ofa.espnet_tasks import get_task
from espnet_ofa.frontend.lookup import find_ofa_frontend
from espnet_ofa.zoo.archive import PathLike, ZooError
from espnet_ofa.zoo.hub import download_and_unpack


def set_frame_period(speech2x: Any, frame_period: Optional[float] = None,
                     lam: Optional[float] = None) -> None:
    """Set the period (ms) or lambda of a loaded model; neither restores its own rate.

    Raises:
        ValueError: the model has no OFA frontend.
    """
    frontend = find_ofa_frontend(speech2x)
    if frontend is None:
        raise ValueError(
            f"{type(speech2x).__name__} has no OFA frontend: this model was not trained with "
            "'frontend: ofa', so its frame period cannot be changed"
        )
    frontend.set_rate(frame_period=frame_period, lam=lam)


def load_pretrained(model: str, task: str = "asr", frame_period: Optional[float] = None,
                    lam: Optional[float] = None, zoos: Sequence[PathLike] = (),
                    cachedir: Optional[PathLike] = None, **kwargs: Any) -> Any:
    """Load a packed downstream model with ESPnet's inference class for ``task``, then set
    the asked rate.

    Args:
        model: a packed .zip, a URL, a name in a local zoo (``$ESPNET_OFA_ZOO`` or ``zoos``)
            or the package table, or a Hugging Face id.
        task: a task of `espnet_ofa.espnet_tasks` ("asr", "slu", "st", "asr_transducer").
        kwargs: passed on to the Speech2* class (beam_size, ctc_weight, device, ...).

    Raises:
        ZooError: the model cannot be found, fetched or read, or is not a ``task`` model.
        ValueError: an unknown task, or a rate outside the model's range.
    """
    spec = get_task(task)
    files = download_and_unpack(model, zoos, cachedir)
    if spec.config_key not in files or spec.model_key not in files:
        raise ZooError(
            f"model {model!r} holds {', '.join(sorted(files))}, not a {task} model "
            f"({spec.config_key}, {spec.model_key}); an OFA SSL model is used as "
            "frontend_conf.model of a downstream task, or pass the right --task"
        )
    speech2x = spec.inference_cls()(**{spec.config_key: files[spec.config_key],
                                       spec.model_key: files[spec.model_key],
                                       **dict(spec.inference_kwargs), **kwargs})
    if frame_period is not None or lam is not None:
        set_frame_period(speech2x, frame_period, lam)
    return speech2x
