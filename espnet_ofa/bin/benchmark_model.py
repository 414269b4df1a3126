"""Benchmark: the OFA student's forward time and MACs at each frame period.

    python -m espnet_ofa.bin.benchmark_model [--preset distilhubert] [--device cuda --dtype bfloat16]

For B utterances of a fixed duration, prints per frame period (20, 30, ..., 90 ms) the
forward time, the MACs counted by `torch.utils.flop_counter`, the speed-up against 20 ms,
and the share of the time spent in the CNN waveform encoder, which does not shrink with
the period and so caps the speed-up (Amdahl).
"""

from __future__ import annotations

import argparse
from typing import List, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from espnet_ofa.bin.benchmark_cif import median_seconds
from espnet_ofa.models.student import build_student


def count_macs(fn) -> int:
    """Multiply-accumulates of one call (the flop counter counts 2 FLOPs per MAC)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() // 2


def main(argv: Sequence[str] = None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="distilhubert", help="student preset (distilhubert|tiny)")
    parser.add_argument("--num_layers", type=int, default=None, help="override the layer count")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--periods", type=float, nargs="+",
                        default=[20, 30, 40, 50, 60, 70, 80, 90])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    overrides = {} if args.num_layers is None else {"num_layers": args.num_layers}
    student = build_student(args.preset, **overrides).eval().to(device)
    num_samples = int(args.seconds * 16000)
    wav = 0.1 * torch.randn(args.batch, num_samples, device=device)
    wav_lengths = torch.full((args.batch,), num_samples, device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def forward(period):
        with torch.no_grad(), autocast:
            return student(wav, wav_lengths, frame_period=period)

    def cnn():
        with torch.no_grad(), autocast:
            return student.feature_extractor(wav, wav_lengths)

    t_cnn = median_seconds(cnn, args.repeats, device)
    rows = []
    for period in args.periods:
        seconds = median_seconds(lambda: forward(period), args.repeats, device)
        rows.append(dict(period=period, seconds=seconds, macs=count_macs(lambda: forward(period)),
                         frames=int(forward(period).lengths.max())))
    base = rows[0]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"student: {args.preset}, {student.config.num_layers} layers x {student.config.embed_dim}-d; "
          f"input: B={args.batch} x {args.seconds:g} s")
    print(f"CNN waveform encoder alone: {t_cnn * 1e3:.1f} ms")
    print(f"{'period':>7} {'frames':>7} {'time ms':>9} {'GMACs':>8} {'speed-up':>9} "
          f"{'MAC cut':>8} {'CNN share':>10}")
    for row in rows:
        print(f"{row['period']:>5g}ms {row['frames']:>7d} {row['seconds'] * 1e3:>9.1f} "
              f"{row['macs'] / 1e9:>8.1f} {base['seconds'] / row['seconds']:>8.2f}x "
              f"{base['macs'] / row['macs']:>7.2f}x {100 * t_cnn / row['seconds']:>9.0f}%")
    cap = base["seconds"] / t_cnn
    print(f"Upper bound on the speed-up while the CNN runs at 20 ms: {cap:.2f}x")
    return rows


if __name__ == "__main__":
    main()
