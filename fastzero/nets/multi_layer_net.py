"""Fully connected networks of chapter 6 (``common/multi_layer_net.py``)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from fastzero import _validate as v
from fastzero.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid
from fastzero.nets._base import Network, normal_sampler
from fastzero.nets._book_names import *  # noqa: F401,F403  (the book's module exports them)
from fastzero.nets._book_names import BOOK_NAMES

__all__ = ["MultiLayerNet", *BOOK_NAMES]

_ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


def init_scale(weight_init_std: str | float, fan_in: int) -> float:
    """The weight scale: He (``'relu'``/``'he'``: sqrt(2/fan_in)), Xavier
    (``'sigmoid'``/``'xavier'``: sqrt(1/fan_in)) or the number given."""
    name = str(weight_init_std).lower()
    if name in ("relu", "he"):
        return float(np.sqrt(2.0 / fan_in))
    if name in ("sigmoid", "xavier"):
        return float(np.sqrt(1.0 / fan_in))
    if isinstance(weight_init_std, str):
        raise ValueError(
            f"weight_init_std must be 'relu', 'he', 'sigmoid', 'xavier' or a number, "
            f"got {weight_init_std!r}"
        )
    return v.real(weight_init_std, "MultiLayerNet", "weight_init_std", 0.0)


class MultiLayerNet(Network):
    """``(Affine - activation) x len(hidden_size_list)`` - Affine - softmax.

    Parameters
    ----------
    input_size : int
        784 for MNIST.
    hidden_size_list : list of int
        Neurons per hidden layer, e.g. ``[100, 100, 100]``.
    output_size : int
    activation : 'relu' or 'sigmoid'
    weight_init_std : 'relu'/'he', 'sigmoid'/'xavier' or a number
    weight_decay_lambda : float
        L2 weight decay: the loss gains ``0.5 * lambda * sum(W**2)`` over all ``W``.
    dtype : np.float64 (default) or np.float32
    seed : int, np.random.Generator or None
        None draws the weights from ``np.random`` as the book does.

    ``params``: ``W1``, ``b1``, ... ``W{L}``, ``b{L}`` with ``L =
    len(hidden_size_list) + 1``; ``layers``: ``Affine{i}``,
    ``Activation_function{i}``, ...; ``last_layer``.
    """

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, *, dtype: Any = np.float64,
                 seed: int | np.random.Generator | None = None) -> None:
        self._build(input_size, hidden_size_list, output_size, activation, weight_init_std,
                    weight_decay_lambda, dtype, seed, use_dropout=False, dropout_ration=0.5,
                    use_batchnorm=False)

    def _build(self, input_size, hidden_size_list, output_size, activation, weight_init_std,
               weight_decay_lambda, dtype, seed, use_dropout, dropout_ration, use_batchnorm):
        super().__init__(dtype)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be 'relu' or 'sigmoid', got {activation!r}")
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = list(hidden_size_list)
        self.hidden_layer_num = len(self.hidden_size_list)
        self.weight_decay_lambda = v.real(weight_decay_lambda, type(self).__name__,
                                          "weight_decay_lambda", 0.0)
        self.use_dropout = use_dropout
        self.use_batchnorm = use_batchnorm

        randn = normal_sampler(seed)
        sizes = [input_size, *self.hidden_size_list, output_size]
        for idx in range(1, len(sizes)):
            scale = init_scale(weight_init_std, sizes[idx - 1])
            self.params[f"W{idx}"] = self._new_weight(randn, scale, sizes[idx - 1], sizes[idx])
            self.params[f"b{idx}"] = self._zeros(sizes[idx])

        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers[f"Affine{idx}"] = Affine(self.params[f"W{idx}"], self.params[f"b{idx}"])
            if use_batchnorm:
                size = sizes[idx]
                self.params[f"gamma{idx}"] = np.ones(size, dtype=self.dtype)
                self.params[f"beta{idx}"] = self._zeros(size)
                self.buffers[f"running_mean{idx}"] = self._zeros(size)
                self.buffers[f"running_var{idx}"] = self._zeros(size)
                self.layers[f"BatchNorm{idx}"] = BatchNormalization(
                    self.params[f"gamma{idx}"], self.params[f"beta{idx}"],
                    running_mean=self.buffers[f"running_mean{idx}"],
                    running_var=self.buffers[f"running_var{idx}"],
                )
            self.layers[f"Activation_function{idx}"] = _ACTIVATIONS[activation]()
            if use_dropout:
                self.layers[f"Dropout{idx}"] = Dropout(dropout_ration)
        idx = self.hidden_layer_num + 1
        self.layers[f"Affine{idx}"] = Affine(self.params[f"W{idx}"], self.params[f"b{idx}"])
        self._bind_params()

