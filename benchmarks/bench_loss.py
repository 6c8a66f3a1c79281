"""Softmax and softmax cross-entropy forward and backward, (100, 10) logits."""
from . import _harness


class Loss(_harness._KernelTimes, family="loss"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class LossSpeedup(_harness._Speedup, family="loss"):
    """numpy time / numba time, measured in one process."""
