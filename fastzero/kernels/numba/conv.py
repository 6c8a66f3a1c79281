"""Convolution kernels: im2col / col2im and the convolution layer's forward and backward.

Three ways to multiply, chosen per layer by :func:`_vector_path` and
:data:`DIRECT_MAX_TAPS`:

* stride 1, ``pad < FH, FW``, compiled for AVX-512: the forward, and the
  backward of filters with more than :data:`DIRECT_MAX_TAPS` taps, on
  :mod:`~fastzero.kernels.numba.conv_vector`, register-blocked vector tiles
  with im2col fused into their loads (no BLAS, no patch matrix);
* the backward of up to 75 taps: numba loops, one sample at a time;
* the rest (strides, large pads, other CPUs): im2col blocks and BLAS.

Measured per layer (batch 100, 1 thread, CPU time of the calling thread),
the tiles run the stride-1 products of the book's networks at one and a
half to two and a half times BLAS's speed on the same products. With few
taps the backward is the exception: one input channel (DeepConvNet conv1,
9 taps; SimpleConvNet conv1, 25) leaves the tiles' ``dx`` three quarters
empty, and the loops beat them there; the forward of those layers is as
fast or faster on the tiles.

The rest of this docstring is about the BLAS and loop paths. Filters with many taps (``K = C*FH*FW`` above :data:`DIRECT_MAX_TAPS`)
multiply by BLAS (``np.dot``, called from the Python wrappers, never inside a
``prange``), and serial numba kernels do the data movement around it. Small
filters multiply by numba loops instead, one sample at a time (below).
Internally the patch matrix is kept *transposed*, ``colT (C*FH*FW, B*OH*OW)``
for ``B`` samples: each row is one filter tap, so the kernels copy runs of
image rows, and the forward product ``W (FN, C*FH*FW) @ colT`` already has
the filters in its rows.

The batch is processed in blocks of ``B`` samples whose patch matrix fits in
:data:`BLOCK_BYTES` (about one core's L2 cache): im2col, the three products
and col2im of a block run while its patches are in cache, instead of
streaming a patch matrix ``FH*FW`` times the size of the images through
memory; a block budget of 512 KiB was the best or tied on the book's layer
shapes, and the products then run at about the BLAS rate of a large square
product.

The backward recomputes a block's patches from ``x`` rather than keeping
them (keeping them is slower: the patches no longer fit in cache), so the forward's
cache is ``x`` itself: it must not be modified before the backward (the
layer keeps it as ``Convolution.x`` anyway). Buffers are allocated once per
call and the products write into them (``np.dot(..., out=...)``).

With few taps BLAS runs far from its peak (SimpleConvNet's conv1 products
have K = 25), and the gather, bias and transpose passes around them add to
it. :func:`_forward_direct` and
:func:`_backward_direct` take one sample at a time instead: its patches
(``colT`` of one sample), then loops that write ``out`` and read ``dout`` in
place (:func:`_rows_times`, two output rows per sweep and five terms per
load; :func:`_add_row_products`, ten dot products per sweep). Measured
against BLAS on the book's shapes, the loops win up to 75 taps and tie or
lose at 144, hence :data:`DIRECT_MAX_TAPS`.

The threads split the batch: each takes a contiguous part of the samples
and runs its blocks from start to end. On the BLAS path the parts run on
Python threads (:func:`~fastzero.kernels.numba._slices.map_slices`), kernels
and single-threaded products, so the cores never pass between numba's and
OpenBLAS's thread pools (alternating ``prange`` kernels and 2-thread
products took about twice as long). The loops and the vector tiles call no
BLAS: their parts run in one ``prange`` region on numba's threads
(:func:`~fastzero.kernels.numba.conv_vector.parts`), which costs less to
enter than a hand-off to a Python thread (``fastzero bench --tail``). Every
part writes its own samples of ``out`` and ``dx``; the gradients of ``W``
and ``b`` are summed block by block in sample order within a part, then
part by part, and the block size depends only on the shapes. Results are
therefore bitwise reproducible for a fixed thread count.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero._threads import note_convolution
from fastzero.kernels._geometry import output_size
from fastzero.kernels.numba import conv_vector
from fastzero.kernels.numba._jit import jit, pjit
from fastzero.kernels.numba._slices import map_slices
from fastzero.kernels.numba._vector import vector_target


#: Bytes of patch matrix per block of samples (see the module docstring).
BLOCK_BYTES = 1 << 19

#: Filters with at most this many taps (``C*FH*FW``) multiply by numba loops,
#: not BLAS: measured faster at 9 to 75 taps, even or slower at 144 (see the
#: module docstring).
DIRECT_MAX_TAPS = 75

#: Stride-1 filters with at least this many taps run on the vector tiles of
#: :mod:`~fastzero.kernels.numba.conv_vector` (see :func:`_vector_path`);
#: their backward only above :data:`DIRECT_MAX_TAPS` taps.
VECTOR_MIN_TAPS = 1


def _vector_path(K: int, FH: int, FW: int, stride: int, pad: int, backward: bool = False) -> bool:
    """Whether :mod:`~fastzero.kernels.numba.conv_vector` computes this convolution's forward (``backward``)."""
    taps = max(VECTOR_MIN_TAPS, DIRECT_MAX_TAPS + 1) if backward else VECTOR_MIN_TAPS
    return stride == 1 and pad < min(FH, FW) and K >= taps and vector_target()


