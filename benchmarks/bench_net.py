"""Every book network's ``loss`` and ``gradient`` at batch 1, 3 and 100, and
``numerical_gradient`` of TwoLayerNet on a batch of 3 (the book's
``ch05/gradient_check.py``; slow: ``FASTZERO_BENCH_FAST=1`` skips it)."""
from . import _harness


class Net(_harness._KernelTimes, family="net"):
    """Seconds per call, numpy reference and numba, float64 and float32."""

    timeout = 600


class NetSpeedup(_harness._Speedup, family="net"):
    """numpy time / numba time, measured in one process."""

    timeout = 900
