"""The benchmark cases: what ``fastzero bench`` and the asv suites time.

A case builds its inputs for a dtype (``setup``) and does the work on a kernel
module (``run``): forward and backward for a layer kernel, one in-place update
for an optimizer, ``net.gradient`` plus an Adam update for a training step.
Training steps call the layers, which use the *active* backend, so every
measurement runs inside :func:`fastzero.use_backend`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np


#: The backend every speed-up is measured against, and the one measured.
REFERENCE, FAST = "numpy", "numba"
DTYPES: tuple[str, ...] = ("float64", "float32")
BATCH = 100
#: Issue-3 target for the float32 / float64 speed-up of the DeepConvNet step.
FLOAT32_TARGET = 1.6
FLOAT32_CASE = "train.DeepConvNet"



@dataclass(frozen=True)
class Case:
    """One benchmark: inputs built by ``setup(dtype)``, timed work ``run(k, inputs)``.

    ``k`` is a backend's kernel module (:func:`fastzero._backend.kernels`);
    ``target`` is the minimum numpy/numba speed-up issue 3 asks for; ``slow``
    cases are left out of quick runs (``--quick``, ``FASTZERO_BENCH_FAST=1``).
    """

    family: str
    label: str
    setup: Callable[[np.dtype], Any] = field(repr=False)
    run: Callable[[ModuleType, Any], Any] = field(repr=False)
    target: float | None = None
    slow: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}.{self.label}"


# --------------------------------------------------------------------- inputs


def _randn(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _conv_inputs(dtype, *, x_shape, w_shape, pad):
    rng = np.random.default_rng(0)
    n, _, h, w = x_shape
    fn, _, fh, fw = w_shape
    out_shape = (n, fn, h + 2 * pad - fh + 1, w + 2 * pad - fw + 1)
    x, W, dout = (_randn(rng, s, dtype) for s in (x_shape, w_shape, out_shape))
    return x, W * 0.1, np.zeros(fn, dtype), dout, pad


def _conv_run(k, inputs):
    x, W, b, dout, pad = inputs
    _, cache = k.conv_forward(x, W, b, 1, pad)
    return k.conv_backward(dout, cache, W, 1, pad)


def _pool_inputs(dtype, *, x_shape):
    rng = np.random.default_rng(0)
    n, c, h, w = x_shape
    return _randn(rng, x_shape, dtype), _randn(rng, (n, c, h // 2, w // 2), dtype)


def _pool_run(k, inputs):
    x, dout = inputs
    _, argmax = k.maxpool_forward(x, 2, 2, 2, 0)
    return k.maxpool_backward(dout, argmax, x.shape, 2, 2, 2, 0)


def _affine_inputs(dtype, *, d, m):
    rng = np.random.default_rng(0)
    x, W, dout = (_randn(rng, s, dtype) for s in ((BATCH, d), (d, m), (BATCH, m)))
    return x, W * 0.01, np.zeros(m, dtype), dout


def _affine_run(k, inputs):
    x, W, b, dout = inputs
    k.affine_forward(x, W, b)
    return k.affine_backward(dout, x, W)


def _relu_inputs(dtype, *, shape):
    rng = np.random.default_rng(0)
    return _randn(rng, shape, dtype), _randn(rng, shape, dtype)


def _relu_run(k, inputs):
    x, dout = inputs
    _, mask = k.relu_forward(x)
    return k.relu_backward(dout, mask)


def _xent_inputs(dtype, *, classes):
    rng = np.random.default_rng(0)
    return _randn(rng, (BATCH, classes), dtype), rng.integers(0, classes, BATCH, dtype=np.int64)


def _xent_run(k, inputs):
    x, t = inputs
    _, y = k.softmax_cross_entropy_forward(x, t)
    return k.softmax_cross_entropy_backward(1.0, y, t)


def _batchnorm_inputs(dtype, *, d):
    rng = np.random.default_rng(0)
    x, dout = _randn(rng, (BATCH, d), dtype), _randn(rng, (BATCH, d), dtype)
    return x, np.ones(d, dtype), np.zeros(d, dtype), np.zeros(d, dtype), np.ones(d, dtype), dout


def _batchnorm_run(k, inputs):
    x, gamma, beta, running_mean, running_var, dout = inputs
    _, cache = k.batchnorm_forward_train(x, gamma, beta, running_mean, running_var, 0.9, 1e-6)
    return k.batchnorm_backward(dout, cache, gamma)


#: optimizer kernel -> (state arrays it keeps, hyper-parameters after them)
_OPTIMIZERS: dict[str, tuple[int, tuple[float, ...]]] = {
    "sgd_update": (0, (0.01,)),
    "momentum_update": (1, (0.01, 0.9)),
    "nesterov_update": (1, (0.01, 0.9)),
    "adagrad_update": (1, (0.01,)),
    "rmsprop_update": (1, (0.01, 0.99)),
    "adam_update": (2, (0.001, 0.9, 0.999)),
}


def _optim_inputs(dtype, *, n_state, shape=(1000, 1000)):
    rng = np.random.default_rng(0)
    param, grad = _randn(rng, shape, dtype), _randn(rng, shape, dtype)
    return (param, grad) + tuple(np.zeros(shape, dtype) for _ in range(n_state))


def _optim_run(k, inputs, *, kernel, hyper):
    return getattr(k, kernel)(*inputs, *hyper)


@dataclass
class TrainState:
    """A network, its optimizer and one batch: what a training step needs."""

    net: Any
    optimizer: Any
    x: np.ndarray
    t: np.ndarray


def _train_inputs(dtype, *, net):
    import fastzero.nets
    from fastzero.optimizer import Adam

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28)).astype(dtype)
    t = rng.integers(0, 10, BATCH, dtype=np.int64)
    return TrainState(getattr(fastzero.nets, net)(dtype=dtype, seed=0), Adam(), x, t)


def train_step(state: TrainState) -> None:
    """One training step: gradients by backprop, then the optimizer's update."""
    grads = state.net.gradient(state.x, state.t)
    state.optimizer.update(state.net.params, grads)


