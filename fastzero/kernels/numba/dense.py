"""Affine (fully connected) layer kernels.

The matrix products stay on BLAS (``np.dot``, called from Python, never from
inside a ``prange`` body). Like the convolution's, they run on
:mod:`~fastzero.kernels.numba._slices`: each thread multiplies its own rows
with single-threaded BLAS (the rows of ``x`` for ``out`` and ``dx``, the rows
of ``dW``), so OpenBLAS's own workers never wake and spin (see that module).
numba fuses what is left: the bias add and the bias gradient. ``np.dot``
reads the transposed operands ``W.T`` and ``x.T`` as Fortran-ordered views
through BLAS's transpose flags, without copies.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import jit, pjit
from fastzero.kernels.numba._parallel import n_spans, span
from fastzero.kernels.numba._slices import map_slices


@jit
def _add_row_vector_body(out, b):
    for i in range(out.shape[0]):
        row = out[i]
        for j in range(row.size):
            row[j] += b[j]


@jit
def _column_sums_body(a, out, lo, hi):
    """``out[lo:hi]`` = sums of columns ``lo:hi`` of ``a``, rows added in order."""
    sums = out[lo:hi]
    sums[:] = 0
    for i in range(a.shape[0]):
        row = a[i, lo:hi]
        for j in range(row.size):
            sums[j] += row[j]


@pjit
def _column_sums(a, out):
    n, m = a.shape
    k = n_spans(m, n)
    if k == 1:
        _column_sums_body(a, out, 0, m)
    else:
        for s in prange(k):  # each span owns its columns: no race
            lo, hi = span(s, k, m)
            _column_sums_body(a, out, lo, hi)


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
    out = np.empty((x.shape[0], W.shape[1]), dtype=np.result_type(x, W))

    def rows(lo: int, hi: int) -> None:
        _add_row_vector_body(np.dot(x[lo:hi], W, out=out[lo:hi]), b)

    map_slices(rows, x.shape[0])
    return out


def affine_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray):
    """Gradients of ``x @ W + b``.

    Parameters
    ----------
    dout : (N, M) array
    x : (N, D) array
    W : (D, M) array

    Returns
    -------
    dx : (N, D) array, ``dout @ W.T``
    dW : (D, M) array, ``x.T @ dout``
    db : (M,) array, column sums of ``dout``
    """
    dtype = np.result_type(dout, W)
    dx, dW = np.empty((dout.shape[0], W.shape[0]), dtype=dtype), np.empty(W.shape, dtype=dtype)

    def rows(lo: int, hi: int, w_lo: int, w_hi: int) -> None:
        """Rows ``lo:hi`` of ``dx`` and rows ``w_lo:w_hi`` of ``dW``."""
        np.dot(dout[lo:hi], W.T, out=dx[lo:hi])
        np.dot(x[:, w_lo:w_hi].T, dout, out=dW[w_lo:w_hi])

    map_slices(rows, dout.shape[0], W.shape[0])
    return dx, dW, column_sums(dout)
