"""ReLU and sigmoid, forward and backward, each kernel at the registry's book shapes."""
from . import _harness


class Activation(_harness._KernelTimes, family="activation"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class ActivationSpeedup(_harness._Speedup, family="activation"):
    """numpy time / numba time, measured in one process."""
