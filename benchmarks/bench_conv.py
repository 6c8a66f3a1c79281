"""Convolution kernels (im2col, col2im, forward, backward) at the book's layer shapes
(batch 100): SimpleConvNet conv1 (1->30, 5x5), DeepConvNet conv2 (16->16, 3x3 pad 1,
28x28) and conv6 (64->64, 3x3 pad 1, 8x8)."""
from . import _harness


class Conv(_harness._KernelTimes, family="conv"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class ConvSpeedup(_harness._Speedup, family="conv"):
    """numpy time / numba time, measured in one process."""
