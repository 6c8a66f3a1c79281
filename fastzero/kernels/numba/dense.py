"""Affine (fully connected) layer kernels.

The matrix products stay on BLAS (``np.dot``, called from Python, never from
inside a ``prange`` body, so BLAS and numba threads do not oversubscribe the
cores); numba fuses what is left around them: the bias add and the bias
gradient. ``np.dot`` reads the transposed operands ``W.T`` and ``x.T`` as
Fortran-ordered views through BLAS's transpose flags, without copies.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import jit, pjit
from fastzero.kernels.numba._parallel import n_spans, span


@jit
def _add_row_vector_body(out, b):
    for i in range(out.shape[0]):
        row = out[i]
        for j in range(row.size):
            row[j] += b[j]


@pjit
def _add_row_vector(out, b):
    n, m = out.shape
    k = n_spans(n, m)
    if k == 1:
        _add_row_vector_body(out, b)
    else:
        for s in prange(k):
            lo, hi = span(s, k, n)
            _add_row_vector_body(out[lo:hi], b)


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
    out = np.dot(x, W)
    _add_row_vector(out, b)
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
    dx = np.dot(dout, W.T)
    dW = np.dot(x.T, dout)
    return dx, dW, column_sums(dout)
