"""The size of a sliding window's output: the one formula behind every
convolution and pooling shape (kernels, layers, networks, ``conv_output_size``)."""
from __future__ import annotations


def output_size(size: int, window: int, stride: int, pad: int) -> int:
    """Positions of a ``window``-wide window moved by ``stride`` over ``size``
    cells padded by ``pad`` on both sides: ``(size + 2*pad - window) // stride + 1``.

    Not validated (kernels never validate): callers have checked that the
    window fits the padded input and that ``stride >= 1``.
    """
    return (size + 2 * pad - window) // stride + 1
