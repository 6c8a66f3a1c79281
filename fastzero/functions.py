"""The book's functions (``common/functions.py``): activations and losses.

Each takes array-likes; integer and bool input is computed in float64,
float32 stays float32 (see :mod:`fastzero._validate`). ``sigmoid``,
``softmax`` and ``softmax_loss`` run on the active backend's kernels.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastzero import _backend
from fastzero import _validate as v

__all__ = [
    "identity_function",
    "step_function",
    "sigmoid",
    "sigmoid_grad",
    "relu",
    "relu_grad",
    "softmax",
    "sum_squared_error",
    "cross_entropy_error",
    "softmax_loss",
    "np",  # the book's module has no __all__: a star import gives a script its np
]


def _rows(x: Any, where: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (K,) or (N, K) validated, and its (N, K) view (a single sample is N = 1)."""
    arr = v.layer_input(x, where, "(K,) or (N, K)", ndim=(1, 2), what=what)
    return arr, arr.reshape(-1, arr.shape[-1])


def identity_function(x: Any) -> Any:
    """``x`` unchanged (the output activation of regression)."""
    return x


def step_function(x: Any) -> np.ndarray:
    """1 where ``x > 0``, else 0, as an int array."""
    return np.array(np.asarray(x) > 0, dtype=int)


def sigmoid(x: Any) -> np.ndarray:
    """``1 / (1 + exp(-x))`` elementwise, without overflow warnings for very negative ``x``."""
    arr = v.as_float_array(x, "sigmoid")
    out = _backend.kernels().sigmoid_forward(arr.reshape(-1)).reshape(arr.shape)
    return out[()] if out.ndim == 0 else out


def sigmoid_grad(x: Any) -> np.ndarray:
    """Derivative of :func:`sigmoid`: ``(1 - sigmoid(x)) * sigmoid(x)``."""
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x: Any) -> np.ndarray:
    """``max(0, x)`` elementwise."""
    return np.maximum(0, v.as_float_array(x, "relu"))


def relu_grad(x: Any) -> np.ndarray:
    """Derivative of :func:`relu` as the book defines it: 1 where ``x >= 0``, else 0."""
    arr = v.as_float_array(x, "relu_grad")
    grad = np.zeros_like(arr)
    grad[arr >= 0] = 1
    return grad


def softmax(x: Any) -> np.ndarray:
    """Softmax over the last axis of ``x`` (K,), (N, K) or (..., K), shifted so it cannot overflow."""
    arr = v.layer_input(x, "softmax", "(..., K)")
    y = _backend.kernels().softmax(arr.reshape(-1, arr.shape[-1]))
    return y.reshape(arr.shape)


def sum_squared_error(y: Any, t: Any) -> float:
    """``0.5 * sum((y - t)**2)`` for ``y`` and ``t`` of the same shape."""
    y = v.as_float_array(y, "sum_squared_error", "y")
    t = v.as_float_array(t, "sum_squared_error", "t", y.dtype)
    v.check_shape(t, y.shape, "sum_squared_error", "t (like y)")
    return float(0.5 * np.sum((y - t) ** 2))


def cross_entropy_error(y: Any, t: Any) -> float:
    """Mean cross-entropy ``-sum(log(y[n, t[n]] + 1e-7)) / N`` of probabilities ``y``.

    Parameters
    ----------
    y : (N, K) or (K,)
        Probabilities (e.g. a softmax output); one sample when 1-D.
    t : (N,) or (N, 1) int labels, or (N, K) target rows (for 1-D ``y``: one label or (K,))
        Target rows (one-hot or soft) are turned into labels by argmax, as in the book.
    """
    arr, rows = _rows(y, "cross_entropy_error", "y")
    n, k = rows.shape
    labels = v.labels(t, n, k, "cross_entropy_error", one_hot_ndim=arr.ndim)
    return float(-np.sum(np.log(rows[np.arange(n), labels] + 1e-7)) / n)


def softmax_loss(X: Any, t: Any) -> float:
    """``cross_entropy_error(softmax(X), t)`` for logits ``X`` (N, K) or (K,)."""
    arr, rows = _rows(X, "softmax_loss", "X")
    labels = v.labels(t, rows.shape[0], rows.shape[1], "softmax_loss", one_hot_ndim=arr.ndim)
    loss, _ = _backend.kernels().softmax_cross_entropy_forward(rows, labels)
    return loss
