"""Element-wise activation kernels: ReLU and sigmoid.

The wrappers flatten their (C-contiguous) arguments to 1-D views, so each
kernel compiles once per dtype whatever the number of dimensions, and one
``prange`` splits the flat array among the threads.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans


@jit
def _relu_forward_body(lo, hi, x, out, mask):
    x, out, mask = x[lo:hi], out[lo:hi], mask[lo:hi]
    zero = x.dtype.type(0)
    for i in range(x.size):
        off = x[i] <= zero
        mask[i] = off
        out[i] = zero if off else x[i]


@jit
def _relu_backward_body(lo, hi, dout, mask, dx):
    dout, mask, dx = dout[lo:hi], mask[lo:hi], dx[lo:hi]
    zero = dout.dtype.type(0)
    for i in range(dout.size):
        dx[i] = zero if mask[i] else dout[i]


@jit
def _sigmoid_forward_body(lo, hi, x, out):
    x, out = x[lo:hi], out[lo:hi]
    one = x.dtype.type(1)
    for i in range(x.size):
        if x[i] >= 0:
            out[i] = one / (one + np.exp(-x[i]))
        else:  # exp(x) / (1 + exp(x)): exp never overflows for x < 0
            e = np.exp(x[i])
            out[i] = e / (one + e)


@jit
def _sigmoid_backward_body(lo, hi, dout, out, dx):
    dout, out, dx = dout[lo:hi], out[lo:hi], dx[lo:hi]
    one = out.dtype.type(1)
    for i in range(out.size):
        dx[i] = dout[i] * (one - out[i]) * out[i]


#: Operations per sigmoid element: an exp and a division.
SIGMOID_COST = 8

_relu_forward = spans(_relu_forward_body, "x.size")
_relu_backward = spans(_relu_backward_body, "dout.size")
_sigmoid_forward = spans(_sigmoid_forward_body, "x.size", "SIGMOID_COST")
_sigmoid_backward = spans(_sigmoid_backward_body, "out.size")


def relu_forward(x: np.ndarray):
    """ReLU of ``x`` (any shape).

    Returns
    -------
    out : array like ``x``, ``max(x, 0)``
    mask : bool array of ``x``'s shape, True where ``x <= 0``
    """
    out = np.empty_like(x)
    mask = np.empty(x.shape, dtype=np.bool_)
    _relu_forward(x.reshape(-1), out.reshape(-1), mask.reshape(-1))
    return out, mask


def relu_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``dout`` with zeros where ``mask`` (from :func:`relu_forward`) is True."""
    dx = np.empty_like(dout)
    _relu_backward(dout.reshape(-1), mask.reshape(-1), dx.reshape(-1))
    return dx


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` (any shape), without overflow for large ``|x|``."""
    out = np.empty_like(x)
    _sigmoid_forward(x.reshape(-1), out.reshape(-1))
    return out


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout * (1 - out) * out``, with ``out`` the forward output."""
    dx = np.empty_like(dout)
    _sigmoid_backward(dout.reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx
