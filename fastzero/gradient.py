"""Numerical differentiation (the book's ``common/gradient.py``)."""
from __future__ import annotations

from typing import Callable

import numpy as np


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
