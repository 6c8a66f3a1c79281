"""Layers made of layers, and the protocol that lets a network hold both.

Every layer of a network answers four questions (the layer protocol):

* ``named_params()``: its learnable parameters by name, the very arrays it
  computes with (an optimizer updates them in place);
* ``named_grads()``: their gradients after ``backward``, under the same names;
* ``named_state()``: non-learned state by name (batch-norm running
  statistics), arrays that training forwards update in place and that
  parameter files and checkpoints keep;
* ``takes_train_flg``: whether ``forward`` takes ``train_flg``.

The layers of :mod:`fastzero.layers` answer from their attributes. A
:class:`Block` answers by asking its children and prefixing their names
(``conv1.W``), so blocks nest, and a network is a sequence of layers and
blocks. The functions below ask any layer, including the book's own layer
objects, which know nothing of the protocol: for those they read the book's
attribute names (``W``, ``b``, ``gamma``, ``beta``; ``running_mean``,
``running_var``; a ``train_flg`` argument of ``forward``).
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = [
    "Block",
    "params_of",
    "grads_of",
    "state_of",
    "takes_train_flg",
    "forward",
    "named_layers",
    "network_buffers",
]

#: The book's parameter attributes (gradient ``d<name>``) and state attributes.
_BOOK_PARAMS = ("W", "b", "gamma", "beta")
_BOOK_STATE = ("running_mean", "running_var")


def params_of(layer: Any) -> dict[str, np.ndarray]:
    """``layer``'s learnable parameters by name."""
    if hasattr(layer, "named_params"):
        return layer.named_params()
    return {name: getattr(layer, name) for name in _BOOK_PARAMS
            if getattr(layer, name, None) is not None}


def grads_of(layer: Any) -> dict[str, np.ndarray | None]:
    """``layer``'s gradients of its last ``backward``, keyed like :func:`params_of`."""
    if hasattr(layer, "named_grads"):
        return layer.named_grads()
    return {name: getattr(layer, "d" + name, None) for name in params_of(layer)}


def state_of(layer: Any) -> dict[str, np.ndarray]:
    """``layer``'s non-learned state by name, the arrays themselves.

    A book-style batch norm that has not run yet (``running_mean`` None) gets
    the zeros its first forward would create, so its state exists from the start.
    TypeError for state that is neither an array nor None.
    """
    if hasattr(layer, "named_state"):
        return layer.named_state()
    state = {}
    for name in _BOOK_STATE:
        if not hasattr(layer, name):
            continue
        value = getattr(layer, name)
        if value is None and getattr(layer, "gamma", None) is not None:
            value = np.zeros(np.size(layer.gamma))
            setattr(layer, name, value)
        if value is None:
            continue
        if not isinstance(value, np.ndarray):
            raise TypeError(
                f"{type(layer).__name__}.{name} is a {type(value).__name__}, not an ndarray: "
                "its state cannot be saved or restored"
            )
        state[name] = value
    return state


_TRAIN_FLG_BY_TYPE: dict[type, bool] = {}


def takes_train_flg(layer: Any) -> bool:
    """Whether ``layer.forward`` takes ``train_flg``."""
    flag = getattr(layer, "takes_train_flg", None)
    if flag is not None:
        return bool(flag)
    kind = type(layer)
    if kind not in _TRAIN_FLG_BY_TYPE:
        _TRAIN_FLG_BY_TYPE[kind] = "train_flg" in inspect.signature(layer.forward).parameters
    return _TRAIN_FLG_BY_TYPE[kind]


def forward(layer: Any, x: Any, train_flg: bool) -> Any:
    """``layer.forward(x, train_flg)``, or ``layer.forward(x)`` for a layer without modes."""
    return layer.forward(x, train_flg) if takes_train_flg(layer) else layer.forward(x)


def named_layers(layers: Mapping[Any, Any] | Iterable[Any]) -> list[tuple[str, Any]]:
    """``(name, layer)`` pairs of a network's ``layers``: the keys of a mapping,
    the positions (``'0'``, ``'1'``, ...) of a list."""
    if isinstance(layers, Mapping):
        return [(str(key), layer) for key, layer in layers.items()]
    if isinstance(layers, (list, tuple)):
        return [(str(i), layer) for i, layer in enumerate(layers)]
    raise TypeError(f"layers must be a mapping or a list, got {type(layers).__name__}")


def network_buffers(network: Any) -> dict[str, np.ndarray]:
    """The non-learned state of ``network`` by name, the arrays themselves.

    A fastzero network's ``buffers``; for any other network (the book's), the
    state of every layer in ``network.layers``, named ``<layer>.<state>``
    (``BatchNorm1.running_mean``); empty for a network without ``layers``.
    """
    buffers = getattr(network, "buffers", None)
    if isinstance(buffers, Mapping):
        return dict(buffers)
    layers = getattr(network, "layers", None)
    if layers is None:
        return {}
    return {f"{key}.{name}": value for key, layer in named_layers(layers)
            for name, value in state_of(layer).items()}


class Block:
    """A layer made of layers: the protocol by delegation to ``children``.

    A subclass fills ``self.children`` (name -> layer, in order) in its
    ``__init__`` and writes ``forward(x, train_flg=True)`` and
    ``backward(dout)`` in terms of them (:func:`forward` passes ``train_flg``
    to the children that take it). Parameters, gradients and state are the
    children's, named ``<child>.<name>``; children may be blocks themselves.
    """

    takes_train_flg = True

    def __init__(self) -> None:
        self.children: OrderedDict[str, Any] = OrderedDict()

    def _gather(self, of: Any) -> dict[str, Any]:
        return {f"{child}.{name}": value for child, layer in self.children.items()
                for name, value in of(layer).items()}

    def named_params(self) -> dict[str, np.ndarray]:
        """Every child's parameters, named ``<child>.<name>``."""
        return self._gather(params_of)

    def named_grads(self) -> dict[str, np.ndarray | None]:
        """Every child's gradients, keyed like :meth:`named_params`."""
        return self._gather(grads_of)

    def named_state(self) -> dict[str, np.ndarray]:
        """Every child's state, named ``<child>.<name>``."""
        return self._gather(state_of)

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        raise NotImplementedError

    def backward(self, dout: Any) -> Any:
        raise NotImplementedError
