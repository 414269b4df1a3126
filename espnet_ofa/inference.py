"""Inference with ESPnet's own Speech2Text/Speech2Understand at a chosen frame period.

ESPnet's classes are used unmodified (the import hook makes them see ``frontend: ofa``).
Models are found, verified and unpacked by `espnet_ofa.zoo` (local path, URL, local zoo
``$ESPNET_OFA_ZOO``, package table, Hugging Face id), so a zoo name works offline and a
truncated download says to download again; this module then builds the task's inference
class from the unpacked files and reaches the OFA frontend inside it to set the period, at
loading or between calls, without reloading anything.

A CTC-only model (``ctc_weight: 1.0``, no attention decoder) can be decoded by the best
path instead of ESPnet's CTC prefix beam search (`use_ctc_greedy_search`): on the CPU the
prefix search costs 10-20x the frozen frontend and encoder together (what it gains in
accuracy is measured in docs/speechocean762.md).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch

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


class CTCGreedySearch(torch.nn.Module):
    """Best-path CTC decoding in the place of an ESPnet inference object's ``beam_search``.

    Called like ESPnet's ``BeamSearch`` (``x``: encoder output (T, D) of one utterance) and
    returning one ``Hypothesis`` whose ``yseq`` is ``<sos> tokens <eos>``, so the inference
    class turns it into (text, tokens, token ids, hypothesis) as it does a beam's best.
    The tokens: the most likely CTC label of every frame (from the CTC head's
    ``log_softmax``, which also gives the score), repeats merged, blanks dropped; the
    score: the sum of those frames' log-probabilities.
    """

    def __init__(self, ctc: torch.nn.Module, sos: int, eos: int, blank: int = 0,
                 token_list: Optional[Sequence[str]] = None):
        super().__init__()
        self.ctc = ctc
        self.sos, self.eos, self.blank = sos, eos, blank
        self.token_list = list(token_list) if token_list is not None else None
        # ESPnet's inference classes look for a decoder among the searched modules.
        self.nn_dict = torch.nn.ModuleDict()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, maxlenratio: float = 0.0,
                minlenratio: float = 0.0) -> List[Any]:
        from espnet2.legacy.nets.beam_search import Hypothesis

        logp = self.ctc.log_softmax(x.unsqueeze(0))[0]  # (T, V)
        score, best = logp.max(dim=-1)
        ids = torch.unique_consecutive(best)
        ids = ids[ids != self.blank]
        yseq = torch.cat([ids.new_tensor([self.sos]), ids, ids.new_tensor([self.eos])])
        return [Hypothesis(yseq=yseq, score=score.sum())]


def use_ctc_greedy_search(speech2x: Any, task: str = "asr") -> Any:
    """Decode a loaded CTC-only model by the best path (`CTCGreedySearch`); returns it.

    Raises:
        ValueError: the model has an attention decoder or no CTC (``ctc_weight`` < 1):
            its best hypothesis needs the beam search.
    """
    model = getattr(speech2x, get_task(task).model_attribute)
    ctc_weight = getattr(model, "ctc_weight", None)
    if getattr(model, "ctc", None) is None or ctc_weight != 1.0:
        raise ValueError(
            f"CTC greedy search decodes CTC-only models (ctc_weight: 1.0); this {task} model "
            f"has ctc_weight {ctc_weight}: decode it with the beam search (drop ctc_greedy)")
    speech2x.beam_search = CTCGreedySearch(
        model.ctc, model.sos, model.eos, getattr(model, "blank_id", 0),
        getattr(speech2x.beam_search, "token_list", None))
    return speech2x


def load_pretrained(model: str, task: str = "asr", frame_period: Optional[float] = None,
                    lam: Optional[float] = None, zoos: Sequence[PathLike] = (),
                    cachedir: Optional[PathLike] = None, ctc_greedy: bool = False,
                    **kwargs: Any) -> Any:
    """Load a packed downstream model with ESPnet's inference class for ``task``, then set
    the asked rate.

    Args:
        model: a packed .zip, a URL, a name in a local zoo (``$ESPNET_OFA_ZOO`` or ``zoos``)
            or the package table, or a Hugging Face id.
        task: a task of `espnet_ofa.espnet_tasks` ("asr", "slu", "st", "asr_transducer").
        ctc_greedy: decode a CTC-only model by the best path (`use_ctc_greedy_search`).
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
    if ctc_greedy:
        use_ctc_greedy_search(speech2x, task)
    return speech2x
