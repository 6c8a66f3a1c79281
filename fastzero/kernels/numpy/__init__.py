"""The pure-NumPy reference backend: the book's algorithms, written cleanly.

Every kernel of :data:`fastzero.kernels.KERNELS`, with the contract's
signatures. This is the baseline the numba backend is tested and benchmarked
against, so it stays the book's code: no cleverer algorithms here.
"""
from fastzero.kernels.numpy.activation import (
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
)
from fastzero.kernels.numpy.augment import bilinear_sample, separable_blur
from fastzero.kernels.numpy.conv import col2im, conv_backward, conv_forward, im2col
from fastzero.kernels.numpy.dense import affine_backward, affine_forward
from fastzero.kernels.numpy.dropout import dropout_backward, dropout_forward
from fastzero.kernels.numpy.loss import (
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from fastzero.kernels.numpy.norm import (
    batchnorm_backward,
    batchnorm_forward_infer,
    batchnorm_forward_train,
)
from fastzero.kernels.numpy.optim import (
    adagrad_update,
    adam_update,
    momentum_update,
    nesterov_update,
    rmsprop_update,
    sgd_update,
)
from fastzero.kernels.numpy.pool import maxpool_backward, maxpool_forward

__all__ = [
    "im2col", "col2im", "conv_forward", "conv_backward",
    "maxpool_forward", "maxpool_backward",
    "affine_forward", "affine_backward",
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward",
    "dropout_forward", "dropout_backward",
    "separable_blur", "bilinear_sample",
    "sgd_update", "momentum_update", "nesterov_update",
    "adagrad_update", "rmsprop_update", "adam_update",
]
