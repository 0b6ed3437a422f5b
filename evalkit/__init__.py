"""evalkit: reproduce, compare and regression-check edge object detectors."""

__version__ = "0.1.0"
