"""Max pooling 2x2 stride 2, forward and backward, at the book's layer shapes (batch 100)."""
from . import _harness


class Pool(_harness._KernelTimes, family="pool"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class PoolSpeedup(_harness._Speedup, family="pool"):
    """numpy time / numba time, measured in one process."""
