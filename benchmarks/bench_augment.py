"""Data augmentation kernels (separable blur, bilinear resampling) on a batch of 100
MNIST images."""
from . import _harness


class Augment(_harness._KernelTimes, family="augment"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class AugmentSpeedup(_harness._Speedup, family="augment"):
    """numpy time / numba time, measured in one process."""
