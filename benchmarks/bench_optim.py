"""One in-place update of each optimizer kernel over 1M parameters (1000, 1000)."""
from . import _harness


class Optim(_harness._KernelTimes, family="optim"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class OptimSpeedup(_harness._Speedup, family="optim"):
    """numpy time / numba time, measured in one process."""
