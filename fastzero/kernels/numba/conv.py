"""Convolution kernels: im2col / col2im and the convolution layer's forward and backward.

The heavy arithmetic is BLAS matrix multiplication (``np.dot``, called from
the Python wrappers, never inside a ``prange``); the numba kernels do the
data movement around it in parallel. Internally the patch matrix is kept
*transposed*, ``colT (C*FH*FW, n*OH*OW)``: each row is one filter tap, so the
kernels copy contiguous image rows, and the forward product
``W (FN, C*FH*FW) @ colT`` already has the filters in its rows.

The batch is processed in chunks of samples so the patch matrix stays a few
megabytes (it would be ``N*OH*OW x C*FH*FW``, 90 MB for a 16->16 3x3 conv on
a batch of 100 28x28 images); backward recomputes it from ``x`` rather than
keeping it between forward and backward.

Every parallel loop gives each iteration its own output: im2col writes the
rows of its own ``(n, c)``, col2im sums into its own ``(n, c)`` image plane,
the bias gradient gives each thread its own filters. Results are therefore
bitwise reproducible for a fixed thread count.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import jit, pjit

#: Target size in bytes of the per-chunk patch matrix.
CHUNK_BYTES = 4 << 20


def _out_size(size: int, filter_size: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - filter_size) // stride + 1


@jit
def _valid_cols(j, pad, stride, width, out_w):
    """Range ``[lo, hi)`` of output columns whose filter tap ``j`` lands inside the image."""
    lo = max(0, (pad - j + stride - 1) // stride)
    hi = min(out_w, (width - 1 + pad - j) // stride + 1)
    return lo, max(lo, hi)


@pjit
def _im2col_t(x, n0, filter_h, filter_w, stride, pad, colT):
    """Fill ``colT (C*FH*FW, nb*OH*OW)`` with the patches of ``x[n0:n0+nb]``.

    Row ``(c*FH + i)*FW + j`` holds, for every output pixel ``(b, oy, ox)``
    (column ``(b*OH + oy)*OW + ox``), the input value under filter tap
    ``(c, i, j)``; zero where the tap falls in the padding.
    """
    _, C, H, W = x.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    P = out_h * out_w
    nb = colT.shape[1] // P
    for t in prange(nb * C):
        b = t // C
        c = t - b * C
        img = x[n0 + b, c]
        for i in range(filter_h):
            for j in range(filter_w):
                row = colT[(c * filter_h + i) * filter_w + j]
                lo, hi = _valid_cols(j, pad, stride, W, out_w)
                for oy in range(out_h):
                    h = oy * stride + i - pad
                    base = b * P + oy * out_w
                    if h < 0 or h >= H:
                        row[base:base + out_w] = 0
                        continue
                    row[base:base + lo] = 0
                    src = img[h]
                    w0 = j - pad
                    for ox in range(lo, hi):
                        row[base + ox] = src[ox * stride + w0]
                    row[base + hi:base + out_w] = 0


@pjit
def _col2im_t(colT, n0, filter_h, filter_w, stride, pad, dx):
    """Set ``dx[n0:n0+nb]`` to the adjoint of :func:`_im2col_t` applied to ``colT``.

    Each ``(n, c)`` image plane is owned by one iteration, which sums every
    tap of its channel into it: overlapping windows add without races.
    """
    _, C, H, W = dx.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    P = out_h * out_w
    nb = colT.shape[1] // P
    for t in prange(nb * C):
        b = t // C
        c = t - b * C
        img = dx[n0 + b, c]
        img[:, :] = 0
        for i in range(filter_h):
            for j in range(filter_w):
                row = colT[(c * filter_h + i) * filter_w + j]
                lo, hi = _valid_cols(j, pad, stride, W, out_w)
                for oy in range(out_h):
                    h = oy * stride + i - pad
                    if h < 0 or h >= H:
                        continue
                    base = b * P + oy * out_w
                    dst = img[h]
                    w0 = j - pad
                    for ox in range(lo, hi):
                        dst[ox * stride + w0] += row[base + ox]


@pjit
def _add_bias_to_output(prod, bias, n0, out):
    """``out[n0+b, f, :] = prod[f, b*P:(b+1)*P] + bias[f]`` (``prod`` is ``W @ colT``)."""
    FN, P = out.shape[1], out.shape[2]
    nb = prod.shape[1] // P
    for t in prange(nb * FN):
        b = t // FN
        f = t - b * FN
        src = prod[f, b * P:(b + 1) * P]
        dst = out[n0 + b, f]
        bf = bias[f]
        for p in range(P):
            dst[p] = src[p] + bf


@pjit
def _gather_dout(dout, n0, doutT):
    """``doutT[f, b*P:(b+1)*P] = dout[n0+b, f, :]``: the chunk's gradient with filters in rows."""
    FN, P = dout.shape[1], dout.shape[2]
    nb = doutT.shape[1] // P
    for t in prange(nb * FN):
        b = t // FN
        f = t - b * FN
        doutT[f, b * P:(b + 1) * P] = dout[n0 + b, f]


