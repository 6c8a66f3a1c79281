"""Every book layer's forward + backward through its layer class, at batch 1, 3 and 100:
the per-call cost (validation, dispatch, threads) of small calls, tracked beside the
large ones."""
from . import _harness


class Layer(_harness._KernelTimes, family="layer"):
    """Seconds per forward + backward, numpy reference and numba, float64 and float32."""


class LayerSpeedup(_harness._Speedup, family="layer"):
    """numpy time / numba time, measured in one process."""
