"""The book's optimizer updates, applied in place to ``param`` and the state arrays.

``param``, ``grad`` and the state arrays share shape and dtype; every update
returns None; ``eps = 1e-7`` as in the book.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-7


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """``param -= lr * grad``."""
    param -= lr * grad


def momentum_update(param: np.ndarray, grad: np.ndarray, v: np.ndarray, lr: float,
                    momentum: float) -> None:
    """``v = momentum*v - lr*grad; param += v``."""
    v[...] = momentum * v - lr * grad
    param += v


def nesterov_update(param: np.ndarray, grad: np.ndarray, v: np.ndarray, lr: float,
                    momentum: float) -> None:
    """Nesterov's accelerated gradient in the book's form: the parameter step
    uses the velocity before this step's update.

    ``param += momentum*momentum*v; param -= (1 + momentum)*lr*grad;
    v *= momentum; v -= lr*grad``
    """
    param += momentum * momentum * v
    param -= (1 + momentum) * lr * grad
    v *= momentum
    v -= lr * grad


def adagrad_update(param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float) -> None:
    """``h += grad**2; param -= lr*grad / (sqrt(h) + eps)``."""
    h += grad * grad
    param -= lr * grad / (np.sqrt(h) + EPS)


def rmsprop_update(param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float,
                   decay_rate: float) -> None:
    """``h = decay_rate*h + (1 - decay_rate)*grad**2; param -= lr*grad / (sqrt(h) + eps)``."""
    h *= decay_rate
    h += (1 - decay_rate) * grad * grad
    param -= lr * grad / (np.sqrt(h) + EPS)


def adam_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                lr_t: float, beta1: float, beta2: float) -> None:
    """Adam with the bias correction folded into ``lr_t`` by the caller.

    ``m += (1 - beta1)*(grad - m); v += (1 - beta2)*(grad**2 - v);
    param -= lr_t*m / (sqrt(v) + eps)``
    """
    m += (1 - beta1) * (grad - m)
    v += (1 - beta2) * (grad ** 2 - v)
    param -= lr_t * m / (np.sqrt(v) + EPS)
