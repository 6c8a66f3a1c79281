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

from fastzero.kernels.numba._jit import pjit

#: Columns per parallel task in column reductions: each task owns its
#: columns, so the sums do not race and do not depend on the thread count.
COLUMN_BLOCK = 64


@pjit
def _add_row_vector(out, b):
    n, m = out.shape
    for i in prange(n):
        for j in range(m):
            out[i, j] += b[j]


@pjit
def _column_sums(a, out):
    n, m = a.shape
    for block in prange((m + COLUMN_BLOCK - 1) // COLUMN_BLOCK):
        lo = block * COLUMN_BLOCK
        hi = min(lo + COLUMN_BLOCK, m)
        for j in range(lo, hi):
            out[j] = 0
        for i in range(n):  # rows in order: a fixed summation order per column
            for j in range(lo, hi):
                out[j] += a[i, j]


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
