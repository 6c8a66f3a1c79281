"""Gradient checking: backprop against central differences, as a relative error.

Independent of :mod:`fastzero.gradient` (which is itself under test): its own
central-difference loop with a smaller step, meant for float64.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``|a - n| / (|a| + |n|)`` in the 2-norm (0 when both are 0)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    assert analytic.shape == numeric.shape, (analytic.shape, numeric.shape)
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if scale == 0 else float(np.linalg.norm(analytic - numeric) / scale)


def numeric_grad(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of ``f()`` with respect to ``x``, perturbed in place."""
    assert x.dtype == np.float64 and x.flags.writeable
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def layer_gradcheck(layer: Any, x: np.ndarray, params: Iterable[str] = (),
                    forward: Callable[[np.ndarray], Any] | None = None,
                    seed: int = 0) -> dict[str, float]:
    """Relative errors of ``layer``'s backward for its input and the named parameters.

    The scalar checked is ``sum(forward(x) * dout)`` with a fixed random
    ``dout``, so ``backward(dout)`` is its gradient with respect to ``x``, and
    ``layer.d<name>`` with respect to ``layer.<name>`` (perturbed in place:
    this also checks that the layer reads its parameter arrays at every call).
    ``forward`` defaults to ``layer.forward``; pass a closure to fix extra
    arguments (labels, ``train_flg``, a random seed).
    """
    forward = layer.forward if forward is None else forward
    out = forward(x)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    scalar_out = np.ndim(out) == 0

    def loss() -> float:
        return float(np.sum(np.asarray(forward(x)) * dout))

    grads = {"x": layer.backward(float(dout) if scalar_out else dout.copy())}
    grads.update({name: np.copy(getattr(layer, "d" + name)) for name in params})
    errors = {"x": relative_error(grads["x"], numeric_grad(loss, x))}
    for name in params:
        errors[name] = relative_error(grads[name], numeric_grad(loss, getattr(layer, name)))
    return errors
