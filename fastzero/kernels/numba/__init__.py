"""The numba backend: every kernel of :mod:`fastzero.kernels`, same signatures.

Each public function is a plain Python wrapper that allocates the outputs and
calls a private ``numba.njit(parallel=True, cache=True)`` kernel. Importing
this package compiles nothing: a kernel compiles on its first call for a
given dtype, and the machine code is cached on disk for the next process.
"""
from fastzero.kernels.numba.activation import (
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
)
from fastzero.kernels.numba.augment import bilinear_sample, separable_blur
from fastzero.kernels.numba.conv import col2im, conv_backward, conv_forward, im2col
from fastzero.kernels.numba.dense import affine_backward, affine_forward
from fastzero.kernels.numba.dropout import dropout_backward, dropout_forward
from fastzero.kernels.numba.loss import (
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from fastzero.kernels.numba.norm import (
    batchnorm_backward,
    batchnorm_forward_infer,
    batchnorm_forward_train,
)
from fastzero.kernels.numba.optim import (
    adagrad_update,
    adam_update,
    momentum_update,
    nesterov_update,
    rmsprop_update,
    sgd_update,
)
from fastzero.kernels.numba.pool import maxpool_backward, maxpool_forward

__all__ = [
    "im2col",
    "col2im",
    "conv_forward",
    "conv_backward",
    "maxpool_forward",
    "maxpool_backward",
    "affine_forward",
    "affine_backward",
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "softmax",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "batchnorm_forward_train",
    "batchnorm_forward_infer",
    "batchnorm_backward",
    "dropout_forward",
    "dropout_backward",
    "separable_blur",
    "bilinear_sample",
    "sgd_update",
    "momentum_update",
    "nesterov_update",
    "adagrad_update",
    "rmsprop_update",
    "adam_update",
]
