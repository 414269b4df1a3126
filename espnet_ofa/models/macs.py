"""Counting the compute of a model call: multiply-accumulates, by torch's flop counter."""

from __future__ import annotations

from typing import Callable

from torch.utils.flop_counter import FlopCounterMode


def count_macs(fn: Callable[[], object]) -> int:
    """Multiply-accumulates of one call of ``fn`` (the flop counter counts 2 FLOPs per MAC)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() // 2
