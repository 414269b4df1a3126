"""Model-level hooks that an OFA frontend needs from the ESPnet model around it.

A frontend only sees waveforms; two things need the whole model's ``forward``:

* reporting: the frame period in use joins the model's ``stats`` each step, so it shows in
  ESPnet's training log, ``images/frame_period.png`` and TensorBoard;
* rate learning: the antithetic estimate of ``dL/dperiod`` needs the task loss at two
  periods. The hooks run the model's forward a second time on the same batch at the other
  probe (with the same random numbers) and hand ESPnet's trainer the combined objective.

CTC feasibility: while the two probes run, a forward hook on each `torch.nn.CTCLoss` of
the model (ESPnet's CTC uses one, with ``reduction="none"``) records the per-utterance losses
and how many input frames each utterance lacks for `ctc_min_input_lengths`. An utterance
that CTC cannot emit at a probe (ESPnet's ``zero_infinity`` counts it as 0 loss, which
would make the longer probe look better) has its CTC term at that probe replaced, in the
comparison of the probes only, by `infeasible_ctc_value`: at least its loss at the other
probe (if feasible there) and what a model that knows nothing of it would pay, plus a
penalty per missing frame. Its coefficient in the total loss (e.g.
``ctc_weight / B``) comes from autograd, so any mix of CTC, intermediate CTC and attention
losses is handled. The model still trains on the losses ESPnet computed. The fraction of
utterances infeasible at a probe is reported as ``rate_infeasible``. CTC implementations that do not go through `torch.nn.CTCLoss` (ESPnet's
``gtnctc``, ``brctc``) are not seen.

They are PyTorch forward hooks on the model (not a wrapper class), so the model keeps its
type, state dict and ``encode``/``inference`` methods, and DataParallel replicas and DDP
run them too. ESPnet's task ``build_model`` installs them (`espnet_ofa.registration`);
call `attach_rate_learning` yourself for a model built another way. Works with models
whose forward returns ``(loss, stats, weight)`` or ``{"loss", "stats", "weight", ...}``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from espnet_ofa.frontend.learnable_rate import (
    RateStep,
    RngSnapshot,
    ctc_min_input_lengths,
    infeasible_ctc_value,
)
from espnet_ofa.frontend.lookup import find_ofa_frontend

_ATTACHED = "_espnet_ofa_hooks"
_STEP = "_espnet_ofa_rate_step"


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


class _NotComparable(Exception):
    """The probes' CTC terms cannot be matched this step (the rate then uses raw losses)."""


@dataclass
class _CTCCall:
    """One `torch.nn.CTCLoss` call: (B,) losses with their graph, (B,) fewest frames CTC
    needs and (B,) frames missing (0: feasible), and the output size."""

    losses: torch.Tensor
    need: torch.Tensor
    deficit: torch.Tensor
    vocab_size: int

    @property
    def feasible(self) -> torch.Tensor:
        return self.deficit == 0


_CTC_ARGS = ("log_probs", "targets", "input_lengths", "target_lengths")


class _CTCRecorder:
    """Records every `torch.nn.CTCLoss` call of one model while it is installed."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: List[_CTCCall] = []
        self.unusable = False  # a reduced (scalar) CTC loss: no per-utterance values
        self.handles = [
            m.register_forward_hook(self._record, with_kwargs=True)
            for m in model.modules() if isinstance(m, nn.CTCLoss)
        ]
        self.has_ctc = bool(self.handles)

    def _record(self, module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor):
        named = dict(zip(_CTC_ARGS, args), **kwargs)
        if output.dim() != 1:
            self.unusable = True
            return
        need = ctc_min_input_lengths(named["targets"], named["target_lengths"])
        deficit = (need - named["input_lengths"].to(need.device).long()).clamp_min(0)
        self.calls.append(_CTCCall(output, need, deficit, int(named["log_probs"].shape[-1])))

    def take(self) -> List[_CTCCall]:
        calls, self.calls = self.calls, []
        return calls

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _replaced_terms(loss: torch.Tensor, call: _CTCCall, replaced: torch.Tensor,
                    values: torch.Tensor) -> torch.Tensor:
    """0-dim: what replacing the CTC losses of the ``replaced`` utterances of ``call`` by
    ``values`` changes in ``loss``'s value."""
    if not (loss.requires_grad and call.losses.requires_grad):
        raise _NotComparable("the CTC losses have no graph to find their weight in the loss")
    # The weight of each utterance's CTC loss in the total (ctc_weight / B for ESPnet's CTC,
    # none for a call that does not reach it): the total is linear in them.
    (weight,) = torch.autograd.grad(loss.sum(), call.losses, retain_graph=True,
                                    allow_unused=True)
    if weight is None:
        return loss.new_zeros(())
    old = (weight * call.losses.detach()).nan_to_num(0.0, 0.0, 0.0)
    new = weight * values.to(weight.dtype)
    return (new - old).masked_fill(~replaced, 0.0).sum()


