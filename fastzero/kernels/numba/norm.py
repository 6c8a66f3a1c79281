"""Batch normalisation kernels (the book's ``BatchNormalization``), x (N, D).

Statistics are per column over the N rows. Each parallel task owns a block of
:data:`~fastzero.kernels.numba.dense.COLUMN_BLOCK` columns and walks the rows
in order, so the column reductions neither race nor depend on the thread
count, and memory is read row by row.

The training forward returns ``cache = (xc, std)``: the centred input
``x - mean`` (N, D) and ``sqrt(var + eps)`` (D,); the backward recomputes
``xn = xc / std`` instead of storing it.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import pjit
from fastzero.kernels.numba.dense import COLUMN_BLOCK


@pjit
def _batchnorm_forward_train(
    x, gamma, beta, running_mean, running_var, momentum, keep, eps, out, xc, std
):
    n, d = x.shape
    inv_n = x.dtype.type(1) / x.dtype.type(n)
    for block in prange((d + COLUMN_BLOCK - 1) // COLUMN_BLOCK):
        lo = block * COLUMN_BLOCK
        hi = min(lo + COLUMN_BLOCK, d)
        mean = np.zeros(hi - lo, dtype=x.dtype)
        var = np.zeros(hi - lo, dtype=x.dtype)
        for i in range(n):
            for j in range(lo, hi):
                mean[j - lo] += x[i, j]
        mean *= inv_n
        for i in range(n):
            for j in range(lo, hi):
                c = x[i, j] - mean[j - lo]
                xc[i, j] = c
                var[j - lo] += c * c
        var *= inv_n
        for j in range(lo, hi):
            std[j] = np.sqrt(var[j - lo] + eps)
            running_mean[j] = momentum * running_mean[j] + keep * mean[j - lo]
            running_var[j] = momentum * running_var[j] + keep * var[j - lo]
        for i in range(n):
            for j in range(lo, hi):
                out[i, j] = gamma[j] * (xc[i, j] / std[j]) + beta[j]


@pjit
def _batchnorm_forward_infer(x, gamma, beta, running_mean, running_var, eps, out):
    n, d = x.shape
    for i in prange(n):
        for j in range(d):
            xn = (x[i, j] - running_mean[j]) / np.sqrt(running_var[j] + eps)
            out[i, j] = gamma[j] * xn + beta[j]


@pjit
def _batchnorm_backward(dout, xc, std, gamma, dx, dgamma, dbeta):
    n, d = dout.shape
    typ = dout.dtype.type
    half, two_over_n, inv_n = typ(0.5), typ(2) / typ(n), typ(1) / typ(n)
    for block in prange((d + COLUMN_BLOCK - 1) // COLUMN_BLOCK):
        lo = block * COLUMN_BLOCK
        hi = min(lo + COLUMN_BLOCK, d)
        # dstd = -sum(dxn * xc / std**2) with dxn = gamma * dout
        dout_xc = np.zeros(hi - lo, dtype=dout.dtype)
        for j in range(lo, hi):
            dbeta[j] = 0
        for i in range(n):
            for j in range(lo, hi):
                dbeta[j] += dout[i, j]
                dout_xc[j - lo] += dout[i, j] * xc[i, j]
        # dvar = 0.5 * dstd / std; dxc = dxn / std + (2/N) * xc * dvar
        dvar = np.empty(hi - lo, dtype=dout.dtype)
        dmean = np.zeros(hi - lo, dtype=dout.dtype)
        for j in range(lo, hi):
            dgamma[j] = dout_xc[j - lo] / std[j]
            dvar[j - lo] = -half * gamma[j] * dout_xc[j - lo] / (std[j] * std[j] * std[j])
        for i in range(n):
            for j in range(lo, hi):
                g = gamma[j] * dout[i, j] / std[j] + two_over_n * xc[i, j] * dvar[j - lo]
                dx[i, j] = g
                dmean[j - lo] += g
        # dx = dxc - sum(dxc) / N
        for i in range(n):
            for j in range(lo, hi):
                dx[i, j] -= dmean[j - lo] * inv_n


def batchnorm_forward_train(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    momentum: float,
    eps: float,
):
    """Normalise ``x`` (N, D) with its batch statistics; update the running ones.

    ``running_mean`` and ``running_var`` (D,) are updated in place:
    ``running = momentum * running + (1 - momentum) * batch_stat`` (biased var).

    Returns
    -------
    out : (N, D) array, ``gamma * (x - mean) / sqrt(var + eps) + beta``
    cache : opaque, for :func:`batchnorm_backward`
    """
    typ = x.dtype.type
    out = np.empty_like(x)
    xc = np.empty_like(x)
    std = np.empty(x.shape[1], dtype=x.dtype)
    _batchnorm_forward_train(
        x, gamma, beta, running_mean, running_var,
        typ(momentum), typ(1 - momentum), typ(eps), out, xc, std,
    )
    return out, (xc, std)


def batchnorm_forward_infer(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
) -> np.ndarray:
    """Normalise ``x`` (N, D) with the running statistics (D,)."""
    out = np.empty_like(x)
    _batchnorm_forward_infer(x, gamma, beta, running_mean, running_var, x.dtype.type(eps), out)
    return out


def batchnorm_backward(dout: np.ndarray, cache, gamma: np.ndarray):
    """Gradients of the training forward (the book's formulas).

    Parameters
    ----------
    dout : (N, D) array
    cache : from :func:`batchnorm_forward_train`
    gamma : (D,) array

    Returns
    -------
    dx : (N, D) array
    dgamma, dbeta : (D,) arrays
    """
    xc, std = cache
    dx = np.empty_like(dout)
    dgamma = np.empty_like(std)
    dbeta = np.empty_like(std)
    _batchnorm_backward(dout, xc, std, gamma, dx, dgamma, dbeta)
    return dx, dgamma, dbeta
