"""A small residual network for MNIST-sized images, built from :class:`ResidualBlock`."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fastzero.layers import Affine, Convolution, Pooling, Relu, ResidualBlock, SpatialBatchNormalization
from fastzero.nets._base import Network, normal_sampler
from fastzero.util import conv_output_size


class ResNet(Network):
    """conv3x3 - BN - ReLU - residual stages - max pool 2x2 - affine - softmax.

    Each stage is ``blocks`` :class:`~fastzero.layers.ResidualBlock` s of
    ``channels[i]`` channels; every stage after the first starts with a block
    of stride 2 (a 1x1 projection on its shortcut), halving the image.

    Parameters
    ----------
    input_dim : (C, H, W)
    channels : channels of the stem and of each stage (default 16, 32, 64:
        28x28 -> 14x14 -> 7x7 for MNIST).
    blocks : residual blocks per stage.
    output_size : int
    dtype : np.float64 (default) or np.float32
    seed : int, np.random.Generator or None
        None draws the weights from ``np.random`` (He initialisation).

    ``params``: ``W1``, ``b1``, ``gamma1``, ``beta1`` (the stem), each block's
    parameters as ``block<s>_<b>.<name>`` (e.g. ``block2_1.conv1.W``), ``W2``,
    ``b2`` (the affine layer); ``buffers``: every batch norm's running
    statistics.
    """

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 channels: Sequence[int] = (16, 32, 64), blocks: int = 1,
                 output_size: int = 10, *, dtype: Any = np.float64,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(dtype)
        if len(channels) < 1 or blocks < 1:
            raise ValueError(f"ResNet: need at least one stage and one block, got "
                             f"channels={tuple(channels)}, blocks={blocks}")
        rng = None if seed is None else np.random.default_rng(seed)  # one stream for all weights
        randn = normal_sampler(rng)
        self.input_dim = tuple(int(d) for d in input_dim)
        c, h, w = self.input_dim
        width = channels[0]
        self.params["W1"] = self._new_weight(randn, np.sqrt(2.0 / (c * 9)), width, c, 3, 3)
        self.params["b1"] = self._zeros(width)
        self.params["gamma1"] = np.ones(width, self.dtype)
        self.params["beta1"] = self._zeros(width)
        self.layers = {
            "Conv1": Convolution(self.params["W1"], self.params["b1"], 1, 1),
            "BatchNorm1": SpatialBatchNormalization(self.params["gamma1"], self.params["beta1"]),
            "Relu1": Relu(),
        }
        for stage, out_channels in enumerate(channels, start=1):
            for index in range(1, blocks + 1):
                stride = 2 if stage > 1 and index == 1 else 1
                block = ResidualBlock(width, out_channels, stride, dtype=self.dtype, seed=rng)
                self._add_layer(f"block{stage}_{index}", block)
                width = out_channels
                h, w = conv_output_size(h, 3, stride, 1), conv_output_size(w, 3, stride, 1)
        self.layers["Pool1"] = Pooling(2, 2, stride=2)
        flat = width * (h // 2) * (w // 2)
        if flat == 0:
            raise ValueError(f"ResNet: input_dim {self.input_dim} is too small for "
                             f"{len(channels)} stages")
        self.params["W2"] = self._new_weight(randn, np.sqrt(2.0 / flat), flat, output_size)
        self.params["b2"] = self._zeros(output_size)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self._bind_params()
