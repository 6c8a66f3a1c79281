"""Numerical differentiation (the book's ``common/gradient.py``)."""
from __future__ import annotations

from typing import Callable

import numpy as np

#: ``np`` too: the book's module has no ``__all__``, so a star import gives a script its ``np``.
__all__ = ["numerical_gradient", "numerical_gradient_2d", "np"]


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x`` by central differences (h = 1e-4).

    Each element of ``x`` is perturbed in place by ``+h`` and ``-h`` in turn
    and ``f(x)`` evaluated; ``x`` is restored exactly afterwards (also when
    ``f`` raises). ``x`` may have any shape and must be a writeable float
    array: an integer array cannot hold the perturbation.

    Returns
    -------
    grad : ndarray like ``x``
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"numerical_gradient: x must be a float ndarray, got {got}")
    if not x.flags.writeable:
        raise ValueError("numerical_gradient: x must be writeable (it is perturbed in place)")
    h = 1e-4
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    while not it.finished:
        idx = it.multi_index
        tmp_val = x[idx]
        try:
            x[idx] = float(tmp_val) + h
            fxh1 = f(x)
            x[idx] = tmp_val - h
            fxh2 = f(x)
        finally:
            x[idx] = tmp_val
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        it.iternext()
    return grad


def numerical_gradient_2d(f: Callable[[np.ndarray], float], X: np.ndarray) -> np.ndarray:
    """The book's row-wise numerical gradient (chapter 4's ``numerical_gradient_2d``).

    ``X`` (D,): the gradient of ``f`` at ``X``, as :func:`numerical_gradient`.
    ``X`` (N, D): row ``n`` of the result is the gradient of ``f`` at the row
    ``X[n]``, so ``f`` is called with one row (D,) at a time, perturbed in
    place inside ``X``.

    Returns
    -------
    grad : ndarray like ``X``
    """
    if not isinstance(X, np.ndarray) or X.ndim not in (1, 2):
        got = f"shape {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise ValueError(f"numerical_gradient_2d: X must be an ndarray (D,) or (N, D), got {got}")
    if X.ndim == 1:
        return numerical_gradient(f, X)
    grad = np.zeros_like(X)
    for idx, row in enumerate(X):
        grad[idx] = numerical_gradient(f, row)
    return grad
