"""Affine forward and backward: SimpleConvNet's 4320x100 and TwoLayerNet's 784x50, batch 100."""
from . import _harness


class Dense(_harness._KernelTimes, family="dense"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class DenseSpeedup(_harness._Speedup, family="dense"):
    """numpy time / numba time, measured in one process."""
