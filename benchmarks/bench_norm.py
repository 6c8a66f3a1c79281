"""Batch normalisation kernels (training and inference forward, backward), (100, 100)
and (100, 1000)."""
from . import _harness


class Norm(_harness._KernelTimes, family="norm"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class NormSpeedup(_harness._Speedup, family="norm"):
    """numpy time / numba time, measured in one process."""