@pjit
def _bias_grad(dout, db):
    """``db[f] = dout[:, f, :].sum()``; each filter's sum is owned by one thread."""
    N, FN, P = dout.shape
    for f in prange(FN):
        s = dout.dtype.type(0)
        for n in range(N):
            row = dout[n, f]
            for p in range(P):
                s += row[p]
        db[f] = s


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int, pad: int) -> np.ndarray:
    """Patch matrix of ``x (N, C, H, W)``: ``(N*OH*OW, C*FH*FW)``, the book's layout."""
    N, C, H, W = x.shape
    P = _out_size(H, filter_h, stride, pad) * _out_size(W, filter_w, stride, pad)
    col = np.empty((N * P, C * filter_h * filter_w), dtype=x.dtype)
    _im2col_t(x, 0, filter_h, filter_w, stride, pad, col.T)
    return col


def col2im(
    col: np.ndarray, x_shape: tuple[int, int, int, int], filter_h: int, filter_w: int, stride: int, pad: int
) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum ``col (N*OH*OW, C*FH*FW)`` back into ``(N, C, H, W)``."""
    dx = np.empty(tuple(x_shape), dtype=col.dtype)
    _col2im_t(col.T, 0, filter_h, filter_w, stride, pad, dx)
    return dx


def _chunks(N: int, K: int, P: int, itemsize: int):
    """Sample ranges ``(n0, n1)`` covering ``range(N)`` whose patch matrices fit :data:`CHUNK_BYTES`."""
    nb = max(1, min(N, CHUNK_BYTES // (K * P * itemsize)))
    return [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)], nb


def conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, pad: int):
    """Convolution ``out (N, FN, OH, OW)`` of ``x (N, C, H, W)`` with filters ``W (FN, C, FH, FW)`` plus ``b (FN,)``.

    Returns ``(out, cache)``; ``cache`` is for :func:`conv_backward` only.
    """
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    OH, OW = _out_size(H, FH, stride, pad), _out_size(Wd, FW, stride, pad)
    P, K = OH * OW, C * FH * FW
    W2 = W.reshape(FN, K)
    out = np.empty((N, FN, P), dtype=x.dtype)
    chunks, nb = _chunks(N, K, P, x.itemsize)
    col_buf = np.empty(K * nb * P, dtype=x.dtype)
    prod_buf = np.empty(FN * nb * P, dtype=x.dtype)
    for n0, n1 in chunks:
        m = (n1 - n0) * P
        colT = col_buf[: K * m].reshape(K, m)
        prod = prod_buf[: FN * m].reshape(FN, m)
        _im2col_t(x, n0, FH, FW, stride, pad, colT)
        np.dot(W2, colT, out=prod)
        _add_bias_to_output(prod, b, n0, out)
    return out.reshape(N, FN, OH, OW), x


def conv_backward(dout: np.ndarray, cache, W: np.ndarray, stride: int, pad: int):
    """Gradients ``(dx, dW, db)`` of the convolution given ``dout (N, FN, OH, OW)``."""
    x = cache
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    OH, OW = dout.shape[2], dout.shape[3]
    P, K = OH * OW, C * FH * FW
    dout3 = dout.reshape(N, FN, P)
    W2 = W.reshape(FN, K)
    db = np.empty(FN, dtype=x.dtype)
    _bias_grad(dout3, db)
    dW2 = np.zeros((FN, K), dtype=x.dtype)
    dx = np.empty_like(x)
    chunks, nb = _chunks(N, K, P, x.itemsize)
    col_buf = np.empty(K * nb * P, dtype=x.dtype)
    dout_buf = np.empty(FN * nb * P, dtype=x.dtype)
    part = np.empty((FN, K), dtype=x.dtype)
    for n0, n1 in chunks:
        m = (n1 - n0) * P
        colT = col_buf[: K * m].reshape(K, m)
        doutT = dout_buf[: FN * m].reshape(FN, m)
        _gather_dout(dout3, n0, doutT)
        _im2col_t(x, n0, FH, FW, stride, pad, colT)
        np.dot(doutT, colT.T, out=part)
        dW2 += part
        np.dot(W2.T, doutT, out=colT)
        _col2im_t(colT, n0, FH, FW, stride, pad, dx)
    return dx, dW2.reshape(W.shape), db
