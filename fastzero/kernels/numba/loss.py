"""Softmax and the softmax-with-cross-entropy loss, parallel over rows.

The batch loss is a reduction: each row's loss goes to its own slot and the
slots are summed serially in row order, so the loss is the same number
whatever the thread count.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans

#: Operations per softmax entry (max, exp, sum, divide), for :func:`n_spans`.
SOFTMAX_COST = 8


@jit
def _softmax_rows(lo, hi, x, y):
    """Stable softmax of rows ``lo:hi`` of ``x`` into ``y``: ``exp(x - max) / sum``."""
    x, y = x[lo:hi], y[lo:hi]
    for i in range(x.shape[0]):
        row, out = x[i], y[i]
        top = row[0]
        for k in range(1, row.size):
            top = max(top, row[k])
        total = x.dtype.type(0)
        for k in range(row.size):
            e = np.exp(row[k] - top)
            out[k] = e
            total += e
        for k in range(row.size):
            out[k] /= total


@jit
def _softmax_loss_rows(lo, hi, x, t, y, losses):
    """Softmax of rows ``lo:hi``, then each row's ``-log(y[i, t[i]] + 1e-7)`` (the
    book's delta) into ``losses``."""
    _softmax_rows(lo, hi, x, y)
    y, t, losses = y[lo:hi], t[lo:hi], losses[lo:hi]
    tiny = y.dtype.type(1e-7)
    for i in range(y.shape[0]):
        losses[i] = -np.log(y[i, t[i]] + tiny)


@jit
def _softmax_cross_entropy_backward_rows(lo, hi, y, t, rows, scale, dx):
    """``(y - target) * scale`` for rows ``lo:hi``: the target is row ``i`` of ``rows``
    when ``rows`` is not empty, else the one-hot row of label ``t[i]``."""
    y, t, rows, dx = y[lo:hi], t[lo:hi], rows[lo:hi], dx[lo:hi]
    one = y.dtype.type(1)
    soft = rows.shape[0] > 0
    for i in range(y.shape[0]):
        row, out = y[i], dx[i]
        if soft:
            target = rows[i]
            for k in range(row.size):
                out[k] = (row[k] - target[k]) * scale
        else:
            for k in range(row.size):
                out[k] = row[k] * scale
            out[t[i]] = (row[t[i]] - one) * scale


_softmax = spans(_softmax_rows, "x.shape[0]", "SOFTMAX_COST * x.shape[1]")
_softmax_losses = spans(_softmax_loss_rows, "x.shape[0]", "SOFTMAX_COST * x.shape[1]")
_softmax_cross_entropy_backward = spans(_softmax_cross_entropy_backward_rows, "y.shape[0]",
                                        "y.shape[1]")


@jit
def _softmax_cross_entropy_forward(x, t, y):
    losses = np.empty(x.shape[0], dtype=x.dtype)
    _softmax_losses(x, t, y, losses)
    total = x.dtype.type(0)
    for i in range(losses.size):  # serial, in row order: deterministic
        total += losses[i]
    return total / x.dtype.type(losses.size)


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
    t : (N,) int64 array of labels, or (N, K) target rows of y's dtype
        (then ``dx = (y - t) * dout / N``)

    Returns
    -------
    dx : (N, K) array
    """
    dx = np.empty_like(y)
    if t.ndim == 2:  # one kernel for both: the unused operand is an empty array
        labels, rows = np.empty(0, np.int64), t
    else:
        labels, rows = t, np.empty((0, y.shape[1]), y.dtype)
    _softmax_cross_entropy_backward(y, labels, rows, y.dtype.type(dout / y.shape[0]), dx)
    return dx
