"""Affine (fully connected) layer kernels.

The matrix products stay on BLAS (``np.dot``, called from Python, never from
inside a ``prange`` body). Like the convolution's, they run on
:mod:`~fastzero.kernels.numba._slices` with single-threaded BLAS, so
OpenBLAS's own workers never wake and spin (see that module). The forward
splits the rows of ``x``. The backward shares out the two products whole
where it can: with 2 threads one computes ``dx`` and the other ``dW``
(with more, each takes an equal run of their rows), because a product split
in halves runs slower on one core than whole. numba fuses what is left: the
bias add and the bias gradient. A call of fewer than
:data:`~fastzero.kernels.numba._slices.INLINE_OPS` multiply-adds (a
book-size network on a few samples) is NumPy alone, on the calling thread: a
numba call and a hand-off to the slice threads cost more than its work.
So is every product while :func:`fastzero._threads.blas_threaded_products`
holds (a network of dense layers; the book's networks built from
:mod:`fastzero.layers` before any convolution): then BLAS threads it itself.
``np.dot`` reads the transposed operands ``W.T`` and ``x.T`` as
Fortran-ordered views through BLAS's transpose flags, without copies.
"""
from __future__ import annotations

import numpy as np

from fastzero._threads import blas_threaded_products
from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans
from fastzero.kernels.numba._slices import INLINE_OPS, map_slices


@jit
def _add_row_vector_body(out, b):
    for i in range(out.shape[0]):
        row = out[i]
        for j in range(row.size):
            row[j] += b[j]


@jit
def _column_sums_body(lo, hi, a, out):
    """``out[lo:hi]`` = sums of columns ``lo:hi`` of ``a``, rows added in order."""
    sums = out[lo:hi]
    sums[:] = 0
    for i in range(a.shape[0]):
        row = a[i, lo:hi]
        for j in range(row.size):
            sums[j] += row[j]


_column_sums = spans(_column_sums_body, "a.shape[1]", "a.shape[0]")  # each span owns its columns


def column_sums(a: np.ndarray) -> np.ndarray:
    """Sum of each column of ``a`` (N, M) -> (M,), race-free and deterministic."""
    out = np.empty(a.shape[1], dtype=a.dtype)
    _column_sums(a, out)
    return out


def affine_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ W + b``.

    Parameters
    ----------
    x : (N, D) array
    W : (D, M) array
    b : (M,) array

    Returns
    -------
    out : (N, M) array
    """
    if x.size * W.shape[1] < INLINE_OPS or blas_threaded_products():
        out = np.dot(x, W)
        out += b
        return out
    out = np.empty((x.shape[0], W.shape[1]), dtype=np.result_type(x, W))

    def rows(lo: int, hi: int) -> None:
        _add_row_vector_body(np.dot(x[lo:hi], W, out=out[lo:hi]), b)

    map_slices(rows, x.shape[0], x.size * W.shape[1])
    return out


#: A matrix product ``dout @ W.T`` of at most this many rows of ``dout``, with a ``W`` of
#: at least :data:`GEMV_MIN_WEIGHTS` entries, runs as one matrix-vector product per row.
GEMV_MAX_ROWS = 3
GEMV_MIN_WEIGHTS = 1 << 14


def _few_rows_dx(dout: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``dout @ W.T``; for a few rows of ``dout`` and a large ``W``, ``W @ dout[i]`` per row:
    a matrix product packs a copy of ``W.T`` first, which costs more than a few
    matrix-vector products that read ``W`` in place (1.3-1.7x at 2-3 rows of 784x50)."""
    n = dout.shape[0]
    if n == 1 or n > GEMV_MAX_ROWS or W.size < GEMV_MIN_WEIGHTS:
        return np.dot(dout, W.T)
    dx = np.empty((n, W.shape[0]), dtype=np.result_type(dout, W))
    for i in range(n):
        np.dot(W, dout[i], out=dx[i])
    return dx


def affine_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, need_dx: bool = True):
    """Gradients of ``x @ W + b``.

    Parameters
    ----------
    dout : (N, M) array
    x : (N, D) array
    W : (D, M) array
    need_dx : False skips ``dx`` (a network's first layer: nobody reads it)

    Returns
    -------
    dx : (N, D) array, ``dout @ W.T``; None when not ``need_dx``
    dW : (D, M) array, ``x.T @ dout``
    db : (M,) array, column sums of ``dout``
    """
    if 2 * dout.size * x.shape[1] < INLINE_OPS or blas_threaded_products():
        dx = _few_rows_dx(dout, W) if need_dx else None
        return dx, np.dot(x.T, dout), np.add.reduce(dout, axis=0)
    dtype = np.result_type(dout, W)
    n, d = dout.shape[0], W.shape[0]
    dx = np.empty((n, d), dtype=dtype) if need_dx else None
    dW = np.empty(W.shape, dtype=dtype)
    units = n * d if need_dx else 0  # each product is n*d units: d per row of dx, n per row of dW
    if n * d == 0:  # no samples (dW = 0) or no inputs: nothing to share out
        return dx, np.dot(x.T, dout).astype(dtype, copy=False), column_sums(dout)

    def work(lo: int, hi: int) -> None:
        """Units ``lo:hi`` of the ``units + n*d``: the rows of ``dx``, then the rows of ``dW``."""
        a, b = min(lo, units) // d, min(hi, units) // d
        if a < b:
            np.dot(dout[a:b], W.T, out=dx[a:b])
        a, b = max(lo - units, 0) // n, max(hi - units, 0) // n
        if a < b:
            np.dot(x[:, a:b].T, dout, out=dW[a:b])

    map_slices(work, units + n * d, (units + n * d) * dout.shape[1])
    return dx, dW, column_sums(dout)