def _feasible_comparison(
    loss_plus: torch.Tensor,
    loss_minus: torch.Tensor,
    calls_plus: List[_CTCCall],
    calls_minus: List[_CTCCall],
) -> Tuple[Optional[Tuple[torch.Tensor, torch.Tensor]], float]:
    """The two losses with the CTC terms of utterances infeasible at a probe replaced by
    `infeasible_ctc_value` (the reference: the loss at the probe where it is feasible).

    Returns ``((value_plus, value_minus), infeasible_fraction)``, or ``(None, 0)`` when
    every utterance is feasible at both probes.
    """
    if len(calls_plus) != len(calls_minus) or any(
            a.losses.shape != b.losses.shape for a, b in zip(calls_plus, calls_minus)):
        raise _NotComparable("the two probes made different CTC calls")
    value_plus, value_minus = loss_plus.detach().sum(), loss_minus.detach().sum()
    infeasible_count, total = 0, 0
    for a, b in zip(calls_plus, calls_minus):
        infeasible = ~(a.feasible & b.feasible)
        total += infeasible.numel()
        if not infeasible.any():
            continue
        infeasible_count += int(infeasible.sum())
        a_loss, b_loss = a.losses.detach(), b.losses.detach()
        reference = torch.where(b.feasible, b_loss,
                                torch.where(a.feasible, a_loss, torch.zeros_like(a_loss)))
        value_plus = value_plus + _replaced_terms(
            loss_plus, a, ~a.feasible,
            infeasible_ctc_value(reference, a.need, a.deficit, a.vocab_size))
        value_minus = value_minus + _replaced_terms(
            loss_minus, b, ~b.feasible,
            infeasible_ctc_value(reference, b.need, b.deficit, b.vocab_size))
    fraction = infeasible_count / total if total else 0.0
    return ((value_plus, value_minus) if infeasible_count else None), fraction


def _pre_hook(model: nn.Module, args: tuple, kwargs: dict) -> None:
    frontend = find_ofa_frontend(model)
    stale = model.__dict__.pop(_STEP, None)
    if stale is not None:  # a forward that raised: its CTC hooks are still installed
        stale[3].remove()
    if frontend is None:
        return
    frontend.set_probe(None)
    if frontend.rate is None or not frontend.training or not torch.is_grad_enabled():
        return
    plus, minus = frontend.rate.probes()
    recorder = _CTCRecorder(model)
    model.__dict__[_STEP] = (plus, minus, RngSnapshot(_device(model)), recorder)
    frontend.set_probe(plus)


def _post_hook(model: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    frontend = find_ofa_frontend(model)
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

    plus, minus, rng, recorder = step
    try:
        calls_plus = recorder.take()
        rng.restore()
        frontend.set_probe(minus)
        # forward, not __call__: the hooks must not run again for the second probe.
        second = model.forward(*args, **kwargs)
        calls_minus = recorder.take()
    finally:
        frontend.set_probe(None)
        recorder.remove()
    loss_minus, stats_minus, _ = _unpack(second)
    compared, infeasible = None, 0.0
    if recorder.unusable:
        warnings.warn(
            "learnable_rate: a CTCLoss of this model reduces over the batch, so utterances "
            "that CTC cannot emit at a probed period (counted as 0 with zero_infinity) can "
            "bias the rate towards longer periods; use CTCLoss(reduction='none') as ESPnet's "
            "CTC does", RuntimeWarning, stacklevel=2)
    else:
        try:
            compared, infeasible = _feasible_comparison(loss, loss_minus, calls_plus, calls_minus)
        except _NotComparable as err:
            warnings.warn(f"learnable_rate: CTC feasibility not applied this step: {err}",
                          RuntimeWarning, stacklevel=2)
    objective, info = frontend.rate.combine(loss, loss_minus, plus, minus, compared=compared)
    stats = _mean_stats(stats, stats_minus)
    stats["loss"] = objective.detach()
    stats.update(_rate_stats(info, loss))
    if recorder.has_ctc:
        stats["rate_infeasible"] = _as_stat(infeasible, loss)
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
    if find_ofa_frontend(model) is None:
        return False
    if getattr(model, _ATTACHED, False):
        return True
    model.register_forward_pre_hook(_pre_hook, with_kwargs=True)
    model.register_forward_hook(_post_hook, with_kwargs=True)
    model.__dict__[_ATTACHED] = True
    return True
