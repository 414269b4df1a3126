"""espnet-ofa: once-for-all sequence compression for self-supervised speech models."""

__version__ = "0.1.0"
