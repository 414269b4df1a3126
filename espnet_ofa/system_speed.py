"""How fast a whole ASR/SLU/ST system decodes: real-time factor, its breakdown, peak memory.

What a user deploys is ESPnet's inference object (``Speech2Text``, ``Speech2Understand``)
around a model with ``frontend: ofa``; its cost per second of audio falls with the frame
period in the frontend and the encoder, and the rest (beam search, CTC prefix scoring,
normalisation, token -> text) follows the shorter sequences. This module is the one place
that times a decoding:

- `timed_decode` decodes one utterance (or a batch) and splits its wall-clock time into
  *frontend* and *encoder* (forward hooks on ``model.frontend`` / ``model.encoder``) and
  *decoding*: everything else, ``total - frontend - encoder``. Stage 12's RTF
  (`espnet_ofa.recipe.decode`, RESULTS.md's column) is ``total / audio seconds`` from it.
- `benchmark_system` runs it per frame period, at batch 1 and batched, with peak memory:
  the process' peak resident set (Linux ``VmHWM``, reset before each condition) on the CPU,
  ``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import math
import resource
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.espnet_tasks import get_task
from espnet_ofa.frontend.lookup import find_ofa_frontend

PARTS = ("frontend", "encoder")


@dataclass
class Timing:
    """Wall-clock seconds of one decoding and its parts (``decoding`` is the rest)."""

    total: float = 0.0
    frontend: float = 0.0
    encoder: float = 0.0

    @property
    def decoding(self) -> float:
        return max(self.total - self.frontend - self.encoder, 0.0)

    def add(self, other: "Timing") -> None:
        self.total += other.total
        self.frontend += other.frontend
        self.encoder += other.encoder

    def as_dict(self) -> Dict[str, float]:
        return {**asdict(self), "decoding": self.decoding}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def part_timers(model: torch.nn.Module, timing: Timing, device: str) -> Iterator[None]:
    """Add the time spent in ``model.frontend`` and ``model.encoder`` to ``timing``."""
    handles, starts = [], {}
    for name in PARTS:
        module = getattr(model, name, None)
        if module is None:
            continue

        def before(_module, _inputs, name=name):
            _sync(device)
            starts[name] = time.perf_counter()

        def after(_module, _inputs, _output, name=name):
            _sync(device)
            setattr(timing, name, getattr(timing, name) + time.perf_counter() - starts[name])

        handles += [module.register_forward_pre_hook(before),
                    module.register_forward_hook(after)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def esp_model(speech2x: Any, task: str) -> torch.nn.Module:
    """The ESPnet model inside an inference object (the task table says where)."""
    return getattr(speech2x, get_task(task).model_attribute)


def _decode_batch(speech2x: Any, task: str, speech: Sequence[torch.Tensor], device: str):
    """One padded batch: ESPnet's own batch decoding where the class has one
    (``Speech2Text.batch_decode``) and the search is ESPnet's, else the batched encoder and
    one search per utterance (a best-path CTC search reads the batch's encoder output)."""
    from espnet_ofa.inference import CTCGreedySearch

    if hasattr(speech2x, "batch_decode") and not isinstance(speech2x.beam_search,
                                                             CTCGreedySearch):
        return speech2x(list(speech))
    model = esp_model(speech2x, task)
    # Longest first, as ESPnet's batches come: its RNN encoders pack the padded batch and
    # require decreasing lengths.
    order = sorted(range(len(speech)), key=lambda i: -speech[i].numel())
    lengths = torch.tensor([speech[i].numel() for i in order])
    padded = torch.nn.utils.rnn.pad_sequence([speech[i] for i in order], batch_first=True)
    enc, enc_lens = model.encode(padded.to(device), lengths.to(device))
    if isinstance(enc, tuple):  # intermediate CTC outputs
        enc = enc[0]
    results = [None] * len(speech)
    for row, i in enumerate(order):
        results[i] = speech2x.beam_search(x=enc[row, : enc_lens[row]],
                                          maxlenratio=speech2x.maxlenratio,
                                          minlenratio=speech2x.minlenratio)
    return results


def timed_decode(speech2x: Any, task: str, speech, device: str = "cpu"):
    """Decode one utterance ((N,) samples) or a batch (a list of them); returns
    ``(ESPnet's results, Timing)``."""
    timing = Timing()
    model = esp_model(speech2x, task)
    with part_timers(model, timing, device), torch.no_grad():
        _sync(device)
        start = time.perf_counter()
        if isinstance(speech, (list, tuple)):
            results = _decode_batch(speech2x, task, speech, device)
        else:
            results = speech2x(speech.to(device))
        _sync(device)
        timing.total = time.perf_counter() - start
    return results, timing


# ----------------------------------------------------------------------------- memory
def reset_peak_memory(device: str) -> bool:
    """Start a new peak; False where only the process' lifetime peak can be read."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM
        return True
    except OSError:
        return False


def peak_memory_mib(device: str) -> Dict[str, float]:
    """Peak resident set of the process (MiB) and, on a GPU, peak allocated GPU memory."""
    peak = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"peak_rss_mib": peak}
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# ----------------------------------------------------------------------------- benchmark
def _batches(speech: List[torch.Tensor], size: int) -> List[List[torch.Tensor]]:
    order = sorted(range(len(speech)), key=lambda i: speech[i].numel())  # less padding
    return [[speech[i] for i in order[k:k + size]] for k in range(0, len(order), size)]


def run_condition(speech2x: Any, task: str, speech: List[torch.Tensor], batch_size: int,
                  device: str = "cpu", repeats: int = 1) -> dict:
    """RTF, its breakdown and peak memory of decoding ``speech`` ``repeats`` times."""
    audio_seconds = repeats * sum(s.numel() for s in speech) / SAMPLE_RATE
    groups = [[s] for s in speech] if batch_size == 1 else _batches(speech, batch_size)
    timed_decode(speech2x, task, groups[0][0] if batch_size == 1 else groups[0], device)  # warm-up
    fresh_peak = reset_peak_memory(device)
    total = Timing()
    for _ in range(repeats):
        for group in groups:
            _, t = timed_decode(speech2x, task, group[0] if batch_size == 1 else group, device)
            total.add(t)
    seconds = total.as_dict()
    return {
        "batch_size": batch_size,
        "num_utts": len(speech),
        "repeats": repeats,
        "audio_seconds": audio_seconds,
        "seconds": seconds,
        "rtf": seconds["total"] / audio_seconds,
        "rtf_parts": {k: seconds[k] / audio_seconds for k in ("frontend", "encoder", "decoding")},
        **peak_memory_mib(device),
        "peak_is_per_condition": fresh_peak,
    }


def benchmark_system(speech2x: Any, task: str, speech: List[torch.Tensor],
                     periods: Sequence[Optional[float]], batch_sizes: Sequence[int] = (1, 8),
                     device: str = "cpu", repeats: int = 1) -> List[dict]:
    """One row per (period, batch size); a period of None is the model's own rate."""
    if not speech:
        raise ValueError("no audio to benchmark: give at least one utterance")
    frontend = find_ofa_frontend(speech2x)
    if frontend is None and any(p is not None for p in periods):
        raise ValueError("this model has no OFA frontend: its period cannot be set; "
                         "benchmark it without --periods")
    rows = []
    for period in periods:
        if frontend is not None:
            frontend.set_rate(frame_period=period)
        for batch_size in batch_sizes:
            if batch_size < 1:
                raise ValueError(f"batch sizes must be >= 1, got {batch_size}")
            row = run_condition(speech2x, task, speech, batch_size, device, repeats)
            rate = frontend.current_rate() if frontend is not None else None
            rows.append({"frame_period": rate.frame_period if rate is not None else None,
                         **row})
    if frontend is not None:
        frontend.set_rate()
    for row in rows:
        for value in (row["rtf"], *row["rtf_parts"].values(), row["peak_rss_mib"]):
            if not math.isfinite(value):
                raise RuntimeError(f"a non-finite measurement in {row}")
    return rows
