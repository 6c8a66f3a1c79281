"""Optimizer update kernels: one fused, in-place pass over each parameter.

The wrappers flatten ``param``, ``grad`` and the state arrays to 1-D views of
the same memory (they are C-contiguous) and cast the hyper-parameters to the
parameter's dtype, so float32 updates run in float32. Products of
hyper-parameters (``1 - beta1``, ``momentum**2`` ...) are formed in Python
floats first, in the same order as the book's NumPy code.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans

#: The book's epsilon in the adaptive optimizers' denominators.
EPS = 1e-7


@jit
def _sgd_body(lo, hi, param, grad, lr):
    param, grad = param[lo:hi], grad[lo:hi]
    for i in range(param.size):
        param[i] -= lr * grad[i]


@jit
def _momentum_body(lo, hi, param, grad, v, lr, momentum):
    param, grad, v = param[lo:hi], grad[lo:hi], v[lo:hi]
    for i in range(param.size):
        vi = momentum * v[i] - lr * grad[i]
        v[i] = vi
        param[i] += vi


@jit
def _nesterov_body(lo, hi, param, grad, v, lr, momentum, momentum_sq, lr_ahead):
    param, grad, v = param[lo:hi], grad[lo:hi], v[lo:hi]
    for i in range(param.size):
        vi = v[i]
        param[i] += momentum_sq * vi
        param[i] -= lr_ahead * grad[i]
        vi *= momentum
        vi -= lr * grad[i]
        v[i] = vi


@jit
def _adagrad_body(lo, hi, param, grad, h, lr):
    param, grad, h = param[lo:hi], grad[lo:hi], h[lo:hi]
    eps = param.dtype.type(EPS)
    for i in range(param.size):
        h_i = h[i] + grad[i] * grad[i]
        h[i] = h_i
        param[i] -= lr * grad[i] / (np.sqrt(h_i) + eps)


@jit
def _rmsprop_body(lo, hi, param, grad, h, lr, decay_rate, keep):
    param, grad, h = param[lo:hi], grad[lo:hi], h[lo:hi]
    eps = param.dtype.type(EPS)
    for i in range(param.size):
        h_i = decay_rate * h[i] + keep * grad[i] * grad[i]
        h[i] = h_i
        param[i] -= lr * grad[i] / (np.sqrt(h_i) + eps)


@jit
def _adam_body(lo, hi, param, grad, m, v, lr_t, one_minus_beta1, one_minus_beta2):
    param, grad, m, v = param[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi]
    eps = param.dtype.type(EPS)
    for i in range(param.size):
        g = grad[i]
        mi = m[i] + one_minus_beta1 * (g - m[i])
        vi = v[i] + one_minus_beta2 * (g * g - v[i])
        m[i] = mi
        v[i] = vi
        param[i] -= lr_t * mi / (np.sqrt(vi) + eps)


# The costs are operations per element: a square root and a division count as four.
_sgd = spans(_sgd_body, "param.size", "2")
_momentum = spans(_momentum_body, "param.size", "4")
_nesterov = spans(_nesterov_body, "param.size", "8")
_adagrad = spans(_adagrad_body, "param.size", "8")
_rmsprop = spans(_rmsprop_body, "param.size", "8")
_adam = spans(_adam_body, "param.size", "12")


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """``param -= lr * grad``, in place."""
    _sgd(param.reshape(-1), grad.reshape(-1), param.dtype.type(lr))


def momentum_update(
    param: np.ndarray, grad: np.ndarray, v: np.ndarray, lr: float, momentum: float
) -> None:
    """``v = momentum * v - lr * grad; param += v``, in place."""
    typ = param.dtype.type
    _momentum(param.reshape(-1), grad.reshape(-1), v.reshape(-1), typ(lr), typ(momentum))


def nesterov_update(
    param: np.ndarray, grad: np.ndarray, v: np.ndarray, lr: float, momentum: float
) -> None:
    """Nesterov's accelerated gradient, in place; the parameter step uses the
    velocity before this step's update.

    ``param += momentum**2 * v; param -= (1 + momentum) * lr * grad;
    v *= momentum; v -= lr * grad``
    """
    typ = param.dtype.type
    _nesterov(
        param.reshape(-1), grad.reshape(-1), v.reshape(-1),
        typ(lr), typ(momentum), typ(momentum * momentum), typ((1 + momentum) * lr),
    )


def adagrad_update(param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float) -> None:
    """``h += grad**2; param -= lr * grad / (sqrt(h) + 1e-7)``, in place."""
    _adagrad(param.reshape(-1), grad.reshape(-1), h.reshape(-1), param.dtype.type(lr))


def rmsprop_update(
    param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float, decay_rate: float
) -> None:
    """``h = decay_rate * h + (1 - decay_rate) * grad**2;
    param -= lr * grad / (sqrt(h) + 1e-7)``, in place."""
    typ = param.dtype.type
    _rmsprop(
        param.reshape(-1), grad.reshape(-1), h.reshape(-1),
        typ(lr), typ(decay_rate), typ(1 - decay_rate),
    )


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr_t: float,
    beta1: float,
    beta2: float,
) -> None:
    """Adam, in place; ``lr_t`` is already bias-corrected by the caller.

    ``m += (1 - beta1) * (grad - m); v += (1 - beta2) * (grad**2 - v);
    param -= lr_t * m / (sqrt(v) + 1e-7)``
    """
    typ = param.dtype.type
    _adam(
        param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
        typ(lr_t), typ(1 - beta1), typ(1 - beta2),
    )
