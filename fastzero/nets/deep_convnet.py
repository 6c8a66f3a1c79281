"""The deep CNN of chapter 8 (``ch08/deep_convnet.py``)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fastzero.layers import Affine, Convolution, Dropout, Pooling, Relu
from fastzero.nets._base import Network, normal_sampler
from fastzero.nets._book_names import *  # noqa: F401,F403  (the book's module exports them)
from fastzero.nets._book_names import BOOK_NAMES
from fastzero.nets.simple_convnet import pool_output_size
from fastzero.util import conv_output_size

__all__ = ["DeepConvNet", *BOOK_NAMES]

_DEFAULT_CONV_PARAMS = (
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(Network):
    """(conv - relu - conv - relu - pool) x 3 - affine - relu - dropout - affine - dropout - softmax.

    The network of chapter 8 that reaches about 99.4 % on MNIST. Weights use
    He initialisation, ``sqrt(2 / fan_in) * randn``, biases zero; both dropout
    layers drop half the units in training.

    Parameters
    ----------
    input_dim : (C, H, W)
    conv_param_1 ... conv_param_6 : dict
        ``filter_num``, ``filter_size``, ``pad``, ``stride`` of each convolution;
        the defaults are the book's (16, 16, 32, 32, 64, 64 filters of 3x3,
        pads 1, 1, 1, 2, 1, 1). Smaller inputs work as long as every layer
        keeps at least one pixel.
    hidden_size, output_size : int
    dtype : np.float64 (default) or np.float32
    seed : int, np.random.Generator or None
        None draws the weights from ``np.random`` as the book does.

    ``params``: ``W1`` ... ``W6`` (convolutions), ``W7``, ``W8`` (affine) and
    ``b1`` ... ``b8``; ``layers`` is a list, as in the book; ``last_layer``.
    """

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param_1: Mapping[str, int] = _DEFAULT_CONV_PARAMS[0],
                 conv_param_2: Mapping[str, int] = _DEFAULT_CONV_PARAMS[1],
                 conv_param_3: Mapping[str, int] = _DEFAULT_CONV_PARAMS[2],
                 conv_param_4: Mapping[str, int] = _DEFAULT_CONV_PARAMS[3],
                 conv_param_5: Mapping[str, int] = _DEFAULT_CONV_PARAMS[4],
                 conv_param_6: Mapping[str, int] = _DEFAULT_CONV_PARAMS[5],
                 hidden_size: int = 50, output_size: int = 10, *, dtype: Any = np.float64,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(dtype)
        conv_params = [conv_param_1, conv_param_2, conv_param_3,
                       conv_param_4, conv_param_5, conv_param_6]
        randn = normal_sampler(seed)
        self.input_dim = tuple(int(d) for d in input_dim)
        channels, height, width = self.input_dim
        self.layers = []
        for idx, param in enumerate(conv_params, start=1):
            fn, fs = param["filter_num"], param["filter_size"]
            stride, pad = param["stride"], param["pad"]
            scale = np.sqrt(2.0 / (channels * fs * fs))
            W = self.params[f"W{idx}"] = self._new_weight(randn, scale, fn, channels, fs, fs)
            b = self.params[f"b{idx}"] = self._zeros(fn)
            self.layers += [Convolution(W, b, stride, pad), Relu()]
            channels = fn
            height = conv_output_size(height, fs, stride, pad)
            width = conv_output_size(width, fs, stride, pad)
            if idx % 2 == 0:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
                height, width = pool_output_size(height), pool_output_size(width)

        flat = channels * height * width
        self.params["W7"] = self._new_weight(randn, np.sqrt(2.0 / flat), flat, hidden_size)
        self.params["b7"] = self._zeros(hidden_size)
        self.params["W8"] = self._new_weight(randn, np.sqrt(2.0 / hidden_size),
                                             hidden_size, output_size)
        self.params["b8"] = self._zeros(output_size)
        self.layers += [
            Affine(self.params["W7"], self.params["b7"]), Relu(), Dropout(0.5),
            Affine(self.params["W8"], self.params["b8"]), Dropout(0.5),
        ]
        self._bind_params()

    def loss(self, x: np.ndarray, t: np.ndarray, train_flg: bool = True) -> float:
        """Cross-entropy loss; in training mode (dropout active) by default, as the book."""
        return super().loss(x, t, train_flg)
