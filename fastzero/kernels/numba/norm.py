"""Batch normalisation kernels (the book's ``BatchNormalization``), x (N, D) or (N, C, L).

For (N, D) the statistics are per column over the N rows. The training
kernels work on spans of whole columns (:mod:`._parallel`), walking the rows
in order, so the column reductions neither race nor depend on the thread
count, and memory is read row by row.

For (N, C, L) (images as (N, C, H*W)) the statistics are per channel over N
and L. The training kernels work on spans of whole channels, walking the
channel's N contiguous runs of L values in order, so again nothing races and
the thread count changes nothing.

The training forward returns ``cache = (xc, std)``: the centred input
``x - mean`` (like x) and ``sqrt(var + eps)`` (D,) or (C,); the backward
recomputes ``xn = xc / std`` instead of storing it.
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


@jit
def _forward_train_channels(lo, hi, x, gamma, beta, running_mean, running_var, momentum, keep,
                            eps, out, xc, std):
    """The training forward of channels ``lo:hi`` of (N, C, L): statistics, running update, output.

    Each sum over a channel's N*L values adds up one partial sum per run of
    L values, so float32 rounding grows with N + L, not N * L.
    """
    typ = x.dtype.type
    inv_count = typ(1) / typ(x.shape[0] * x.shape[2])
    for c in range(lo, hi):
        total = typ(0)
        for i in range(x.shape[0]):
            plane = x[i, c]
            partial = typ(0)
            for j in range(plane.size):
                partial += plane[j]
            total += partial
        mean = total * inv_count
        squares = typ(0)
        for i in range(x.shape[0]):
            plane, centred = x[i, c], xc[i, c]
            partial = typ(0)
            for j in range(plane.size):
                d = plane[j] - mean
                centred[j] = d
                partial += d * d
            squares += partial
        var = squares * inv_count
        sd = np.sqrt(var + eps)
        std[c] = sd
        running_mean[c] = momentum * running_mean[c] + keep * mean
        running_var[c] = momentum * running_var[c] + keep * var
        g, b = gamma[c], beta[c]
        for i in range(x.shape[0]):
            centred, plane_out = xc[i, c], out[i, c]
            for j in range(centred.size):
                plane_out[j] = g * (centred[j] / sd) + b


@jit
def _forward_infer_planes(lo, hi, x, gamma, beta, running_mean, running_var, eps, out):
    x, out = x[lo:hi], out[lo:hi]
    for c in range(x.shape[1]):
        m, sd = running_mean[c], np.sqrt(running_var[c] + eps)
        g, b = gamma[c], beta[c]
        for i in range(x.shape[0]):
            plane, plane_out = x[i, c], out[i, c]
            for j in range(plane.size):
                plane_out[j] = g * ((plane[j] - m) / sd) + b


@jit
def _backward_channels(lo, hi, dout, xc, std, gamma, dx, dgamma, dbeta):
    """The backward of :func:`_backward_columns` for channels ``lo:hi`` of (N, C, L), over
    M = N*L values each, summing by runs of L as :func:`_forward_train_channels` does."""
    typ = dout.dtype.type
    inv_count = typ(1) / typ(dout.shape[0] * dout.shape[2])
    for c in range(lo, hi):
        sum_d, sum_dxc = typ(0), typ(0)
        for i in range(dout.shape[0]):
            d_plane, c_plane = dout[i, c], xc[i, c]
            part_d, part_dxc = typ(0), typ(0)
            for j in range(d_plane.size):
                part_d += d_plane[j]
                part_dxc += d_plane[j] * c_plane[j]
            sum_d += part_d
            sum_dxc += part_dxc
        s, g = std[c], gamma[c]
        scale = g / s
        shift = -inv_count * g * sum_dxc / (s * s * s)
        dbeta[c] = sum_d
        dgamma[c] = sum_dxc / s
        dmean = typ(0)
        for i in range(dout.shape[0]):
            d_plane, c_plane, dx_plane = dout[i, c], xc[i, c], dx[i, c]
            partial = typ(0)
            for j in range(d_plane.size):
                v = scale * d_plane[j] + shift * c_plane[j]
                dx_plane[j] = v
                partial += v
            dmean += partial
        dmean *= inv_count
        for i in range(dout.shape[0]):
            dx_plane = dx[i, c]
            for j in range(dx_plane.size):
                dx_plane[j] -= dmean


# Costs: operations per channel (N*L values) or per sample (C*L values).
_batchnorm_forward_train_channels = spans(_forward_train_channels, "x.shape[1]",
                                          "4 * x.shape[0] * x.shape[2]")
_batchnorm_forward_infer_channels = spans(_forward_infer_planes, "x.shape[0]",
                                          "4 * x.shape[1] * x.shape[2]")
_batchnorm_backward_channels = spans(_backward_channels, "dout.shape[1]",
                                     "6 * dout.shape[0] * dout.shape[2]")


def batchnorm_forward_train(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    momentum: float,
    eps: float,
):
    """Normalise ``x`` (N, D) or (N, C, L) with its batch statistics; update the running ones.

    Statistics are per column of (N, D), per channel of (N, C, L).
    ``running_mean`` and ``running_var`` (D,) or (C,) are updated in place:
    ``running = momentum * running + (1 - momentum) * batch_stat`` (biased var).

    Returns
    -------
    out : array like x, ``gamma * (x - mean) / sqrt(var + eps) + beta``
    cache : opaque, for :func:`batchnorm_backward`
    """
    typ = x.dtype.type
    out = np.empty_like(x)
    xc = np.empty_like(x)
    std = np.empty(x.shape[1], dtype=x.dtype)
    train = _batchnorm_forward_train if x.ndim == 2 else _batchnorm_forward_train_channels
    train(
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
    """Normalise ``x`` (N, D) or (N, C, L) with the running statistics (D,) or (C,)."""
    out = np.empty_like(x)
    infer = _batchnorm_forward_infer if x.ndim == 2 else _batchnorm_forward_infer_channels
    infer(x, gamma, beta, running_mean, running_var, x.dtype.type(eps), out)
    return out


def batchnorm_backward(dout: np.ndarray, cache, gamma: np.ndarray):
    """Gradients of the training forward (the book's formulas).

    Parameters
    ----------
    dout : (N, D) or (N, C, L) array
    cache : from :func:`batchnorm_forward_train`
    gamma : (D,) or (C,) array

    Returns
    -------
    dx : array like dout
    dgamma, dbeta : arrays like gamma
    """
    xc, std = cache
    dx = np.empty_like(dout)
    dgamma = np.empty_like(std)
    dbeta = np.empty_like(std)
    backward = _batchnorm_backward if dout.ndim == 2 else _batchnorm_backward_channels
    backward(dout, xc, std, gamma, dx, dgamma, dbeta)
    return dx, dgamma, dbeta
