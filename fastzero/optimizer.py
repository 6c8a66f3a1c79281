"""The book's optimizers (``common/optimizer.py``).

``update(params, grads)`` takes two dicts with the same keys (``params`` the
network's parameters, ``grads`` their gradients) and applies one step of the
book's rule to every entry with the active backend's kernel. As in the book:

* a writeable float32/float64 ndarray is updated *in place* (the layers
  holding it see the new values); C-contiguous native arrays are handed to
  the kernel directly, other float arrays (strided views, another byte
  order, float16) are stepped in a float32/float64 copy written back into
  them;
* anything else the book's arithmetic takes -- Python or NumPy scalars,
  lists, int or bool arrays -- has its dict entry replaced by the result
  (a NumPy float scalar for a scalar, a float64 array otherwise; an int array
  cannot hold the step, so its entry becomes a new array). These are
  stepped by the NumPy reference kernels whatever the backend.

A gradient must have its parameter's shape; it is computed in the
parameter's float dtype. Everything is checked before anything is updated;
a read-only array is refused. State arrays (``v``, ``h``, ``m``) are created
per key on first use like the parameter (in its float dtype); ``eps`` is the
book's 1e-7.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, MutableMapping

import numpy as np

from fastzero import _backend
from fastzero import _validate as v

#: ``np`` too: the book's module has no ``__all__``, so a star import gives a script its ``np``.
__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "np"]


class _Optimizer:
    """The update loop shared by every optimizer: checks, state, kernel, write-back.

    A subclass names its kernel (``_kernel``) and its state dicts
    (``_states``), validates its hyper-parameters in ``_hyper`` (they may be
    changed between updates) and, if the kernel needs more than those,
    derives its trailing arguments in ``_step_args`` (called once per update,
    after every check has passed).
    """

    _kernel: str
    _states: tuple[str, ...] = ()

    def _hyper(self) -> tuple[float, ...]:
        raise NotImplementedError

    def _step_args(self, hyper: tuple[float, ...]) -> tuple[float, ...]:
        return hyper

    def update(self, params: MutableMapping[Any, Any], grads: Mapping[Any, Any]) -> None:
        """One step on every entry of ``params`` with ``grads`` of the same keys."""
        hyper = self._hyper()
        stores = [getattr(self, name) for name in self._states]
        steps = [
            (key, param, work, (work.reshape(-1), grad.reshape(-1),
                                *[self._state(store, key, work).reshape(-1) for store in stores]))
            for key, param, work, grad in self._pairs(params, grads)
        ]
        args = self._step_args(hyper)
        for _, param, _, arrays in steps:
            # A scalar, list or int array takes the book's NumPy arithmetic: for a few
            # numbers a numba call, and loading numba for it, costs more than it saves.
            backend = None if isinstance(param, np.ndarray) and param.dtype.kind == "f" else "numpy"
            getattr(_backend.kernels(backend), self._kernel)(*arrays, *args)
        for key, param, work, _ in steps:
            if work is not param:
                v.store_update(params, key, param, work)

    def _pairs(self, params: Mapping[Any, Any],
               grads: Mapping[Any, Any]) -> list[tuple[Any, Any, np.ndarray, np.ndarray]]:
        """``(key, param, work, grad)`` for every key, after checking all of them."""
        where = f"{type(self).__name__}.update"
        if set(params) != set(grads):
            missing = sorted(map(repr, set(params) - set(grads)))
            extra = sorted(map(repr, set(grads) - set(params)))
            raise ValueError(
                f"{where}: params and grads must have the same keys; "
                f"missing in grads: [{', '.join(missing)}], extra in grads: [{', '.join(extra)}]"
            )
        return [(key, p, *v.param_for_update(p, grads[key], where, key)) for key, p in params.items()]

    def _state(self, store: dict, key: Any, work: np.ndarray) -> np.ndarray:
        """``store[key]``, created as zeros like ``work`` on first use."""
        arr = store.get(key)
        if arr is None:
            arr = store[key] = np.zeros_like(work)
        elif arr.shape != work.shape or arr.dtype != work.dtype:
            raise ValueError(
                f"{type(self).__name__}.update: params[{key!r}] is now {work.shape} {work.dtype} "
                f"but its optimizer state was created for {arr.shape} {arr.dtype}"
            )
        return arr

    def _lr(self) -> float:
        return v.real(self.lr, type(self).__name__, "lr", 0.0)


class SGD(_Optimizer):
    """Stochastic gradient descent: ``param -= lr * grad``."""

    _kernel = "sgd_update"

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self._hyper()

    def _hyper(self) -> tuple[float]:
        return (self._lr(),)


class _MomentumBase(_Optimizer):
    _states = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: dict = {}
        self._hyper()

    def _hyper(self) -> tuple[float, float]:
        return self._lr(), v.real(self.momentum, type(self).__name__, "momentum", 0.0, 1.0)


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

    _kernel = "adagrad_update"
    _states = ("h",)

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self.h: dict = {}
        self._hyper()

    def _hyper(self) -> tuple[float]:
        return (self._lr(),)


class RMSprop(_Optimizer):
    """RMSprop: ``h = decay_rate*h + (1 - decay_rate)*grad**2; param -= lr*grad / (sqrt(h) + 1e-7)``."""

    _kernel = "rmsprop_update"
    _states = ("h",)

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        self.lr = lr
        self.decay_rate = decay_rate
        self.h: dict = {}
        self._hyper()

    def _hyper(self) -> tuple[float, float]:
        return self._lr(), v.real(self.decay_rate, "RMSprop", "decay_rate", 0.0, 1.0)


class Adam(_Optimizer):
    """Adam (http://arxiv.org/abs/1412.6980v8) as in the book.

    Step ``iter`` uses ``lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)``
    and ``m += (1 - beta1)*(grad - m); v += (1 - beta2)*(grad**2 - v);
    param -= lr_t*m / (sqrt(v) + 1e-7)``.
    """

    _kernel = "adam_update"
    _states = ("m", "v")

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

    def _step_args(self, hyper: tuple[float, float, float]) -> tuple[float, float, float]:
        """This step's bias-corrected ``lr_t`` and the betas; counts the step."""
        lr, beta1, beta2 = hyper
        self.iter += 1
        lr_t = lr * math.sqrt(1.0 - beta2 ** self.iter) / (1.0 - beta1 ** self.iter)
        return lr_t, beta1, beta2


#: Optimizer names accepted by ``Trainer(optimizer=...)`` and ``fastzero train
#: --optimizer`` (case-insensitive), in the book's order.
OPTIMIZERS: dict[str, type[_Optimizer]] = {
    cls.__name__.lower(): cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)
}
