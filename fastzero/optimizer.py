"""The book's optimizers (``common/optimizer.py``), updating parameters in place.

``update(params, grads)`` takes two dicts with the same keys (``params`` the
network's parameter arrays, ``grads`` their gradients) and updates every
parameter array *in place* with the active backend's kernel, so the layers
holding those arrays see the new values. Parameters must therefore be
writeable, C-contiguous float32/float64 ndarrays; gradients must match their
shape and dtype. Everything is checked before anything is updated. State
arrays (``v``, ``h``, ``m``) are created per key on first use with the
parameter's dtype; ``eps`` is the book's 1e-7.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from fastzero import _backend
from fastzero import _validate as v

#: ``np`` too: the book's module has no ``__all__``, so a star import gives a script its ``np``.
__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "np"]


class _Optimizer:
    """Shared plumbing: the key/shape/dtype checks and the lazily created state."""

    def _pairs(self, params: Mapping[Any, np.ndarray],
               grads: Mapping[Any, Any]) -> list[tuple[Any, np.ndarray, np.ndarray]]:
        """``(key, param, grad)`` for every key, after checking all of them."""
        where = f"{type(self).__name__}.update"
        if set(params) != set(grads):
            missing = sorted(map(repr, set(params) - set(grads)))
            extra = sorted(map(repr, set(grads) - set(params)))
            raise ValueError(
                f"{where}: params and grads must have the same keys; "
                f"missing in grads: [{', '.join(missing)}], extra in grads: [{', '.join(extra)}]"
            )
        return [(key, p, v.param_for_update(p, grads[key], where, key)) for key, p in params.items()]

    def _state(self, store: dict, key: Any, param: np.ndarray) -> np.ndarray:
        """``store[key]``, created as zeros like ``param`` on first use."""
        arr = store.get(key)
        if arr is None:
            arr = store[key] = np.zeros_like(param)
        elif arr.shape != param.shape or arr.dtype != param.dtype:
            raise ValueError(
                f"{type(self).__name__}.update: params[{key!r}] is now {param.shape} {param.dtype} "
                f"but its optimizer state was created for {arr.shape} {arr.dtype}"
            )
        return arr

    def _lr(self) -> float:
        return v.real(self.lr, type(self).__name__, "lr", 0.0)


class SGD(_Optimizer):
    """Stochastic gradient descent: ``param -= lr * grad``."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self._lr()

    def update(self, params: Mapping[Any, np.ndarray], grads: Mapping[Any, Any]) -> None:
        lr = self._lr()
        k = _backend.kernels()
        for _, param, grad in self._pairs(params, grads):
            k.sgd_update(param.reshape(-1), grad.reshape(-1), lr)


class _MomentumBase(_Optimizer):
    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: dict = {}
        self._hyper()

    def _hyper(self) -> tuple[float, float]:
        return self._lr(), v.real(self.momentum, type(self).__name__, "momentum", 0.0, 1.0)

    def update(self, params: Mapping[Any, np.ndarray], grads: Mapping[Any, Any]) -> None:
        lr, momentum = self._hyper()
        work = [(p, g, self._state(self.v, key, p)) for key, p, g in self._pairs(params, grads)]
        kernel = getattr(_backend.kernels(), self._kernel)
        for param, grad, vel in work:
            kernel(param.reshape(-1), grad.reshape(-1), vel.reshape(-1), lr, momentum)


class Momentum(_MomentumBase):
    """Momentum SGD: ``v = momentum*v - lr*grad; param += v``."""

    _kernel = "momentum_update"


class Nesterov(_MomentumBase):
    """Nesterov's accelerated gradient (http://arxiv.org/abs/1212.0901) as the book's current code:
    ``param += momentum**2 * v - (1 + momentum) * lr * grad`` with the previous step's ``v``,
    then ``v = momentum*v - lr*grad``."""

    _kernel = "nesterov_update"


class AdaGrad(_Optimizer):
    """AdaGrad: ``h += grad**2; param -= lr*grad / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self.h: dict = {}
        self._lr()

    def update(self, params: Mapping[Any, np.ndarray], grads: Mapping[Any, Any]) -> None:
        lr = self._lr()
        work = [(p, g, self._state(self.h, key, p)) for key, p, g in self._pairs(params, grads)]
        k = _backend.kernels()
        for param, grad, h in work:
            k.adagrad_update(param.reshape(-1), grad.reshape(-1), h.reshape(-1), lr)


class RMSprop(_Optimizer):
    """RMSprop: ``h = decay_rate*h + (1 - decay_rate)*grad**2; param -= lr*grad / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        self.lr = lr
        self.decay_rate = decay_rate
        self.h: dict = {}
        self._hyper()

    def _hyper(self) -> tuple[float, float]:
        return self._lr(), v.real(self.decay_rate, "RMSprop", "decay_rate", 0.0, 1.0)

    def update(self, params: Mapping[Any, np.ndarray], grads: Mapping[Any, Any]) -> None:
        lr, decay_rate = self._hyper()
        work = [(p, g, self._state(self.h, key, p)) for key, p, g in self._pairs(params, grads)]
        k = _backend.kernels()
        for param, grad, h in work:
            k.rmsprop_update(param.reshape(-1), grad.reshape(-1), h.reshape(-1), lr, decay_rate)


class Adam(_Optimizer):
    """Adam (http://arxiv.org/abs/1412.6980v8) as in the book.

    Step ``iter`` uses ``lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)``
    and ``m += (1 - beta1)*(grad - m); v += (1 - beta2)*(grad**2 - v);
    param -= lr_t*m / (sqrt(v) + 1e-7)``.
    """

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m: dict = {}
        self.v: dict = {}
        self._hyper()

    def _hyper(self) -> tuple[float, float, float]:
        beta1 = v.real(self.beta1, "Adam", "beta1", 0.0, 1.0, high_open=True)
        beta2 = v.real(self.beta2, "Adam", "beta2", 0.0, 1.0, high_open=True)
        return self._lr(), beta1, beta2

    def update(self, params: Mapping[Any, np.ndarray], grads: Mapping[Any, Any]) -> None:
        lr, beta1, beta2 = self._hyper()
        work = [
            (p, g, self._state(self.m, key, p), self._state(self.v, key, p))
            for key, p, g in self._pairs(params, grads)
        ]
        self.iter += 1
        lr_t = lr * math.sqrt(1.0 - beta2 ** self.iter) / (1.0 - beta1 ** self.iter)
        k = _backend.kernels()
        for param, grad, m, vel in work:
            k.adam_update(param.reshape(-1), grad.reshape(-1), m.reshape(-1), vel.reshape(-1),
                          lr_t, beta1, beta2)
