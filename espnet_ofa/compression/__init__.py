"""OFA sequence compression: CIF, its inverse, and rate control. Pure torch (numpy draws
the pretraining sampler's Beta variates)."""

from espnet_ofa.compression.cif import LENGTH_EPS, CIFOutput, cif, expand
from espnet_ofa.compression.rate import (
    DEFAULT_PERIOD_RANGE_MS,
    INPUT_PERIOD_MS,
    PERIOD_MODES,
    Rate,
    RateSampler,
    alpha_for_lengths,
    fixed_rate_alpha,
    lam_to_period,
    lam_weights,
    period_to_lam,
    rate_alpha,
    target_lengths,
)

__all__ = [
    "CIFOutput",
    "DEFAULT_PERIOD_RANGE_MS",
    "INPUT_PERIOD_MS",
    "LENGTH_EPS",
    "PERIOD_MODES",
    "Rate",
    "RateSampler",
    "alpha_for_lengths",
    "cif",
    "expand",
    "fixed_rate_alpha",
    "lam_to_period",
    "lam_weights",
    "period_to_lam",
    "rate_alpha",
    "target_lengths",
]
