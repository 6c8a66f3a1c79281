"""Batch normalisation kernels (the book's ``BatchNormalization``), x (N, D).

Statistics are per column over the N rows. The training kernels work on
spans of whole columns (:mod:`._parallel`), walking the rows in order, so the
column reductions neither race nor depend on the thread count, and memory is
read row by row.

The training forward returns ``cache = (xc, std)``: the centred input
``x - mean`` (N, D) and ``sqrt(var + eps)`` (D,); the backward recomputes
``xn = xc / std`` instead of storing it.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans


@jit
def _forward_train_columns(lo, hi, x, gamma, beta, running_mean, running_var, momentum, keep,
                           eps, out, xc, std):
    """The training forward of columns ``lo:hi``: statistics, running update, output."""
    n = x.shape[0]
    inv_n = x.dtype.type(1) / x.dtype.type(n)
    mean = np.zeros(hi - lo, dtype=x.dtype)
    var = np.zeros(hi - lo, dtype=x.dtype)
    for i in range(n):
        row = x[i, lo:hi]
        for j in range(row.size):
            mean[j] += row[j]
    mean *= inv_n
    for i in range(n):
        row, centred = x[i, lo:hi], xc[i, lo:hi]
        for j in range(row.size):
            c = row[j] - mean[j]
            centred[j] = c
            var[j] += c * c
    var *= inv_n
    g, b, sd = gamma[lo:hi], beta[lo:hi], std[lo:hi]
    r_mean, r_var = running_mean[lo:hi], running_var[lo:hi]
    for j in range(sd.size):
        sd[j] = np.sqrt(var[j] + eps)
        r_mean[j] = momentum * r_mean[j] + keep * mean[j]
        r_var[j] = momentum * r_var[j] + keep * var[j]
    for i in range(n):
        centred, row_out = xc[i, lo:hi], out[i, lo:hi]
        for j in range(sd.size):
            row_out[j] = g[j] * (centred[j] / sd[j]) + b[j]


@jit
def _forward_infer_rows(lo, hi, x, gamma, beta, running_mean, running_var, eps, out):
    x, out = x[lo:hi], out[lo:hi]
    for i in range(x.shape[0]):
        row, row_out = x[i], out[i]
        for j in range(row.size):
            xn = (row[j] - running_mean[j]) / np.sqrt(running_var[j] + eps)
            row_out[j] = gamma[j] * xn + beta[j]


@jit
def _backward_columns(lo, hi, dout, xc, std, gamma, dx, dgamma, dbeta):
    """The book's backward for columns ``lo:hi``, its per-column factors hoisted:

    dbeta = sum(dout); dgamma = sum(xn * dout) = sum(dout * xc) / std;
    dxc = dxn / std + (2/N) * xc * dvar with dxn = gamma * dout and
    dvar = 0.5 * dstd / std, dstd = -sum(dxn * xc) / std**2, i.e.
    dxc = (gamma / std) * dout - (gamma * sum(dout * xc) / (N * std**3)) * xc;
    dx = dxc - sum(dxc) / N.
    """
    n = dout.shape[0]
    inv_n = dout.dtype.type(1) / dout.dtype.type(n)
    db, dg, sd, g = dbeta[lo:hi], dgamma[lo:hi], std[lo:hi], gamma[lo:hi]
    db[:] = 0
    dg[:] = 0  # sum(dout * xc) until divided by std below
    for i in range(n):
        d_row, c_row = dout[i, lo:hi], xc[i, lo:hi]
        for j in range(sd.size):
            db[j] += d_row[j]
            dg[j] += d_row[j] * c_row[j]
    scale = np.empty(sd.size, dtype=dout.dtype)
    shift = np.empty(sd.size, dtype=dout.dtype)
    for j in range(sd.size):
        s = sd[j]
        scale[j] = g[j] / s
        shift[j] = -inv_n * g[j] * dg[j] / (s * s * s)
        dg[j] /= s
    dmean = np.zeros(sd.size, dtype=dout.dtype)
    for i in range(n):
        d_row, c_row, dx_row = dout[i, lo:hi], xc[i, lo:hi], dx[i, lo:hi]
        for j in range(sd.size):
            v = scale[j] * d_row[j] + shift[j] * c_row[j]
            dx_row[j] = v
            dmean[j] += v
    for i in range(n):
        dx_row = dx[i, lo:hi]
        for j in range(sd.size):
            dx_row[j] -= dmean[j] * inv_n


# Costs: operations per column (N rows) or per row (D columns).
_batchnorm_forward_train = spans(_forward_train_columns, "x.shape[1]", "4 * x.shape[0]")
_batchnorm_forward_infer = spans(_forward_infer_rows, "x.shape[0]", "4 * x.shape[1]")
_batchnorm_backward = spans(_backward_columns, "dout.shape[1]", "6 * dout.shape[0]")


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
