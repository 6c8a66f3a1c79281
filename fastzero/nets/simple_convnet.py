"""The CNN of chapter 7 (``ch07/simple_convnet.py``)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import numpy as np

from fastzero.layers import Affine, Convolution, Pooling, Relu
from fastzero.nets._base import Network, normal_sampler
from fastzero.nets._book_names import *  # noqa: F401,F403  (the book's module exports them)
from fastzero.nets._book_names import BOOK_NAMES
from fastzero.util import conv_output_size

__all__ = ["SimpleConvNet", *BOOK_NAMES]


def pool_output_size(size: int) -> int:
    """Output size of the book's 2x2, stride-2 max pooling."""
    return conv_output_size(size, 2, 2, 0)


class SimpleConvNet(Network):
    """conv - relu - pool - affine - relu - affine - softmax.

    Parameters
    ----------
    input_dim : (C, H, W)
        (1, 28, 28) for MNIST.
    conv_param : dict
        ``filter_num``, ``filter_size``, ``pad``, ``stride`` of the convolution.
    hidden_size, output_size : int
    weight_init_std : float
        Weights are ``weight_init_std * randn``, biases zero.
    dtype : np.float64 (default) or np.float32
    seed : int, np.random.Generator or None
        None draws the weights from ``np.random`` as the book does.

    ``params``: ``W1`` (filter_num, C, FH, FW), ``b1``, ``W2``
    (filter_num * PH * PW, hidden_size), ``b2``, ``W3``, ``b3``; ``layers``:
    ``Conv1``, ``Relu1``, ``Pool1`` (2x2, stride 2), ``Affine1``, ``Relu2``,
    ``Affine2``; ``last_layer``.
    """

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param: Mapping[str, int] | None = None, hidden_size: int = 100,
                 output_size: int = 10, weight_init_std: float = 0.01, *,
                 dtype: Any = np.float64, seed: int | np.random.Generator | None = None) -> None:
        super().__init__(dtype)
        conv_param = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1,
                      **(conv_param or {})}
        filter_num, filter_size = conv_param["filter_num"], conv_param["filter_size"]
        pad, stride = conv_param["pad"], conv_param["stride"]
        self.input_dim = tuple(int(d) for d in input_dim)
        channels, height, width = self.input_dim
        pooled = filter_num * (
            pool_output_size(conv_output_size(height, filter_size, stride, pad))
            * pool_output_size(conv_output_size(width, filter_size, stride, pad))
        )

        randn = normal_sampler(seed)
        std = weight_init_std
        self.params["W1"] = self._new_weight(randn, std, filter_num, channels, filter_size, filter_size)
        self.params["b1"] = self._zeros(filter_num)
        self.params["W2"] = self._new_weight(randn, std, pooled, hidden_size)
        self.params["b2"] = self._zeros(hidden_size)
        self.params["W3"] = self._new_weight(randn, std, hidden_size, output_size)
        self.params["b3"] = self._zeros(output_size)

        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(self.params["W1"], self.params["b1"], stride, pad)
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self._bind_params()
