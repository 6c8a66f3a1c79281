"""The code paths of the book's chapter 5-8 scripts, with fastzero in place of ``common``.

Each test follows what one or more of the book's scripts do (its current
repository) on small data: the names a star import hands a script, Python
floats as optimizer parameters, a scalar bias, labels shaped (N, 1), soft
targets, reproducibility from ``np.random.seed`` alone, and the Trainer's
per-epoch lists. The scripts themselves are not copied here.
"""
import numpy as np
import pytest

import fastzero
from fastzero.gradient import numerical_gradient, numerical_gradient_2d
from fastzero.layers import Affine, Convolution, Pooling, SoftmaxWithLoss
from fastzero.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from fastzero.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

# ---------------------------------------------------------------- star imports

_FUNCTIONS = ["cross_entropy_error", "identity_function", "np", "relu", "relu_grad", "sigmoid",
              "sigmoid_grad", "softmax", "softmax_loss", "step_function", "sum_squared_error"]
_LAYERS = ["Affine", "BatchNormalization", "Convolution", "Dropout", "Pooling", "Relu", "Sigmoid",
           "SoftmaxWithLoss", "col2im", "im2col", *_FUNCTIONS]
_OPTIMIZERS = ["AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop", "SGD", "np"]
_NET_MODULE = [*_LAYERS, "OrderedDict", "os", "sys"]

#: fastzero module -> the names ``from <book module> import *`` gives a script
#: (the book's modules have no ``__all__``), listed from the book's current code.
BOOK_STAR_NAMES = {
    "fastzero.functions": _FUNCTIONS,  # common/functions.py
    "fastzero.gradient": ["np", "numerical_gradient", "numerical_gradient_2d"],  # common/gradient.py
    "fastzero.layers": _LAYERS,  # common/layers.py
    "fastzero.optimizer": _OPTIMIZERS,  # common/optimizer.py
    "fastzero.util": ["col2im", "conv_output_size", "im2col", "np", "shuffle_dataset",
                      "smooth_curve"],  # common/util.py
    "fastzero.trainer": [*_OPTIMIZERS, "Trainer", "os", "sys"],  # common/trainer.py
    "fastzero.nets.multi_layer_net": [*_NET_MODULE, "MultiLayerNet", "numerical_gradient"],
    "fastzero.nets.multi_layer_net_extend": [*_NET_MODULE, "MultiLayerNetExtend",
                                             "numerical_gradient"],
    "fastzero.nets.two_layer_net": [*_NET_MODULE, "TwoLayerNet", "numerical_gradient"],  # ch05
    "fastzero.nets.simple_convnet": [*_NET_MODULE, "SimpleConvNet", "numerical_gradient",
                                     "pickle"],  # ch07
    "fastzero.nets.deep_convnet": [*_NET_MODULE, "DeepConvNet", "pickle"],  # ch08
}


@pytest.mark.parametrize("module", list(BOOK_STAR_NAMES))
def test_star_import_gives_every_name_the_books_module_gives(module):
    """``ch06/optimizer_compare_mnist.py`` uses the ``np`` its star import hands it."""
    namespace: dict = {}
    exec(f"from {module} import *", namespace)
    missing = sorted(set(BOOK_STAR_NAMES[module]) - set(namespace))
    assert missing == []
    assert namespace["np"] is np
    for name in namespace:
        assert not name.startswith("_") or name == "__builtins__"


def test_star_imported_names_are_the_real_things():
    namespace: dict = {}
    exec("from fastzero.nets.simple_convnet import *", namespace)
    assert namespace["SimpleConvNet"] is SimpleConvNet
    assert namespace["Pooling"] is Pooling
    assert namespace["numerical_gradient"] is numerical_gradient
    import collections
    import os
    import pickle
    import sys
    assert (namespace["OrderedDict"], namespace["os"], namespace["sys"], namespace["pickle"]) == (
        collections.OrderedDict, os, sys, pickle)
    namespace = {}
    exec("from fastzero.trainer import *", namespace)
    assert namespace["Adam"] is Adam


# ----------------------------------------------------- ch04/ch05: gradients

def test_numerical_gradient_2d_is_row_wise_as_the_books():
    """``common.gradient.numerical_gradient_2d``: a 1-D ``X`` is one point; each row of a
    2-D ``X`` is a point of its own, and ``f`` sees one row at a time."""
    def f(x):
        assert x.ndim == 1
        return float(np.sum(x ** 2) + x[0] * x[-1])

    x = np.array([3.0, -1.0, 2.0])
    np.testing.assert_allclose(numerical_gradient_2d(f, x), [2 * 3 + 2, -2, 2 * 2 + 3], rtol=1e-7)
    X = np.array([[3.0, -1.0, 2.0], [0.5, 4.0, -2.0]])
    before = X.copy()
    expected = 2 * X
    expected[:, 0] += X[:, -1]
    expected[:, -1] += X[:, 0]
    np.testing.assert_allclose(numerical_gradient_2d(f, X), expected, rtol=1e-7)
    np.testing.assert_array_equal(X, before)
    with pytest.raises(ValueError, match="numerical_gradient_2d"):
        numerical_gradient_2d(f, np.zeros((2, 2, 2)))
