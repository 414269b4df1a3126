"""Benchmark: the OFA student's forward time and MACs at each frame period, per front.

    python -m espnet_ofa.bin.benchmark_model [--front cnn light mel] [--compile]
        [--preset distilhubert] [--device cuda --dtype bfloat16] [--json rows.json]

For B utterances of a fixed duration, prints per front and frame period (20, 30, ..., 90 ms)
the forward time (median of --repeats, the settings interleaved so that a busy machine
slows them alike), the MACs counted by `torch.utils.flop_counter`, the speed-up against
20 ms, the MAC cut (the speed-up the MACs predict), the efficiency (speed-up / MAC cut),
and the share of the time spent in the waveform front, which does not shrink with the
period and so caps the speed-up (Amdahl). With several fronts it also prints each one's
speed-up over the first at every period.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

from espnet_ofa.bin import reports_errors
from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.models.fronts import FRONTS
from espnet_ofa.models.macs import count_macs
from espnet_ofa.models.student import build_student


def interleaved_medians(calls: Dict[str, Callable[[], object]], repeats: int,
                        device: torch.device) -> Dict[str, float]:
    """Median seconds of each call, timed round-robin (one warm-up call each first)."""
    for fn in calls.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def write_json(path: Path, payload) -> None:
    """Write ``payload`` as JSON atomically (a temporary file renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(payload, tmp, indent=1)
    os.replace(tmp.name, path)


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="distilhubert", help="student preset (distilhubert|tiny)")
    parser.add_argument("--front", nargs="+", default=["cnn"], choices=FRONTS,
                        help="waveform front(s) to compare; the first is the reference")
    parser.add_argument("--num_layers", type=int, default=None, help="override the layer count")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--periods", type=float, nargs="+",
                        default=[20, 30, 40, 50, 60, 70, 80, 90])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="autocast dtype (bfloat16 for GPUs)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the front and the Transformer (dynamic shapes)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the rows (front, period, seconds, macs, frames) here")
    args = parser.parse_args(argv)
    if args.periods[0] != 20:
        parser.error("--periods must start at 20 (speed-ups are against 20 ms)")
    if len(set(args.front)) != len(args.front):
        parser.error("--front lists a front twice")
    return args


@reports_errors(exit_status=2)  # an unknown preset: one error line, not a traceback
def main(argv: Sequence[str] = None) -> List[dict]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    students, seconds, macs, frames = _measure(args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    first = students[args.front[0]]
    print(f"device: {name}, {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, compile: {args.compile}")
    print(f"student: {args.preset}, {first.config.num_layers} layers x {first.config.embed_dim}-d; "
          f"input: B={args.batch} x {args.seconds:g} s; median of {args.repeats}, interleaved")
    rows = [row for front in args.front
            for row in _print_front(front, args.periods, seconds, macs, frames)]
    if len(args.front) > 1:
        _print_front_ratios(args.front, args.periods, seconds, macs)
    if args.json is not None:
        write_json(args.json, dict(
            device=name, dtype=args.dtype, torch=torch.__version__,
            threads=torch.get_num_threads(), compile=args.compile, preset=args.preset,
            num_layers=first.config.num_layers, batch=args.batch, seconds_audio=args.seconds,
            repeats=args.repeats, rows=rows))
        print(f"rows written to {args.json}")
    return rows


def _measure(args: argparse.Namespace, device: torch.device):
    """Per front: the student, and per period (and ``"front"``: the front alone) the
    median seconds of a forward pass, its MACs and its output frames."""
    dtype = getattr(torch, args.dtype)
    overrides = {} if args.num_layers is None else {"num_layers": args.num_layers}
    num_samples = int(args.seconds * SAMPLE_RATE)
    gen = torch.Generator().manual_seed(0)
    wav = (0.1 * torch.randn(args.batch, num_samples, generator=gen)).to(device)
    wav_lengths = torch.full((args.batch,), num_samples, device=device)

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    students, calls, macs, frames = {}, {}, {}, {}
    for front in args.front:
        torch.manual_seed(0)
        student = build_student(args.preset, front=front, **overrides).eval().to(device)
        students[front] = student

        def forward(student=student, period=None):
            with torch.no_grad(), autocast():
                return student(wav, wav_lengths, frame_period=period)

        def front_alone(student=student):
            with torch.no_grad(), autocast():
                return student._call("front", student.feature_extractor, wav, wav_lengths)

        for period in args.periods:
            # MACs of the eager model (the flop counter does not see inside compiled code).
            outputs = []
            macs[front, period] = count_macs(lambda: outputs.append(forward(period=period)))
            frames[front, period] = int(outputs[0].lengths.max())
            calls[front, period] = lambda forward=forward, period=period: forward(period=period)
        macs[front, "front"] = count_macs(front_alone)
        calls[front, "front"] = front_alone
        if args.compile:
            student.enable_compile()
    if args.compile:
        for fn in calls.values():  # compile (and recompile for batch-1 shapes) outside timing
            fn()
    return students, interleaved_medians(calls, args.repeats, device), macs, frames


def _print_front(front: str, periods: Sequence[float], seconds: dict, macs: dict,
                 frames: dict) -> List[dict]:
    """One front's table (each period against the first); returns its rows."""
    base_s, base_m = seconds[front, periods[0]], macs[front, periods[0]]
    t_front = seconds[front, "front"]
    print(f"\nfront: {front}: alone {t_front * 1e3:.1f} ms, "
          f"{macs[front, 'front'] / 1e9:.1f} GMACs")
    print(f"{'period':>7} {'frames':>7} {'time ms':>9} {'GMACs':>8} {'speed-up':>9} "
          f"{'MAC cut':>8} {'efficiency':>10} {'front share':>11}")
    rows = []
    for period in periods:
        s, m = seconds[front, period], macs[front, period]
        speed_up, cut = base_s / s, base_m / m
        print(f"{period:>5g}ms {frames[front, period]:>7d} {s * 1e3:>9.1f} {m / 1e9:>8.1f} "
              f"{speed_up:>8.2f}x {cut:>7.2f}x {100 * speed_up / cut:>9.0f}% "
              f"{100 * t_front / s:>10.0f}%")
        rows.append(dict(front=front, period=period, seconds=s, macs=m,
                         frames=frames[front, period], front_seconds=t_front,
                         front_macs=macs[front, "front"]))
    print(f"upper bound on the speed-up while the front runs at 20 ms: {base_s / t_front:.2f}x")
    return rows


def _print_front_ratios(fronts: Sequence[str], periods: Sequence[float], seconds: dict,
                        macs: dict) -> None:
    ref = fronts[0]
    print(f"\nspeed-up of each front over {ref} (time ratio; MAC ratio in brackets)")
    print(f"{'period':>7} " + " ".join(f"{f:>16}" for f in fronts[1:]))
    for period in periods:
        print(f"{period:>5g}ms " + " ".join(
            f"{seconds[ref, period] / seconds[f, period]:>7.2f}x ({macs[ref, period] / macs[f, period]:>5.2f}x)"
            for f in fronts[1:]))


if __name__ == "__main__":
    main()
