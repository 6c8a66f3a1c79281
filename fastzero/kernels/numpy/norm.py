"""Batch normalisation over the batch axis of ``x`` (N, D) (the book's ``BatchNormalization``)."""
from __future__ import annotations

import numpy as np


def batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                            running_mean: np.ndarray, running_var: np.ndarray,
                            momentum: float, eps: float):
    """Normalise with the batch's mean and (biased) variance; returns ``(out, cache)``.

    Updates ``running_mean`` and ``running_var`` (D,) in place:
    ``running = momentum * running + (1 - momentum) * batch_stat``.
    """
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc ** 2, axis=0)
    std = np.sqrt(var + eps)
    xn = xc / std
    running_mean[...] = momentum * running_mean + (1 - momentum) * mu
    running_var[...] = momentum * running_var + (1 - momentum) * var
    return gamma * xn + beta, (xc, xn, std)


def batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                            running_mean: np.ndarray, running_var: np.ndarray,
                            eps: float) -> np.ndarray:
    """Normalise with the running statistics."""
    xn = (x - running_mean) / np.sqrt(running_var + eps)
    return gamma * xn + beta


def batchnorm_backward(dout: np.ndarray, cache, gamma: np.ndarray):
    """Gradients of :func:`batchnorm_forward_train`: ``(dx (N, D), dgamma (D,), dbeta (D,))``."""
    xc, xn, std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / n) * xc * dvar
    dmu = np.sum(dxc, axis=0)
    dx = dxc - dmu / n
    return dx, dgamma, dbeta
