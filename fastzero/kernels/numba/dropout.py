"""Dropout kernels (the book's ``Dropout``); the caller draws the random numbers.

Arrays are flattened to 1-D views, as in :mod:`.activation`.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans


@jit
def _dropout_forward_body(lo, hi, x, rand, ratio, out, mask):
    x, rand, out, mask = x[lo:hi], rand[lo:hi], out[lo:hi], mask[lo:hi]
    for i in range(x.size):
        keep = rand[i] > ratio
        mask[i] = keep
        out[i] = x[i] * x.dtype.type(keep)


@jit
def _masked_product_body(lo, hi, a, mask, out):
    a, mask, out = a[lo:hi], mask[lo:hi], out[lo:hi]
    for i in range(a.size):
        out[i] = a[i] * a.dtype.type(mask[i])


_dropout_forward = spans(_dropout_forward_body, "x.size")
_masked_product = spans(_masked_product_body, "a.size")


def dropout_forward(x: np.ndarray, rand: np.ndarray, ratio: float):
    """Drop the entries of ``x`` whose ``rand`` is ``<= ratio``.

    Parameters
    ----------
    x : array
    rand : array of ``x``'s shape, uniform in ``[0, 1)``
    ratio : float, the dropout ratio

    Returns
    -------
    out : array like ``x``, ``x * mask``
    mask : bool array, ``rand > ratio``
    """
    out = np.empty_like(x)
    mask = np.empty(x.shape, dtype=np.bool_)
    _dropout_forward(
        x.reshape(-1), rand.reshape(-1), rand.dtype.type(ratio), out.reshape(-1), mask.reshape(-1)
    )
    return out, mask


def dropout_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``dout * mask``."""
    dx = np.empty_like(dout)
    _masked_product(dout.reshape(-1), mask.reshape(-1), dx.reshape(-1))
    return dx
