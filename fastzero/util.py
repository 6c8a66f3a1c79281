"""The book's utilities (``common/util.py``): im2col/col2im, output sizes, shuffling, smoothing."""
from __future__ import annotations

from typing import Any

import numpy as np

from fastzero import _backend
from fastzero import _validate as v
from fastzero.kernels._geometry import output_size

#: ``np`` too: the book's module has no ``__all__``, so a star import gives a script its ``np``.
__all__ = ["smooth_curve", "shuffle_dataset", "conv_output_size", "im2col", "col2im", "np"]

_SMOOTH_WINDOW = 11


def smooth_curve(x: Any) -> np.ndarray:
    """A loss curve smoothed by an 11-point Kaiser window (for plotting), same length as ``x``.

    ``x`` must be 1-D with at least 11 points.
    """
    x = v.layer_input(x, "smooth_curve", "(L,)", ndim=1, what="curve")
    n = _SMOOTH_WINDOW
    if x.size < n:
        raise ValueError(f"smooth_curve: need at least {n} points, got {x.size}")
    s = np.r_[x[n - 1:0:-1], x, x[-1:-n:-1]]
    w = np.kaiser(n, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def shuffle_dataset(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``t`` shuffled along their first axis by one ``np.random.permutation``."""
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim == 0 or t.ndim == 0 or x.shape[0] != t.shape[0]:
        raise ValueError(
            f"shuffle_dataset: x and t need the same first dimension, got shapes {x.shape} and {t.shape}"
        )
    permutation = np.random.permutation(x.shape[0])
    return x[permutation], t[permutation]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """Output length ``(input_size + 2*pad - filter_size) // stride + 1`` of a convolution.

    Unlike the book (which returns a float), the result is an int; a filter
    larger than the padded input raises ValueError. Pooling windows follow
    the same formula (``conv_output_size(h, pool_h, stride, pad)``).
    """
    where = "conv_output_size"
    input_size = v.integer(input_size, where, "input_size", 1)
    filter_size = v.integer(filter_size, where, "filter_size", 1)
    stride = v.integer(stride, where, "stride", 1)
    pad = v.integer(pad, where, "pad", 0)
    if filter_size > input_size + 2 * pad:
        raise ValueError(
            f"{where}: filter_size {filter_size} is larger than the padded input {input_size + 2 * pad}"
        )
    return output_size(input_size, filter_size, stride, pad)


def _geometry(where: str, filter_h: Any, filter_w: Any, stride: Any, pad: Any) -> tuple[int, ...]:
    return (
        v.integer(filter_h, where, "filter_h", 1),
        v.integer(filter_w, where, "filter_w", 1),
        v.integer(stride, where, "stride", 1),
        v.integer(pad, where, "pad", 0),
    )


def im2col(input_data: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Every ``filter_h x filter_w`` window of ``input_data`` (N, C, H, W) as a row.

    Returns
    -------
    col : (N*OH*OW, C*filter_h*filter_w)
        Row ``(n, oh, ow)`` holds window ``(oh, ow)`` of image ``n``, channel-major,
        with zero padding. dtype follows the input (float32 stays float32).
    """
    where = "im2col"
    filter_h, filter_w, stride, pad = _geometry(where, filter_h, filter_w, stride, pad)
    x = v.layer_input(input_data, where, "(N, C, H, W)", ndim=4, what="input_data")
    v.window_fits(x.shape, filter_h, filter_w, pad, where)
    return _backend.kernels().im2col(x, filter_h, filter_w, stride, pad)


def col2im(col: Any, input_shape: tuple[int, int, int, int], filter_h: int, filter_w: int,
           stride: int = 1, pad: int = 0) -> np.ndarray:
    """The adjoint of :func:`im2col`: rows summed back into an (N, C, H, W) array.

    Where windows overlap their contributions add up; padding is dropped.
    """
    where = "col2im"
    filter_h, filter_w, stride, pad = _geometry(where, filter_h, filter_w, stride, pad)
    shape = tuple(input_shape) if np.ndim(input_shape) == 1 else ()
    if len(shape) != 4:
        raise ValueError(f"{where}: input_shape must be (N, C, H, W), got {input_shape!r}")
    n, c, h, w = (v.integer(s, where, "input_shape entries", 1) for s in shape)
    v.window_fits((n, c, h, w), filter_h, filter_w, pad, where)
    out_h, out_w = output_size(h, filter_h, stride, pad), output_size(w, filter_w, stride, pad)
    col = v.layer_input(col, where, "(N*OH*OW, C*FH*FW)", ndim=2, what="col")
    v.check_shape(col, (n * out_h * out_w, c * filter_h * filter_w), where, "col")
    return _backend.kernels().col2im(col, (n, c, h, w), filter_h, filter_w, stride, pad)
