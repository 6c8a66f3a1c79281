"""One forward and backward pass of each kernel family, through the public layers.

``run(family, scale)`` builds seeded inputs and returns a float64 vector of
everything the family computed, so that two runs can be compared. At
``scale=1`` every kernel gets enough work to run as a parallel region on
numba's threads (or, for the products, on the slice threads: one
convolution has 100 taps and goes through BLAS, the other 9 and does not); smaller scales keep interpreted runs
(``NUMBA_DISABLE_JIT=1``) short. Used by the fork and no-JIT tests, in child
processes: ``python kernel_families.py FAMILY[,FAMILY...] SCALE`` prints the
checksums, or with a third argument saves the vectors to that ``.npz``.
"""
from __future__ import annotations

import sys

import numpy as np

from fastzero.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from fastzero.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

FAMILIES = ("conv", "pool", "activation", "loss", "norm", "dropout", "optim", "dense")


def _flat(*arrays) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])


def run(family: str, scale: float = 1.0) -> np.ndarray:
    """Forward and backward of ``family`` on seeded inputs; everything it returned, flattened."""
    rng = np.random.default_rng(0)
    n = max(2, int(64 * scale))

    def randn(*shape):
        return rng.standard_normal(shape)

    if family == "conv":
        out = []
        for c, f in ((4, 5), (1, 3)):
            layer = Convolution(randn(8, c, f, f) * 0.1, randn(8), pad=1)
            y = layer.forward(randn(n, c, 16, 16))
            out += [y, layer.backward(randn(*y.shape)), layer.dW, layer.db]
        return _flat(*out)
    if family == "pool":
        layer = Pooling(2, 2, stride=2)
        out = layer.forward(randn(n, 8, 16, 16))
        return _flat(out, layer.backward(randn(*out.shape)))
    if family == "activation":
        relu, sigmoid = Relu(), Sigmoid()
        x = randn(n, 8, 16, 16)
        a, b = relu.forward(x), sigmoid.forward(x)
        return _flat(a, b, relu.backward(x), sigmoid.backward(x))
    if family == "loss":
        layer = SoftmaxWithLoss()
        loss = layer.forward(randn(n * 16, 64), rng.integers(0, 64, n * 16))
        return _flat(loss, layer.backward())
    if family == "norm":
        d = 1024
        layer = BatchNormalization(np.ones(d), np.zeros(d))
        out = layer.forward(randn(n, d))
        dx = layer.backward(randn(n, d))
        infer = layer.forward(randn(n, d), train_flg=False)
        return _flat(out, dx, layer.dgamma, layer.dbeta, layer.running_mean, infer)
    if family == "dropout":
        np.random.seed(0)
        layer = Dropout(0.3)
        x = randn(n, 8, 16, 16)
        return _flat(layer.forward(x), layer.backward(x))
    if family == "optim":
        shape = (n * 16, 64)
        out = []
        for opt in (SGD(), Momentum(), Nesterov(), AdaGrad(), RMSprop(), Adam()):
            params = {"W": randn(*shape)}
            for _ in range(2):
                opt.update(params, {"W": randn(*shape)})
            out.append(params["W"])
        return _flat(*out)
    if family == "dense":
        layer = Affine(randn(256, 128) * 0.1, randn(128))
        out = layer.forward(randn(n * 8, 256))
        dx = layer.backward(randn(*out.shape))
        return _flat(out, dx, layer.dW, layer.db)
    raise ValueError(f"unknown kernel family {family!r}")


if __name__ == "__main__":
    families, scale = sys.argv[1].split(","), float(sys.argv[2])
    results = {name: run(name, scale) for name in families}
    if len(sys.argv) > 3:
        np.savez(sys.argv[3], **results)
    for name, values in results.items():
        print(name, values.size, repr(float(values.sum())))