#: :func:`output_size` for the loops below (numba calls only compiled functions).
_output_size = jit(output_size)


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
    out_h = _output_size(H, filter_h, stride, pad)
    out_w = _output_size(W, filter_w, stride, pad)
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
    out_h = _output_size(H, filter_h, stride, pad)
    out_w = _output_size(W, filter_w, stride, pad)
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


@jit
def _rows_times(A, b, src, dst):
    """``dst (J, P) = A (J, I) @ src (I, P) + b[:, None]`` by loops, for small ``I``.

    Two rows of ``dst`` per pass and five terms per sweep over ``P``: each
    load of ``src`` feeds two rows, and the sweep vectorises over ``P``.
    """
    J, I = A.shape
    P = src.shape[1]
    for j in range(0, J - 1, 2):
        for p in range(P):
            dst[j, p] = b[j]
            dst[j + 1, p] = b[j + 1]
        i = 0
        while i + 4 < I:
            a0, a1, a2, a3, a4 = A[j, i], A[j, i + 1], A[j, i + 2], A[j, i + 3], A[j, i + 4]
            c0, c1, c2, c3, c4 = (A[j + 1, i], A[j + 1, i + 1], A[j + 1, i + 2],
                                  A[j + 1, i + 3], A[j + 1, i + 4])
            for p in range(P):
                s0, s1, s2, s3, s4 = src[i, p], src[i + 1, p], src[i + 2, p], src[i + 3, p], src[i + 4, p]
                dst[j, p] += a0 * s0 + a1 * s1 + a2 * s2 + a3 * s3 + a4 * s4
                dst[j + 1, p] += c0 * s0 + c1 * s1 + c2 * s2 + c3 * s3 + c4 * s4
            i += 5
        for i in range(i, I):
            a, c = A[j, i], A[j + 1, i]
            for p in range(P):
                dst[j, p] += a * src[i, p]
                dst[j + 1, p] += c * src[i, p]
    if J % 2:
        j = J - 1
        for p in range(P):
            dst[j, p] = b[j]
        for i in range(I):
            a = A[j, i]
            for p in range(P):
                dst[j, p] += a * src[i, p]


@jit
def _add_row_products(a, c, out):
    """``out (J, I) += a (J, P) @ c (I, P).T``: dot products of rows, two rows of ``a`` by five of ``c``."""
    J, P = a.shape
    I = c.shape[0]
    zero = a.dtype.type(0)
    for j in range(0, J - 1, 2):
        i = 0
        while i + 4 < I:
            s0 = s1 = s2 = s3 = s4 = t0 = t1 = t2 = t3 = t4 = zero
            for p in range(P):
                u, v = a[j, p], a[j + 1, p]
                c0, c1, c2, c3, c4 = c[i, p], c[i + 1, p], c[i + 2, p], c[i + 3, p], c[i + 4, p]
                s0 += u * c0
                s1 += u * c1
                s2 += u * c2
                s3 += u * c3
                s4 += u * c4
                t0 += v * c0
                t1 += v * c1
                t2 += v * c2
                t3 += v * c3
                t4 += v * c4
            out[j, i] += s0
            out[j, i + 1] += s1
            out[j, i + 2] += s2
            out[j, i + 3] += s3
            out[j, i + 4] += s4
            out[j + 1, i] += t0
            out[j + 1, i + 1] += t1
            out[j + 1, i + 2] += t2
            out[j + 1, i + 3] += t3
            out[j + 1, i + 4] += t4
            i += 5
        for i in range(i, I):
            s = t = zero
            for p in range(P):
                s += a[j, p] * c[i, p]
                t += a[j + 1, p] * c[i, p]
            out[j, i] += s
            out[j + 1, i] += t
    if J % 2:
        j = J - 1
        for i in range(I):
            s = zero
            for p in range(P):
                s += a[j, p] * c[i, p]
            out[j, i] += s


