"""Convolution kernels: im2col / col2im and the convolution layer's forward and backward.

The heavy arithmetic is BLAS matrix multiplication (``np.dot``, called from
the Python wrappers, never inside a ``prange``); the numba kernels do the
data movement around it in parallel. Internally the patch matrix is kept
*transposed*, ``colT (C*FH*FW, B*OH*OW)`` for ``B`` samples: each row is one
filter tap, so the kernels copy runs of image rows, and the forward product
``W (FN, C*FH*FW) @ colT`` already has the filters in its rows.

The batch is processed in blocks of ``B`` samples whose patch matrix fits in
:data:`BLOCK_BYTES` (about one core's L2 cache): im2col, the three products
and col2im of a block run while its patches are in cache, instead of
streaming a patch matrix ``FH*FW`` times the size of the images through
memory. Forward plus backward, batch 100, float64, one thread, best of 15
interleaved runs on a loaded machine (ms):

======================================  =========  ====  ====  ====  =====
block budget                            reference  256K  512K  2M    batch
======================================  =========  ====  ====  ====  =====
SimpleConvNet conv1 (1->30, 5x5, 28x28)      45.7  15.1  15.2  20.4   37.4
DeepConvNet conv2 (16->16, 3x3, 28x28)        285  56.6  50.5  66.3    150
DeepConvNet conv6 (64->64, 3x3, 8x8)          122  56.3  53.1  56.0   65.2
======================================  =========  ====  ====  ====  =====

The products then run at about the BLAS rate of a large square product
(conv6 is at that floor; the reference spends the same time in them).

The backward recomputes a block's patches from ``x`` rather than keeping
them (keeping them measured slower, 65 vs 56 ms for conv2), so the forward's
cache is ``x`` itself: it must not be modified before the backward (the
layer keeps it as ``Convolution.x`` anyway). Buffers are allocated once per
call and the products write into them (``np.dot(..., out=...)``).

Every parallel loop gives each iteration its own output: im2col writes the
patches of its own ``(n, c)``, col2im sums into its own ``(n, c)`` image
plane, the bias gradient gives each filter to one thread; the gradients of
``W`` and ``b`` are summed block by block in batch order, and the block size
depends only on the shapes. Results are therefore bitwise reproducible for a
fixed thread count.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import pjit


#: Bytes of patch matrix per block of samples (see the module docstring).
BLOCK_BYTES = 1 << 19


def _out_size(size: int, filter_size: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - filter_size) // stride + 1


@pjit
def _im2col_t(x, filter_h, filter_w, stride, pad, colT):
    """Fill ``colT (C*FH*FW, N*OH*OW)`` with the patches of ``x (N, C, H, W)``.

    Row ``(c*FH + i)*FW + j`` holds, for every output pixel ``(n, oy, ox)``
    (column ``(n*OH + oy)*OW + ox``), the input value under filter tap
    ``(c, i, j)``: ``x_padded[n, c, oy*stride + i, ox*stride + j]``. Each
    iteration copies its ``(n, c)`` plane into a zero-bordered buffer first,
    so the copy loops need no bounds and vectorise.
    """
    N, C, H, W = x.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    P = out_h * out_w
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        padded = np.zeros((H + 2 * pad, W + 2 * pad), dtype=x.dtype)
        padded[pad:pad + H, pad:pad + W] = x[n, c]
        for i in range(filter_h):
            for j in range(filter_w):
                tap = (c * filter_h + i) * filter_w + j
                patch = colT[tap, n * P:(n + 1) * P].reshape(out_h, out_w)
                for oy in range(out_h):
                    src, dst = padded[oy * stride + i], patch[oy]
                    if stride == 1:
                        for ox in range(out_w):
                            dst[ox] = src[ox + j]
                    else:
                        for ox in range(out_w):
                            dst[ox] = src[ox * stride + j]


@pjit
def _col2im_t(colT, filter_h, filter_w, stride, pad, dx):
    """Set ``dx (N, C, H, W)`` to the adjoint of :func:`_im2col_t` applied to ``colT``.

    Each ``(n, c)`` image plane is owned by one iteration, which sums every
    tap of its channel, in tap order as the book's ``col2im``, into a
    zero-bordered buffer and keeps its interior: overlapping windows add
    without races, and what lands in the padding is dropped.
    """
    N, C, H, W = dx.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    P = out_h * out_w
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        padded = np.zeros((H + 2 * pad, W + 2 * pad), dtype=dx.dtype)
        for i in range(filter_h):
            for j in range(filter_w):
                tap = (c * filter_h + i) * filter_w + j
                patch = colT[tap, n * P:(n + 1) * P].reshape(out_h, out_w)
                for oy in range(out_h):
                    src, dst = patch[oy], padded[oy * stride + i]
                    if stride == 1:
                        for ox in range(out_w):
                            dst[ox + j] += src[ox]
                    else:
                        for ox in range(out_w):
                            dst[ox * stride + j] += src[ox]
        dx[n, c] = padded[pad:pad + H, pad:pad + W]


@pjit
def _add_bias_to_output(prod, bias, out):
    """``out[n, f, :] = prod[f, n*P:(n+1)*P] + bias[f]`` (``prod`` is ``W @ colT``)."""
    N, FN, P = out.shape
    for t in prange(N * FN):
        n = t // FN
        f = t - n * FN
        src = prod[f, n * P:(n + 1) * P]
        dst = out[n, f]
        bf = bias[f]
        for p in range(P):
            dst[p] = src[p] + bf


@pjit
def _gather_dout_and_bias_grad(dout, doutT, db):
    """``doutT[f, n*P:(n+1)*P] = dout[n, f, :]`` and ``db[f] = dout[:, f, :].sum()``.

    Each filter is owned by one thread, which sums its gradient in sample order.
    """
    N, FN, P = dout.shape
    for f in prange(FN):
        s = dout.dtype.type(0)
        for n in range(N):
            src = dout[n, f]
            dst = doutT[f, n * P:(n + 1) * P]
            for p in range(P):
                v = src[p]
                dst[p] = v
                s += v
        db[f] = s


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int, pad: int) -> np.ndarray:
    """Patch matrix of ``x (N, C, H, W)``: ``(N*OH*OW, C*FH*FW)``, the book's layout."""
    N, C, H, W = x.shape
    P = _out_size(H, filter_h, stride, pad) * _out_size(W, filter_w, stride, pad)
    colT = np.empty((C * filter_h * filter_w, N * P), dtype=x.dtype)
    _im2col_t(x, filter_h, filter_w, stride, pad, colT)
    return np.ascontiguousarray(colT.T)


