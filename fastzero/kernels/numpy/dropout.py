"""Dropout with a caller-drawn uniform array (the book's ``Dropout``)."""
from __future__ import annotations

import numpy as np


def dropout_forward(x: np.ndarray, rand: np.ndarray, ratio: float):
    """``(out, mask)``: ``mask = rand > ratio``, ``out = x * mask``.

    ``rand`` is uniform in ``[0, 1)``, of ``x``'s shape, drawn by the caller.
    """
    mask = rand > ratio
    return x * mask, mask


def dropout_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``dout * mask``."""
    return dout * mask
