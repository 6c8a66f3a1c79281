"""Max-pooling kernels: one pass over the image, parallel over ``(n, c)`` planes.

No patch matrix is built. Padding is ``-inf`` and never wins, so it is simply
skipped. Forward records, for every output pixel, the flat index
``i*pool_w + j`` of the first maximum inside its window (``np.argmax``'s
choice on ties; a NaN counts as the maximum, as in ``np.argmax``) in the
smallest integer type that holds it. Backward routes each gradient to that
position; windows may overlap (stride < window), but every iteration owns a
whole ``(n, c)`` plane of ``dx`` (:mod:`._parallel` spans of planes), so no two
threads add into one element.

The book's pooling (2x2 windows, stride 2, no padding) has its own plane
kernels, with the window unrolled: the generic loops over a window's taps
cost several times as much for a four-element window.
"""
from __future__ import annotations

import numpy as np
from fastzero._threads import note_convolution
from fastzero.kernels._geometry import output_size
from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans


def _index_dtype(window_size: int) -> np.dtype:
    """Smallest signed integer type holding ``0 .. window_size - 1``."""
    for dtype in (np.int8, np.int16, np.int32):
        if window_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


@jit
def _takes_over(v, best):
    """True if ``v`` replaces the running maximum ``best``.

    Only a strictly greater value or a NaN does, and nothing replaces a NaN:
    the first maximum wins and the first NaN beats everything, as ``np.argmax``.
    """
    return best == best and not v <= best


@jit
def _pool_plane(img, pool_h, pool_w, stride, pad, out, argmax):
    """Max pooling of one ``(H, W)`` plane into ``out`` and ``argmax`` ``(OH, OW)``; any geometry."""
    H, W = img.shape
    for oy in range(out.shape[0]):
        h0 = oy * stride - pad
        best_row, k_row = out[oy], argmax[oy]
        for ox in range(best_row.size):
            w0 = ox * stride - pad
            best = img.dtype.type(-np.inf)  # of the image's dtype: float32 stays float32
            best_k = 0
            for i in range(max(0, -h0), min(pool_h, H - h0)):
                src = img[h0 + i]
                for j in range(max(0, -w0), min(pool_w, W - w0)):
                    v = src[w0 + j]
                    if _takes_over(v, best):
                        best = v
                        best_k = i * pool_w + j
            best_row[ox] = best
            k_row[ox] = best_k


@jit
def _max_of_4(a, b, c, d):
    """``(max, index)`` of four values in order, by :func:`_takes_over`'s rule."""
    best, best_k = a, 0
    if _takes_over(b, best):
        best, best_k = b, 1
    if _takes_over(c, best):
        best, best_k = c, 2
    if _takes_over(d, best):
        best, best_k = d, 3
    return best, best_k


@jit
def _pool_plane_2x2(img, out, argmax):
    """:func:`_pool_plane` for 2x2 windows, stride 2, no padding (the book's pooling).

    Plain ``>`` comparisons compile to branch-free selects; the NaN-aware
    rule, whose branches are costly on random data, runs only for a window
    whose sum is NaN (it holds a NaN, or both infinities).
    """
    for oy in range(out.shape[0]):
        top, bottom = img[2 * oy], img[2 * oy + 1]
        best_row, k_row = out[oy], argmax[oy]
        for ox in range(best_row.size):
            a, b, c, d = top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]
            best, best_k = a, 0
            if b > best:
                best, best_k = b, 1
            if c > best:
                best, best_k = c, 2
            if d > best:
                best, best_k = d, 3
            total = a + b + c + d
            if total != total:
                best, best_k = _max_of_4(a, b, c, d)
            best_row[ox] = best
            k_row[ox] = best_k


@jit
def _pool_planes(lo, hi, x, pool_h, pool_w, stride, pad, out, argmax):
    """Planes ``lo:hi`` of ``x`` (planes, H, W) into ``out`` and ``argmax`` (planes, OH, OW)."""
    x, out, argmax = x[lo:hi], out[lo:hi], argmax[lo:hi]
    book = pool_h == 2 and pool_w == 2 and stride == 2 and pad == 0
    for p in range(x.shape[0]):
        if book:
            _pool_plane_2x2(x[p], out[p], argmax[p])
        else:
            _pool_plane(x[p], pool_h, pool_w, stride, pad, out[p], argmax[p])


@jit
def _unpool_plane(dout, argmax, pool_w, stride, pad, dx):
    """Set the ``(H, W)`` plane ``dx`` to the gradient routed from one ``dout`` plane."""
    H, W = dx.shape
    dx[:, :] = 0
    for oy in range(dout.shape[0]):
        d, a = dout[oy], argmax[oy]
        for ox in range(d.size):
            k = a[ox]
            i = k // pool_w
            h = oy * stride - pad + i
            w = ox * stride - pad + (k - i * pool_w)
            # a window lying wholly in the padding points at padding: no gradient
            if 0 <= h < H and 0 <= w < W:
                dx[h, w] += d[ox]


@jit
def _unpool_plane_2x2(dout, argmax, dx):
    """:func:`_unpool_plane` for 2x2 windows, stride 2, no padding: each pixel in one window."""
    dx[:, :] = 0
    for oy in range(dout.shape[0]):
        d, a = dout[oy], argmax[oy]
        top, bottom = dx[2 * oy], dx[2 * oy + 1]
        for ox in range(d.size):
            k = a[ox]
            row = top if k < 2 else bottom
            row[2 * ox + (k & 1)] = d[ox]


@jit
def _unpool_planes(lo, hi, dout, argmax, pool_h, pool_w, stride, pad, dx):
    """Planes ``lo:hi`` of ``dx`` (planes, H, W) from ``dout`` and ``argmax`` (planes, OH, OW)."""
    dout, argmax, dx = dout[lo:hi], argmax[lo:hi], dx[lo:hi]
    book = pool_h == 2 and pool_w == 2 and stride == 2 and pad == 0
    for p in range(dx.shape[0]):
        if book:
            _unpool_plane_2x2(dout[p], argmax[p], dx[p])
        else:
            _unpool_plane(dout[p], argmax[p], pool_w, stride, pad, dx[p])


# Each span owns whole planes; costs are operations per plane.
_maxpool_forward = spans(_pool_planes, "x.shape[0]",
                         "out.shape[1] * out.shape[2] * pool_h * pool_w")
_maxpool_backward = spans(_unpool_planes, "dx.shape[0]", "dx.shape[1] * dx.shape[2]")


def _planes(a: np.ndarray) -> np.ndarray:
    """``a`` (N, C, H, W) as a view of its N*C planes (N*C, H, W)."""
    return a.reshape(-1, *a.shape[2:])


def maxpool_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int, pad: int):
    """Max pooling of ``x (N, C, H, W)``: returns ``(out (N, C, OH, OW), argmax)``.

    ``argmax`` (int8/int16/int32, out's shape) holds the winner's flat index
    ``i*pool_w + j`` inside its window.
    """
    note_convolution()  # affine products outside a network run in slices from now on
    N, C, H, W = x.shape
    shape = (N, C, output_size(H, pool_h, stride, pad), output_size(W, pool_w, stride, pad))
    out = np.empty(shape, dtype=x.dtype)
    argmax = np.empty(shape, dtype=_index_dtype(pool_h * pool_w))
    _maxpool_forward(_planes(x), pool_h, pool_w, stride, pad, _planes(out), _planes(argmax))
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
    _maxpool_backward(_planes(dout), _planes(argmax), pool_h, pool_w, stride, pad, _planes(dx))
    return dx
