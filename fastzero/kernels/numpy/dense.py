"""Fully connected layer (the book's ``Affine``) on 2-D input."""
from __future__ import annotations

import numpy as np


def affine_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x`` (N, D) @ ``W`` (D, M) + ``b`` (M,) -> (N, M)."""
    return np.dot(x, W) + b


def affine_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, need_dx: bool = True):
    """Gradients of :func:`affine_forward`: ``(dx (N, D), dW (D, M), db (M,))``; ``dx`` None
    when not ``need_dx``."""
    dx = np.dot(dout, W.T) if need_dx else None
    dW = np.dot(x.T, dout)
    db = np.sum(dout, axis=0)
    return dx, dW, db
