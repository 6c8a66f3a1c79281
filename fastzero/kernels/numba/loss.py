"""Softmax and the softmax-with-cross-entropy loss, parallel over rows.

The batch loss is a reduction: each row's loss goes to its own slot and the
slots are summed serially in row order, so the loss is the same number
whatever the thread count.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import jit, pjit


@jit
def _softmax_row(x, y):
    """Stable softmax of the 1-D ``x`` into ``y``: ``exp(x - max) / sum``."""
    top = x[0]
    for k in range(1, x.size):
        top = max(top, x[k])
    total = x.dtype.type(0)
    for k in range(x.size):
        e = np.exp(x[k] - top)
        y[k] = e
        total += e
    for k in range(x.size):
        y[k] /= total


@pjit
def _softmax(x, y):
    for i in prange(x.shape[0]):
        _softmax_row(x[i], y[i])


@pjit
def _softmax_cross_entropy_forward(x, t, y):
    n = x.shape[0]
    tiny = x.dtype.type(1e-7)  # the book's delta inside the log
    row_loss = np.empty(n, dtype=x.dtype)
    for i in prange(n):
        _softmax_row(x[i], y[i])
        row_loss[i] = -np.log(y[i, t[i]] + tiny)
    total = x.dtype.type(0)
    for i in range(n):  # serial, in row order: deterministic
        total += row_loss[i]
    return total / x.dtype.type(n)


@pjit
def _softmax_cross_entropy_backward(y, t, scale, dx):
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        for k in range(y.shape[1]):
            dx[i, k] = y[i, k] * scale
        dx[i, t[i]] = (y[i, t[i]] - one) * scale


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``x`` (N, K), stable for large logits."""
    y = np.empty_like(x)
    _softmax(x, y)
    return y


def softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray):
    """Softmax followed by the mean cross-entropy loss.

    Parameters
    ----------
    x : (N, K) array of logits
    t : (N,) int64 array of labels in ``[0, K)``

    Returns
    -------
    loss : float, ``-sum(log(y[n, t[n]] + 1e-7)) / N``
    y : (N, K) array, ``softmax(x)``
    """
    y = np.empty_like(x)
    loss = _softmax_cross_entropy_forward(x, t, y)
    return float(loss), y


def softmax_cross_entropy_backward(dout: float, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Gradient of the loss w.r.t. the logits: ``(y - onehot(t)) * dout / N``.

    Parameters
    ----------
    dout : float, upstream gradient of the loss
    y : (N, K) array, the forward softmax
    t : (N,) int64 array of labels

    Returns
    -------
    dx : (N, K) array
    """
    dx = np.empty_like(y)
    _softmax_cross_entropy_backward(y, t, y.dtype.type(dout / y.shape[0]), dx)
    return dx
