"""Batch normalisation kernels (training and inference forward, backward): the book's
(N, D) at (100, 100) and (100, 1000), and per channel of images as (N, C, H*W) at ResNet's
(100, 16, 28*28) and (100, 64, 7*7)."""
from . import _harness


class Norm(_harness._KernelTimes, family="norm"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class NormSpeedup(_harness._Speedup, family="norm"):
    """numpy time / numba time, measured in one process."""
