"""Convolution kernels: im2col / col2im and the convolution layer's forward and backward.

The heavy arithmetic is BLAS matrix multiplication (``np.dot``, called from
the Python wrappers, never inside a ``prange``); serial numba kernels do the
data movement around it. Internally the patch matrix is kept
*transposed*, ``colT (C*FH*FW, B*OH*OW)`` for ``B`` samples: each row is one
filter tap, so the kernels copy runs of image rows, and the forward product
``W (FN, C*FH*FW) @ colT`` already has the filters in its rows.

The batch is processed in blocks of ``B`` samples whose patch matrix fits in
:data:`BLOCK_BYTES` (about one core's L2 cache): im2col, the three products
and col2im of a block run while its patches are in cache, instead of
streaming a patch matrix ``FH*FW`` times the size of the images through
memory. Forward plus backward, batch 100, float64, one thread, best of 15
interleaved runs on a loaded machine (ms; measured before the work was
split among threads):

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

The threads split the batch (:func:`~fastzero.kernels.numba._slices.map_slices`):
each takes a contiguous slice of samples and runs its blocks from start to
end, kernels and single-threaded products, so the cores never pass between
numba's and OpenBLAS's thread pools. 2 threads, float64, forward plus
backward, ``fastzero bench`` medians on an idle machine, ``prange`` kernels
between 2-thread products -> this: conv1 20.0 -> 11.4 ms, conv2 66.9 ->
33.2 ms. Every slice writes its own samples of ``out`` and ``dx``; the
gradients of ``W`` and ``b`` are summed block by block in sample order
within a slice, then slice by slice, and the block size depends only on the
shapes. Results are therefore bitwise reproducible for a fixed thread count.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._slices import map_slices


#: Bytes of patch matrix per block of samples (see the module docstring).
BLOCK_BYTES = 1 << 19


def _out_size(size: int, filter_size: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - filter_size) // stride + 1


@jit
def _im2col_t(x, filter_h, filter_w, stride, pad, colT):
    """Fill ``colT (C*FH*FW, N*OH*OW)`` with the patches of ``x (N, C, H, W)``.

    Row ``(c*FH + i)*FW + j`` holds, for every output pixel ``(n, oy, ox)``
    (column ``(n*OH + oy)*OW + ox``), the input value under filter tap
    ``(c, i, j)``: ``x_padded[n, c, oy*stride + i, ox*stride + j]``. Each
    ``(n, c)`` plane is copied into a zero-bordered buffer first, so the copy
    loops need no bounds and vectorise.
    """
    N, C, H, W = x.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    P = out_h * out_w
    padded = np.zeros((H + 2 * pad, W + 2 * pad), dtype=x.dtype)  # border stays zero
    for n in range(N):
        for c in range(C):
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


@jit
def _col2im_t(colT, filter_h, filter_w, stride, pad, dx):
    """Set ``dx (N, C, H, W)`` to the adjoint of :func:`_im2col_t` applied to ``colT``.

    Each ``(n, c)`` image plane sums every tap of its channel, in tap order
    as the book's ``col2im``, into a zero-bordered buffer and keeps its
    interior: what lands in the padding is dropped.
    """
    N, C, H, W = dx.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    P = out_h * out_w
    padded = np.empty((H + 2 * pad, W + 2 * pad), dtype=dx.dtype)
    for n in range(N):
        for c in range(C):
            padded[:] = 0
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


@jit
def _add_bias_to_output(prod, bias, out):
    """``out[n, f, :] = prod[f, n*P:(n+1)*P] + bias[f]`` (``prod`` is ``W @ colT``)."""
    N, FN, P = out.shape
    for n in range(N):
        for f in range(FN):
            src = prod[f, n * P:(n + 1) * P]
            dst = out[n, f]
            bf = bias[f]
            for p in range(P):
                dst[p] = src[p] + bf


@jit
def _gather_dout_and_bias_grad(dout, doutT, db):
    """``doutT[f, n*P:(n+1)*P] = dout[n, f, :]`` and ``db[f] = dout[:, f, :].sum()``, in sample order."""
    N, FN, P = dout.shape
    for f in range(FN):
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
    K = C * filter_h * filter_w
    P = _out_size(H, filter_h, stride, pad) * _out_size(W, filter_w, stride, pad)
    col = np.empty((N * P, K), dtype=x.dtype)

    def fill(n0: int, n1: int) -> None:
        colT = np.empty((K, (n1 - n0) * P), dtype=x.dtype)
        _im2col_t(x[n0:n1], filter_h, filter_w, stride, pad, colT)
        col[n0 * P:n1 * P] = colT.T

    map_slices(fill, N)
    return col


def col2im(
    col: np.ndarray, x_shape: tuple[int, int, int, int], filter_h: int, filter_w: int, stride: int, pad: int
) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum ``col (N*OH*OW, C*FH*FW)`` back into ``(N, C, H, W)``."""
    N, _, H, W = x_shape
    P = _out_size(H, filter_h, stride, pad) * _out_size(W, filter_w, stride, pad)
    dx = np.empty(tuple(x_shape), dtype=col.dtype)

    def fill(n0: int, n1: int) -> None:
        colT = np.ascontiguousarray(col[n0 * P:n1 * P].T)
        _col2im_t(colT, filter_h, filter_w, stride, pad, dx[n0:n1])

    map_slices(fill, N)
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

    def forward_slice(s0: int, s1: int) -> None:
        col_buf, prod_buf = np.empty(K * nb * P, dtype=x.dtype), np.empty(FN * nb * P, dtype=x.dtype)
        for n0 in range(s0, s1, nb):
            n1 = min(s1, n0 + nb)
            cols, prod = _matrix(col_buf, K, (n1 - n0) * P), _matrix(prod_buf, FN, (n1 - n0) * P)
            _im2col_t(x[n0:n1], FH, FW, stride, pad, cols)
            _add_bias_to_output(np.dot(W2, cols, out=prod), b, out[n0:n1])

    map_slices(forward_slice, N)
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
    dx = np.empty(x.shape, dtype=x.dtype)

    def backward_slice(s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
        """dx of samples ``s0:s1``; returns their share of ``(dW, db)``."""
        col_buf, dcol_buf = np.empty(K * nb * P, dtype=x.dtype), np.empty(K * nb * P, dtype=x.dtype)
        dout_buf = np.empty(FN * nb * P, dtype=x.dtype)
        dW_blk, db_blk = np.empty((FN, K), dtype=x.dtype), np.empty(FN, dtype=x.dtype)
        dW, db = np.zeros((FN, K), dtype=x.dtype), np.zeros(FN, dtype=x.dtype)
        for n0 in range(s0, s1, nb):
            n1 = min(s1, n0 + nb)
            m = (n1 - n0) * P
            cols, dcols, douts = _matrix(col_buf, K, m), _matrix(dcol_buf, K, m), _matrix(dout_buf, FN, m)
            _im2col_t(x[n0:n1], FH, FW, stride, pad, cols)
            _gather_dout_and_bias_grad(dout[n0:n1], douts, db_blk)
            dW += np.dot(douts, cols.T, out=dW_blk)
            db += db_blk
            _col2im_t(np.dot(W2T, douts, out=dcols), FH, FW, stride, pad, dx[n0:n1])
        return dW, db

    shares = map_slices(backward_slice, N)
    dW, db = shares[0]
    for dW_share, db_share in shares[1:]:  # in slice order: the same bits for the same thread count
        dW += dW_share
        db += db_share
    return dx, dW.reshape(W.shape), db
