"""Batch normalisation (the book's ``BatchNormalization``) of ``x`` (N, D) or (N, C, L).

Statistics are per feature: per column of (N, D) over the N rows (the book's
layer), per channel of (N, C, L) over N and L (a channel's H*W positions of
an image batch, as torch's ``BatchNorm2d``). ``gamma``, ``beta`` and the
running statistics are (D,) or (C,).
"""
from __future__ import annotations

import numpy as np


def _axes(x: np.ndarray) -> tuple[int, ...]:
    """The axes the statistics run over: (0,) for (N, D), (0, 2) for (N, C, L)."""
    return (0,) if x.ndim == 2 else (0, 2)


def _per_feature(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A (D,) or (C,) array shaped to broadcast against ``x``."""
    return a if x.ndim == 2 else a[:, None]


def batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                            running_mean: np.ndarray, running_var: np.ndarray,
                            momentum: float, eps: float):
    """Normalise with the batch's mean and (biased) variance; returns ``(out, cache)``.

    Updates ``running_mean`` and ``running_var`` (D,) or (C,) in place:
    ``running = momentum * running + (1 - momentum) * batch_stat``.
    """
    axes = _axes(x)
    mu = x.mean(axis=axes)
    xc = x - _per_feature(mu, x)
    var = np.mean(xc ** 2, axis=axes)
    std = np.sqrt(var + eps)
    xn = xc / _per_feature(std, x)
    running_mean[...] = momentum * running_mean + (1 - momentum) * mu
    running_var[...] = momentum * running_var + (1 - momentum) * var
    return _per_feature(gamma, x) * xn + _per_feature(beta, x), (xc, xn, std)


def batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                            running_mean: np.ndarray, running_var: np.ndarray,
                            eps: float) -> np.ndarray:
    """Normalise with the running statistics."""
    xn = (x - _per_feature(running_mean, x)) / _per_feature(np.sqrt(running_var + eps), x)
    return _per_feature(gamma, x) * xn + _per_feature(beta, x)


def batchnorm_backward(dout: np.ndarray, cache, gamma: np.ndarray):
    """Gradients of :func:`batchnorm_forward_train`: ``(dx, dgamma, dbeta)``.

    ``dx`` is like ``dout``; ``dgamma`` and ``dbeta`` are like ``gamma``.
    """
    xc, xn, std = cache
    axes = _axes(dout)
    m = dout.size // std.size  # values per feature: N, or N * L
    s = _per_feature(std, dout)
    dbeta = dout.sum(axis=axes)
    dgamma = np.sum(xn * dout, axis=axes)
    dxn = _per_feature(gamma, dout) * dout
    dxc = dxn / s
    dstd = -np.sum((dxn * xc) / (s * s), axis=axes)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / m) * xc * _per_feature(dvar, dout)
    dmu = np.sum(dxc, axis=axes)
    dx = dxc - _per_feature(dmu, dout) / m
    return dx, dgamma, dbeta
