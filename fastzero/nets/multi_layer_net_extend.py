"""Chapter 6's network with dropout and batch normalisation (``common/multi_layer_net_extend.py``)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fastzero.nets.multi_layer_net import MultiLayerNet
from fastzero.nets._book_names import *  # noqa: F401,F403  (the book's module exports them)
from fastzero.nets._book_names import BOOK_NAMES

__all__ = ["MultiLayerNetExtend", *BOOK_NAMES]


class MultiLayerNetExtend(MultiLayerNet):
    """:class:`MultiLayerNet` with optional dropout and batch normalisation
    (``common/multi_layer_net_extend.py``).

    Parameters
    ----------
    use_dropout : bool
        A ``Dropout{i}`` layer after every hidden activation.
    dropout_ration : float
        The fraction of units dropped (the book's spelling).
    use_batchnorm : bool
        A ``BatchNorm{i}`` layer between every hidden Affine and its
        activation, with parameters ``gamma{i}``/``beta{i}`` and running
        statistics ``running_mean{i}``/``running_var{i}`` in :attr:`buffers`.

    The other parameters are :class:`MultiLayerNet`'s.
    """

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, use_dropout: bool = False,
                 dropout_ration: float = 0.5, use_batchnorm: bool = False, *,
                 dtype: Any = np.float64, seed: int | np.random.Generator | None = None) -> None:
        self._build(input_size, hidden_size_list, output_size, activation, weight_init_std,
                    weight_decay_lambda, dtype, seed, use_dropout=use_dropout,
                    dropout_ration=dropout_ration, use_batchnorm=use_batchnorm)
