"""Model-level hooks that an OFA frontend needs from the ESPnet model around it.

A frontend only sees waveforms; two things need the whole model's ``forward``:

* reporting: the frame period in use joins the model's ``stats`` each step, so it shows in
  ESPnet's training log, ``images/frame_period.png`` and TensorBoard;
* rate learning: the antithetic estimate of ``dL/dperiod`` needs the task loss at two
  periods. The hooks run the model's forward a second time on the same batch at the other
  probe (with the same random numbers) and hand ESPnet's trainer the combined objective.

They are PyTorch forward hooks on the model (not a wrapper class), so the model keeps its
type, state dict and ``encode``/``inference`` methods, and DataParallel replicas and DDP
run them too. ESPnet's task ``build_model`` installs them (`espnet_ofa.registration`);
call `attach_rate_learning` yourself for a model built another way. Works with models
whose forward returns ``(loss, stats, weight)`` or ``{"loss", "stats", "weight", ...}``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from espnet_ofa.frontend.learnable_rate import RateStep, RngSnapshot
from espnet_ofa.frontend.lookup import find_ofa_frontend

_ATTACHED = "_espnet_ofa_hooks"
_STEP = "_espnet_ofa_rate_step"


def _ofa_frontend(model: nn.Module):
    return find_ofa_frontend(model)


def _device(model: nn.Module) -> Optional[torch.device]:
    for p in model.parameters():
        return p.device
    return None


def _unpack(output: Any) -> Tuple[torch.Tensor, Dict[str, Any], Any]:
    if isinstance(output, dict):
        return output["loss"], dict(output["stats"]), output["weight"]
    loss, stats, weight = output
    return loss, dict(stats), weight


def _pack(template: Any, loss: torch.Tensor, stats: Dict[str, Any], weight: Any) -> Any:
    if isinstance(template, dict):
        return {**template, "loss": loss, "stats": stats, "weight": weight}
    return loss, stats, weight


def _as_stat(value: Any, like: torch.Tensor) -> torch.Tensor:
    """A scalar as a (1,) tensor on the loss' device: what ESPnet's gatherable stats are."""
    value = torch.as_tensor(value, dtype=torch.float32, device=like.device).detach()
    return value.reshape(1)


def _mean_stats(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key in a.keys() | b.keys():
        x, y = a.get(key), b.get(key)
        if x is None or y is None:
            out[key] = x if y is None else y
        else:
            out[key] = (x + y) / 2
    return out


def _pre_hook(model: nn.Module, args: tuple, kwargs: dict) -> None:
    frontend = _ofa_frontend(model)
    model.__dict__.pop(_STEP, None)
    if frontend is None:
        return
    frontend.set_probe(None)
    if frontend.rate is None or not frontend.training or not torch.is_grad_enabled():
        return
    plus, minus = frontend.rate.probes()
    model.__dict__[_STEP] = (plus, minus, RngSnapshot(_device(model)))
    frontend.set_probe(plus)


def _post_hook(model: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    frontend = _ofa_frontend(model)
    if frontend is None:
        return None
    step = model.__dict__.pop(_STEP, None)
    loss, stats, weight = _unpack(output)
    if step is None:
        stats.update({k: _as_stat(v, loss) for k, v in frontend.extra_stats().items()})
        if frontend.rate is not None and frontend.rate.cost:
            # Validation reports the same objective that training minimises.
            loss = loss + frontend.rate.cost_term().detach()
            stats["loss"] = loss.detach()
        return _pack(output, loss, stats, weight)

    plus, minus, rng = step
    try:
        rng.restore()
        frontend.set_probe(minus)
        # forward, not __call__: the hooks must not run again for the second probe.
        second = model.forward(*args, **kwargs)
    finally:
        frontend.set_probe(None)
    loss_minus, stats_minus, _ = _unpack(second)
    objective, info = frontend.rate.combine(loss, loss_minus, plus, minus)
    stats = _mean_stats(stats, stats_minus)
    stats["loss"] = objective.detach()
    stats.update(_rate_stats(info, loss))
    return _pack(output, objective, stats, weight)


def _rate_stats(info: RateStep, like: torch.Tensor) -> Dict[str, torch.Tensor]:
    return {
        "frame_period": _as_stat(info.period, like),
        # dL/dperiod per ms as estimated this step: its sign says where the rate goes.
        "rate_slope": _as_stat(info.slope, like),
    }


def attach_rate_learning(model: nn.Module) -> bool:
    """Install the hooks on ``model`` if its ``frontend`` is an `OFAFrontend`.

    Idempotent. Returns True when the model has (now or already) the hooks.
    """
    if _ofa_frontend(model) is None:
        return False
    if getattr(model, _ATTACHED, False):
        return True
    model.register_forward_pre_hook(_pre_hook, with_kwargs=True)
    model.register_forward_hook(_post_hook, with_kwargs=True)
    model.__dict__[_ATTACHED] = True
    return True