def col2im(
    col: np.ndarray, x_shape: tuple[int, int, int, int], filter_h: int, filter_w: int, stride: int, pad: int
) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum ``col (N*OH*OW, C*FH*FW)`` back into ``(N, C, H, W)``."""
    dx = np.empty(tuple(x_shape), dtype=col.dtype)
    _col2im_t(np.ascontiguousarray(col.T), filter_h, filter_w, stride, pad, dx)
    return dx


def _block_size(n: int, per_sample: int, itemsize: int) -> int:
    """Samples per block: as many as keep a block's patch matrix within :data:`BLOCK_BYTES`."""
    return max(1, min(n, BLOCK_BYTES // (per_sample * itemsize)))


def _matrix(buf: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A C-contiguous ``(rows, cols)`` view of the start of the flat buffer ``buf``."""
    return buf[:rows * cols].reshape(rows, cols)


def conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, pad: int):
    """Convolution ``out (N, FN, OH, OW)`` of ``x (N, C, H, W)`` with filters ``W (FN, C, FH, FW)`` plus ``b (FN,)``.

    Returns ``(out, cache)``; ``cache`` is for :func:`conv_backward` only.
    """
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    OH, OW = _out_size(H, FH, stride, pad), _out_size(Wd, FW, stride, pad)
    K, P = C * FH * FW, OH * OW
    W2 = W.reshape(FN, K)
    out = np.empty((N, FN, P), dtype=x.dtype)
    nb = _block_size(N, K * P, x.itemsize)
    col_buf, prod_buf = np.empty(K * nb * P, dtype=x.dtype), np.empty(FN * nb * P, dtype=x.dtype)
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        cols, prod = _matrix(col_buf, K, (n1 - n0) * P), _matrix(prod_buf, FN, (n1 - n0) * P)
        _im2col_t(x[n0:n1], FH, FW, stride, pad, cols)
        _add_bias_to_output(np.dot(W2, cols, out=prod), b, out[n0:n1])
    return out.reshape(N, FN, OH, OW), x


def conv_backward(dout: np.ndarray, cache, W: np.ndarray, stride: int, pad: int):
    """Gradients ``(dx, dW, db)`` of the convolution given ``dout (N, FN, OH, OW)``."""
    x = cache
    N, FN, OH, OW = dout.shape
    _, C, FH, FW = W.shape
    K, P = C * FH * FW, OH * OW
    W2T = np.ascontiguousarray(W.reshape(FN, K).T)
    dout = dout.reshape(N, FN, P)
    nb = _block_size(N, K * P, x.itemsize)
    col_buf, dcol_buf = np.empty(K * nb * P, dtype=x.dtype), np.empty(K * nb * P, dtype=x.dtype)
    dout_buf = np.empty(FN * nb * P, dtype=x.dtype)
    dW_blk, db_blk = np.empty((FN, K), dtype=x.dtype), np.empty(FN, dtype=x.dtype)
    dW, db = np.zeros((FN, K), dtype=x.dtype), np.zeros(FN, dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype)
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        m = (n1 - n0) * P
        cols, dcols, douts = _matrix(col_buf, K, m), _matrix(dcol_buf, K, m), _matrix(dout_buf, FN, m)
        _im2col_t(x[n0:n1], FH, FW, stride, pad, cols)
        _gather_dout_and_bias_grad(dout[n0:n1], douts, db_blk)
        dW += np.dot(douts, cols.T, out=dW_blk)
        db += db_blk
        _col2im_t(np.dot(W2T, douts, out=dcols), FH, FW, stride, pad, dx[n0:n1])
    return dx, dW.reshape(W.shape), db
