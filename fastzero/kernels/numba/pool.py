"""Max-pooling kernels: one pass over the image, parallel over ``(n, c)`` planes.

No patch matrix is built. Padding is ``-inf`` and never wins, so it is simply
skipped. Forward records, for every output pixel, the flat index
``i*pool_w + j`` of the first maximum inside its window (``np.argmax``'s
choice on ties; a NaN counts as the maximum, as in ``np.argmax``) in the
smallest integer type that holds it. Backward routes each gradient to that
position; windows may overlap (stride < window), but every iteration owns a
whole ``(n, c)`` plane of ``dx``, so no two threads add into one element.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import pjit


def _out_size(size: int, pool_size: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - pool_size) // stride + 1


def _index_dtype(window_size: int) -> np.dtype:
    """Smallest signed integer type holding ``0 .. window_size - 1``."""
    for dtype in (np.int8, np.int16, np.int32):
        if window_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


@pjit
def _maxpool_forward(x, pool_h, pool_w, stride, pad, out, argmax):
    N, C, H, W = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        img = x[n, c]
        for oy in range(out_h):
            h0 = oy * stride - pad
            for ox in range(out_w):
                w0 = ox * stride - pad
                best = -np.inf
                best_k = 0
                for i in range(max(0, -h0), min(pool_h, H - h0)):
                    src = img[h0 + i]
                    for j in range(max(0, -w0), min(pool_w, W - w0)):
                        v = src[w0 + j]
                        # first maximum wins; the first NaN beats everything
                        if v > best or (v != v and best == best):
                            best = v
                            best_k = i * pool_w + j
                out[n, c, oy, ox] = best
                argmax[n, c, oy, ox] = best_k


@pjit
def _maxpool_backward(dout, argmax, pool_w, stride, pad, dx):
    N, C, H, W = dx.shape
    out_h, out_w = dout.shape[2], dout.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        img = dx[n, c]
        img[:, :] = 0
        for oy in range(out_h):
            for ox in range(out_w):
                k = argmax[n, c, oy, ox]
                h = oy * stride - pad + k // pool_w
                w = ox * stride - pad + k % pool_w
                # a window lying wholly in the padding points at padding: no gradient
                if 0 <= h < H and 0 <= w < W:
                    img[h, w] += dout[n, c, oy, ox]


def maxpool_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int, pad: int):
    """Max pooling of ``x (N, C, H, W)``: returns ``(out (N, C, OH, OW), argmax)``.

    ``argmax`` (int8/int16/int32, out's shape) holds the winner's flat index
    ``i*pool_w + j`` inside its window.
    """
    N, C, H, W = x.shape
    shape = (N, C, _out_size(H, pool_h, stride, pad), _out_size(W, pool_w, stride, pad))
    out = np.empty(shape, dtype=x.dtype)
    argmax = np.empty(shape, dtype=_index_dtype(pool_h * pool_w))
    _maxpool_forward(x, pool_h, pool_w, stride, pad, out, argmax)
    return out, argmax


def maxpool_backward(
    dout: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, int, int, int],
    pool_h: int,
    pool_w: int,
    stride: int,
    pad: int,
) -> np.ndarray:
    """Gradient ``dx (N, C, H, W)`` of max pooling: each ``dout`` goes to its window's maximum."""
    dx = np.empty(tuple(x_shape), dtype=dout.dtype)
    _maxpool_backward(dout, argmax, pool_w, stride, pad, dx)
    return dx