@jit
def _add_row_sums(a, out):
    """``out (J,) += a (J, P).sum(axis=1)``."""
    for j in range(a.shape[0]):
        s = a.dtype.type(0)
        for p in range(a.shape[1]):
            s += a[j, p]
        out[j] += s


@jit
def _forward_direct(x, W2, b, filter_h, filter_w, stride, pad, out):
    """``out (N, FN, P)`` of ``x (N, C, H, W)``, one sample at a time, products by :func:`_rows_times`."""
    cols = np.empty((W2.shape[1], out.shape[2]), dtype=x.dtype)
    for n in range(x.shape[0]):
        _im2col_t(x[n:n + 1], filter_h, filter_w, stride, pad, cols)
        _rows_times(W2, b, cols, out[n])


@jit
def _backward_direct(x, dout, W2T, filter_h, filter_w, stride, pad, need_dx, dx, dW, db):
    """``dx`` of ``x (N, C, H, W)`` given ``dout (N, FN, P)`` (if ``need_dx``), one sample at a
    time; adds the samples' gradients to ``dW (FN, K)`` and ``db (FN,)`` in sample order."""
    K, P = W2T.shape[0], dout.shape[2]
    cols, dcols = np.empty((K, P), dtype=x.dtype), np.empty((K, P), dtype=x.dtype)
    no_bias = np.zeros(K, dtype=x.dtype)
    for n in range(x.shape[0]):
        _im2col_t(x[n:n + 1], filter_h, filter_w, stride, pad, cols)
        _add_row_products(dout[n], cols, dW)
        _add_row_sums(dout[n], db)
        if need_dx:
            _rows_times(W2T, no_bias, dout[n], dcols)
            _col2im_t(dcols, filter_h, filter_w, stride, pad, dx[n:n + 1])


@pjit
def _forward_direct_parts(bounds, x, W2, b, filter_h, filter_w, stride, pad, out):
    """:func:`_forward_direct` of the samples ``bounds[s, 0]:bounds[s, 1]`` of every part ``s``, in parallel."""
    for s in prange(bounds.shape[0]):
        s0, s1 = bounds[s, 0], bounds[s, 1]
        _forward_direct(x[s0:s1], W2, b, filter_h, filter_w, stride, pad, out[s0:s1])


@pjit
def _backward_direct_parts(bounds, x, dout, W2T, filter_h, filter_w, stride, pad, need_dx, dx, dWs, dbs):
    """:func:`_backward_direct` of every part of ``bounds``, in parallel; part ``s`` sums into ``dWs[s]``, ``dbs[s]``."""
    for s in prange(bounds.shape[0]):
        s0, s1 = bounds[s, 0], bounds[s, 1]
        _backward_direct(x[s0:s1], dout[s0:s1], W2T, filter_h, filter_w, stride, pad, need_dx, dx[s0:s1], dWs[s],
                         dbs[s])


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int, pad: int) -> np.ndarray:
    """Patch matrix of ``x (N, C, H, W)``: ``(N*OH*OW, C*FH*FW)``, the book's layout."""
    N, C, H, W = x.shape
    K = C * filter_h * filter_w
    P = output_size(H, filter_h, stride, pad) * output_size(W, filter_w, stride, pad)
    col = np.empty((N * P, K), dtype=x.dtype)

    def fill(n0: int, n1: int) -> None:
        colT = np.empty((K, (n1 - n0) * P), dtype=x.dtype)
        _im2col_t(x[n0:n1], filter_h, filter_w, stride, pad, colT)
        col[n0 * P:n1 * P] = colT.T

    map_slices(fill, N, col.size)
    return col