def _train_run(k, state):
    # The layers call the active backend's kernels; the harness activates it.
    train_step(state)


# ------------------------------------------------------------------- registry


def _build_cases() -> tuple[Case, ...]:
    def conv(label, x_shape, w_shape, pad, target=None):
        setup = partial(_conv_inputs, x_shape=x_shape, w_shape=w_shape, pad=pad)
        return Case("conv", label, setup, _conv_run, target)

    def pool(label, x_shape):
        return Case("pool", label, partial(_pool_inputs, x_shape=x_shape), _pool_run, 10.0)

    cases = [
        # The book's layers, batch 100: SimpleConvNet conv1; DeepConvNet conv2
        # (16->16 at 28x28) and conv6 (64->64 at 8x8, after conv4's pad 2).
        conv("SimpleConvNet.conv1", (BATCH, 1, 28, 28), (30, 1, 5, 5), 0, 5.0),
        conv("DeepConvNet.conv2", (BATCH, 16, 28, 28), (16, 16, 3, 3), 1, 5.0),
        conv("DeepConvNet.conv6", (BATCH, 64, 8, 8), (64, 64, 3, 3), 1),
        pool("SimpleConvNet.pool1", (BATCH, 30, 24, 24)),
        pool("DeepConvNet.pool1", (BATCH, 16, 28, 28)),
        pool("DeepConvNet.pool3", (BATCH, 64, 8, 8)),
        Case("dense", "SimpleConvNet.affine1", partial(_affine_inputs, d=4320, m=100),
             _affine_run, 1.0),
        Case("activation", "SimpleConvNet.relu1", partial(_relu_inputs, shape=(BATCH, 30, 24, 24)),
             _relu_run),
        Case("loss", "softmax_cross_entropy_100x10", partial(_xent_inputs, classes=10), _xent_run),
        Case("norm", "batchnorm_100x1000", partial(_batchnorm_inputs, d=1000), _batchnorm_run),
    ]
    for kernel, (n_state, hyper) in _OPTIMIZERS.items():
        label = kernel.removesuffix("_update") + "_1M"
        run = partial(_optim_run, kernel=kernel, hyper=hyper)
        target = 4.0 if kernel == "adam_update" else None
        cases.append(Case("optim", label, partial(_optim_inputs, n_state=n_state), run, target))
    cases += [
        Case("train", "SimpleConvNet", partial(_train_inputs, net="SimpleConvNet"), _train_run, 5.0),
        Case("train", "DeepConvNet", partial(_train_inputs, net="DeepConvNet"), _train_run, 4.0,
             slow=True),
    ]
    return tuple(cases)


#: Every benchmark case, in table order.
CASES: tuple[Case, ...] = _build_cases()
CASES_BY_NAME: dict[str, Case] = {c.name: c for c in CASES}


def cases_of(family: str) -> list[Case]:
    """The cases of one family ("conv", "pool", ..., "train"), in registry order."""
    return [c for c in CASES if c.family == family]


def select(patterns: Sequence[str] | None = None, *, include_slow: bool = True) -> list[Case]:
    """Cases whose name matches any pattern (a glob, or a substring if it has no ``*?[``)."""

    def matches(name: str, pattern: str) -> bool:
        glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        return fnmatch.fnmatchcase(name, glob)

    return [
        c
        for c in CASES
        if (include_slow or not c.slow) and (not patterns or any(matches(c.name, p) for p in patterns))
    ]
