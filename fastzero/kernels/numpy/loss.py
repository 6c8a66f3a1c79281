"""Softmax and the softmax + cross-entropy loss (the book's ``SoftmaxWithLoss``)."""
from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``x`` (N, K), shifted by the row max so it cannot overflow.

    Logits spanning more than the float range make the shift round to -inf
    for the smallest ones; ``exp(-inf) = 0`` is then their exact probability.
    """
    with np.errstate(over="ignore"):
        x = x - np.max(x, axis=1, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=1, keepdims=True)


def softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray):
    """``(loss, y)``: ``y = softmax(x)``, ``loss = -sum(log(y[n, t[n]] + 1e-7)) / N``.

    ``x`` (N, K) logits, ``t`` (N,) int64 labels; ``loss`` is a Python float.
    """
    y = softmax(x)
    n = x.shape[0]
    loss = -np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n
    return float(loss), y


def softmax_cross_entropy_backward(dout: float, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(y - onehot(t)) * dout / N`` for labels ``t`` (N,), ``(y - t) * dout / N`` for rows (N, K).

    ``dout`` is a Python float; target rows have ``y``'s dtype.
    """
    n = y.shape[0]
    if t.ndim == 2:
        return (y - t) * (dout / n)
    dx = y.copy()
    dx[np.arange(n), t] -= 1
    dx *= dout / n
    return dx
