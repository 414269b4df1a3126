"""OFA sequence compression: CIF, its inverse, and rate control. Pure torch."""

from espnet_ofa.compression.cif import LENGTH_EPS, CIFOutput, cif, expand
from espnet_ofa.compression.rate import (
    DEFAULT_PERIOD_RANGE_MS,
    INPUT_PERIOD_MS,
    Rate,
    RateSampler,
    fixed_rate_alpha,
    rate_alpha,
    target_lengths,
)

__all__ = [
    "CIFOutput",
    "DEFAULT_PERIOD_RANGE_MS",
    "INPUT_PERIOD_MS",
    "LENGTH_EPS",
    "Rate",
    "RateSampler",
    "cif",
    "expand",
    "fixed_rate_alpha",
    "rate_alpha",
    "target_lengths",
]
