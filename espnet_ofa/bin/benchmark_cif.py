"""Benchmark: CIF forward+backward against a per-frame loop and a Transformer layer.

    python -m espnet_ofa.bin.benchmark_cif [--device cuda] [--repeats 5]

Prints median times and, more to the point, ratios measured in the same run (absolute
times on shared machines are noisy). Defaults: B=8 utterances of T=1500 frames (30 s at
20 ms), C=768 channels, compressed to 60 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List

import torch

from espnet_ofa.compression import cif, rate_alpha


def cif_loop_reference(x: torch.Tensor, alpha: torch.Tensor, lengths: torch.Tensor,
                       beta: float = 1.0) -> List[torch.Tensor]:
    """The textbook CIF: one utterance and one frame at a time. (T'_b, C) per utterance."""
    outputs = []
    for b in range(x.shape[0]):
        frames, accumulated = [], x.new_zeros(())
        integrated = x.new_zeros(x.shape[-1])
        for t in range(int(lengths[b])):
            a, frame = alpha[b, t], x[b, t]
            if accumulated + a < beta:
                integrated = integrated + a * frame
                accumulated = accumulated + a
                continue
            first = beta - accumulated
            frames.append(integrated + first * frame)
            rest = a - first
            while rest >= beta:
                frames.append(beta * frame)
                rest = rest - beta
            integrated, accumulated = rest * frame, rest
        outputs.append(torch.stack(frames) if frames else x.new_zeros(0, x.shape[-1]))
    return outputs


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocator, kernels, lazy init
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--frame-period", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=1,
                        help="repeats of the (slow) loop reference")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true",
                        help="time rate_alpha + CIF through torch.compile (dynamic shapes)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    B, T, C = args.batch, args.frames, args.channels
    lengths = torch.linspace(T // 2, T, B).long().to(device)
    x = torch.randn(B, T, C, device=device, requires_grad=True)
    logits = torch.randn(B, T, device=device, requires_grad=True)

    def compressed_alpha():
        return rate_alpha(torch.sigmoid(logits), lengths, frame_period=args.frame_period)

    def eager_cif(x, lengths):
        return cif(x, compressed_alpha(), lengths)

    timed_cif = eager_cif
    if args.compile:
        from espnet_ofa.models.student import CompiledOrEager

        timed_cif = CompiledOrEager(eager_cif, "CIF", "inductor")

    def run_cif():
        out = timed_cif(x, lengths)
        out.frames.square().sum().backward()
        x.grad = logits.grad = None

    def run_loop():
        frames = cif_loop_reference(x, compressed_alpha(), lengths)
        sum(f.square().sum() for f in frames).backward()
        x.grad = logits.grad = None

    # The two must agree before their times mean anything.
    with torch.no_grad():
        fast = timed_cif(x, lengths)
        head = slice(0, 2)  # the loop is slow: two utterances prove agreement
        slow = cif_loop_reference(x[head], compressed_alpha()[head], lengths[head])
        for b, ref in enumerate(slow):
            n = min(len(ref), int(fast.lengths[b]))
            torch.testing.assert_close(fast.frames[b, :n], ref[:n], atol=1e-3, rtol=1e-3)

    layer = torch.nn.TransformerEncoderLayer(C, nhead=12, dim_feedforward=4 * C,
                                             batch_first=True).to(device)
    layer_input = torch.randn(B, T, C, device=device)
    pad_mask = torch.arange(T, device=device)[None] >= lengths[:, None]

    def run_layer():
        with torch.no_grad():
            layer(layer_input, src_key_padding_mask=pad_mask)

    t_cif = median_seconds(run_cif, args.repeats, device)
    t_layer = median_seconds(run_layer, args.repeats, device)
    t_loop = median_seconds(run_loop, args.loop_repeats, device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    print(f"device: {name} (torch {torch.__version__}, {threads} threads, "
          f"compile: {args.compile})")
    print(f"input: B={B}, T={T} frames (max {T * 20 / 1000:.0f} s), C={C}, "
          f"compressed to {args.frame_period:g} ms")
    print(f"{'what':<44}{'median time':>14}")
    print(f"{'CIF forward+backward (espnet_ofa)':<44}{t_cif * 1e3:>11.2f} ms")
    print(f"{'per-frame loop reference forward+backward':<44}{t_loop * 1e3:>11.2f} ms")
    print(f"{'Transformer encoder layer forward (768-d)':<44}{t_layer * 1e3:>11.2f} ms")
    print(f"speed-up over the loop reference: {t_loop / t_cif:.1f}x (target >= 20x)")
    print(f"CIF time / Transformer layer time: {100 * t_cif / t_layer:.1f}% (target <= 10% on CPU)")


if __name__ == "__main__":
    main()
