"""ReLU and sigmoid, elementwise on arrays of any shape."""
from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray):
    """``(out, mask)``: ``out = x`` with zeros where ``mask = x <= 0``."""
    mask = x <= 0
    out = x.copy()
    out[mask] = 0
    return out, mask


def relu_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``dout`` with zeros where ``mask`` (the forward's ``x <= 0``)."""
    dx = dout.copy()
    dx[mask] = 0
    return dx


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``; ``exp`` overflowing to inf for very negative x gives exactly 0."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout * (1 - out) * out``, ``out`` the forward's output."""
    return dout * (1.0 - out) * out
