"""The two-layer network of chapter 5 (``ch05/two_layer_net.py``)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from fastzero.layers import Affine, Relu, SoftmaxWithLoss
from fastzero.nets._base import Network, normal_sampler
from fastzero.nets._book_names import *  # noqa: F401,F403  (the book's module exports them)
from fastzero.nets._book_names import BOOK_NAMES

__all__ = ["TwoLayerNet", *BOOK_NAMES]


class TwoLayerNet(Network):
    """Affine - ReLU - Affine - softmax, with the book's layer names.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
    weight_init_std : float
        Weights are ``weight_init_std * randn``, biases zero.
    dtype : np.float64 (default) or np.float32
    seed : int, np.random.Generator or None
        None draws the weights from ``np.random`` as the book does.

    ``params``: ``W1`` (input_size, hidden_size), ``b1``, ``W2``
    (hidden_size, output_size), ``b2``; ``layers``: ``Affine1``, ``Relu1``,
    ``Affine2``; ``lastLayer`` (also ``last_layer``).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, dtype: Any = np.float64,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(dtype)
        randn = normal_sampler(seed)
        self.params["W1"] = self._new_weight(randn, weight_init_std, input_size, hidden_size)
        self.params["b1"] = self._zeros(hidden_size)
        self.params["W2"] = self._new_weight(randn, weight_init_std, hidden_size, output_size)
        self.params["b2"] = self._zeros(output_size)

        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self._bind_params()

    @property
    def lastLayer(self) -> SoftmaxWithLoss:  # noqa: N802 (the book's name)
        """The book's name for :attr:`last_layer` in this network."""
        return self.last_layer
