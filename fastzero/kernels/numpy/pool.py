"""Max pooling via im2col + argmax (the book's ``Pooling``), with -inf padding."""
from __future__ import annotations

import numpy as np

from fastzero.kernels._geometry import output_size
from fastzero.kernels.numpy.conv import col2im, im2col_padded, pad_images


def maxpool_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int, pad: int):
    """Max over ``pool_h x pool_w`` windows of ``x`` (N, C, H, W).

    Returns ``(out (N, C, OH, OW), argmax)``; ``argmax`` has out's shape and
    holds the flat in-window index ``i*pool_w + j`` of each maximum (the
    first on ties, as ``np.argmax``). Padding is ``-inf``, never selected.
    """
    n, c, h, w = x.shape
    out_h = output_size(h, pool_h, stride, pad)
    out_w = output_size(w, pool_w, stride, pad)
    img = pad_images(x, pad, value=-np.inf)
    col = im2col_padded(img, pool_h, pool_w, stride, out_h, out_w).reshape(-1, pool_h * pool_w)
    argmax = np.argmax(col, axis=1)
    out = np.max(col, axis=1)
    out = out.reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2)
    argmax = argmax.reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2)
    return out, argmax


def maxpool_backward(dout: np.ndarray, argmax: np.ndarray, x_shape: tuple[int, int, int, int],
                     pool_h: int, pool_w: int, stride: int, pad: int) -> np.ndarray:
    """Gradient of :func:`maxpool_forward`: ``dout`` routed to each window's maximum."""
    n, c, out_h, out_w = dout.shape
    pool_size = pool_h * pool_w
    dmax = np.zeros((dout.size, pool_size), dtype=dout.dtype)
    dmax[np.arange(dout.size), argmax.transpose(0, 2, 3, 1).ravel()] = (
        dout.transpose(0, 2, 3, 1).ravel()
    )
    dcol = dmax.reshape(n * out_h * out_w, c * pool_size)
    return col2im(dcol, x_shape, pool_h, pool_w, stride, pad)