def col2im(
    col: np.ndarray, x_shape: tuple[int, int, int, int], filter_h: int, filter_w: int, stride: int, pad: int
) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum ``col (N*OH*OW, C*FH*FW)`` back into ``(N, C, H, W)``."""
    N, _, H, W = x_shape
    P = output_size(H, filter_h, stride, pad) * output_size(W, filter_w, stride, pad)
    dx = np.empty(tuple(x_shape), dtype=col.dtype)

    def fill(n0: int, n1: int) -> None:
        colT = np.ascontiguousarray(col[n0 * P:n1 * P].T)
        _col2im_t(colT, filter_h, filter_w, stride, pad, dx[n0:n1])

    map_slices(fill, N, col.size)
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
    note_convolution()  # affine products outside a network run in slices from now on
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    OH, OW = output_size(H, FH, stride, pad), output_size(Wd, FW, stride, pad)
    K, P = C * FH * FW, OH * OW
    W2 = W.reshape(FN, K)
    if _vector_path(K, FH, FW, stride, pad):
        return conv_vector.conv_forward(x, W, b, pad), x
    out = np.empty((N, FN, P), dtype=x.dtype)
    if K <= DIRECT_MAX_TAPS:
        W2 = np.ascontiguousarray(W2)
        bounds, _ = conv_vector.parts(N, out.size * K)
        if len(bounds) == 1:
            _forward_direct(x, W2, b, FH, FW, stride, pad, out)
        else:
            _forward_direct_parts(bounds, x, W2, b, FH, FW, stride, pad, out)
        return out.reshape(N, FN, OH, OW), x
    nb = _block_size(N, K * P, x.itemsize)

    def forward_slice(s0: int, s1: int) -> None:
        col_buf, prod_buf = np.empty(K * nb * P, dtype=x.dtype), np.empty(FN * nb * P, dtype=x.dtype)
        for n0 in range(s0, s1, nb):
            n1 = min(s1, n0 + nb)
            cols, prod = _matrix(col_buf, K, (n1 - n0) * P), _matrix(prod_buf, FN, (n1 - n0) * P)
            _im2col_t(x[n0:n1], FH, FW, stride, pad, cols)
            _add_bias_to_output(np.dot(W2, cols, out=prod), b, out[n0:n1])

    map_slices(forward_slice, N, out.size * K)
    return out.reshape(N, FN, OH, OW), x


def conv_backward(dout: np.ndarray, cache, W: np.ndarray, stride: int, pad: int, need_dx: bool = True):
    """Gradients ``(dx, dW, db)`` of the convolution given ``dout (N, FN, OH, OW)``; ``dx`` is
    None when not ``need_dx`` (a network's first layer: nobody reads it)."""
    x = cache
    N, FN, OH, OW = dout.shape
    _, C, FH, FW = W.shape
    K, P = C * FH * FW, OH * OW
    if _vector_path(K, FH, FW, stride, pad, backward=True):
        return conv_vector.conv_backward(dout, x, W, pad, need_dx)
    W2T = np.ascontiguousarray(W.reshape(FN, K).T)
    dout = np.ascontiguousarray(dout).reshape(N, FN, P)
    dx = np.empty(x.shape, dtype=x.dtype)  # left unwritten when not need_dx
    ops = 2 * dout.size * K  # with dx's; without, the same parts: dW keeps its bits

    if K <= DIRECT_MAX_TAPS:
        bounds, _ = conv_vector.parts(N, ops)
        dWs, dbs = np.zeros((len(bounds), FN, K), dtype=x.dtype), np.zeros((len(bounds), FN), dtype=x.dtype)
        if len(bounds) == 1:
            _backward_direct(x, dout, W2T, FH, FW, stride, pad, need_dx, dx, dWs[0], dbs[0])
        else:
            _backward_direct_parts(bounds, x, dout, W2T, FH, FW, stride, pad, need_dx, dx, dWs, dbs)
        for s in range(1, len(bounds)):  # in part order: the same bits for the same thread count
            dWs[0] += dWs[s]
            dbs[0] += dbs[s]
        return (dx if need_dx else None), dWs[0].reshape(W.shape), dbs[0]
    nb = _block_size(N, K * P, x.itemsize)

    def backward_slice(s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
        """dx of samples ``s0:s1`` (if ``need_dx``); returns their share of ``(dW, db)``."""
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
            if need_dx:
                _col2im_t(np.dot(W2T, douts, out=dcols), FH, FW, stride, pad, dx[n0:n1])
        return dW, db

    shares = map_slices(backward_slice, N, ops)
    dW, db = shares[0]
    for dW_share, db_share in shares[1:]:  # in slice order: the same bits for the same thread count
        dW += dW_share
        db += db_share
    return (dx if need_dx else None), dW.reshape(W.shape), db
