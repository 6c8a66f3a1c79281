"""Dropout forward and backward, each kernel at the registry's book shapes."""
from . import _harness


class Dropout(_harness._KernelTimes, family="dropout"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class DropoutSpeedup(_harness._Speedup, family="dropout"):
    """numpy time / numba time, measured in one process."""
