"""The benchmark cases: what ``fastzero bench`` and the asv suites time.

A case is named ``family.label``, the same name in the report, in ``--cases``
and as the asv suites' ``case`` parameter (where the family is the module,
``bench_<family>``, and the label the value). Four kinds, all measured under
the numpy reference and the numba backend:

* **kernels** (families ``conv``, ``pool``, ``dense``, ``activation``,
  ``loss``, ``norm``, ``dropout``, ``optim``): every kernel of the registry
  :data:`fastzero.kernels.cases.CASES` at each of its book shapes, e.g.
  ``conv.conv_backward.DeepConvNet.conv2``;
* **layers** (``layer``): a book layer's forward and backward through the
  layer class at batch 1, 3 and 100, e.g. ``layer.SimpleConvNet.conv1.b3``;
* **networks** (``net``): each book network's ``loss`` and ``gradient`` at
  batch 1, 3 and 100, and ``numerical_gradient`` of TwoLayerNet on a batch
  of 3 (the book's ``ch05/gradient_check.py``);
* **training steps** (``train``): ``gradient`` and the optimizer's update at
  batch 100, the workloads of the book's chapter scripts: TwoLayerNet with SGD
  (``ch05/train_neuralnet.py``), MultiLayerNet and MultiLayerNetExtend with
  batch norm (``ch06/batch_norm_test.py``), SimpleConvNet and DeepConvNet with
  Adam (``ch07/train_convnet.py``, ``ch08/train_deepnet.py``).

A case builds its inputs for a dtype (``setup``) and does the work on a kernel
module (``run``). Layers and networks call the *active* backend's kernels, so
every measurement runs inside :func:`fastzero.use_backend`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from fastzero.kernels import KERNELS
from fastzero.kernels.cases import BATCH, CONV, DENSE, POOL
from fastzero.kernels.cases import CASES as KERNEL_CASES

#: The backend every speed-up is measured against, and the one measured.
REFERENCE, FAST = "numpy", "numba"
DTYPES: tuple[str, ...] = ("float64", "float32")
#: Batches of the layer and network cases: single images, the book's
#: ``gradient_check.py`` batch, and a training batch.
BATCHES: tuple[int, ...] = (1, 3, BATCH)
#: The minimum float32 / float64 speed-up of this training step (numba).
FLOAT32_TARGET = 1.6
FLOAT32_CASE = "train.DeepConvNet"
#: The training steps whose first call is timed in fresh processes.
COLDSTART_CASES: tuple[str, ...] = ("train.SimpleConvNet", "train.DeepConvNet")


@dataclass(frozen=True)
class Case:
    """One benchmark: inputs built by ``setup(dtype)``, timed work ``run(k, inputs)``.

    ``k`` is a backend's kernel module (:func:`fastzero._backend.kernels`);
    ``target`` is the minimum numpy/numba speed-up in float64 (the float32
    rows have none); ``slow`` cases are left out of quick runs (``--quick``,
    ``FASTZERO_BENCH_FAST=1``).
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

    def target_for(self, dtype: str) -> float | None:
        """The minimum speed-up asked of this case in ``dtype`` (float64 only)."""
        return self.target if np.dtype(dtype) == np.float64 else None


# ------------------------------------------------------------------ kernels


def _kernel_inputs(dtype, *, kernel, dims):
    from fastzero._backend import get_backend, kernels

    # The builder calls forward kernels for a backward kernel's cache: the active backend's.
    return KERNEL_CASES[kernel].arguments(kernels(get_backend()), dims, dtype)


def _kernel_run(k, args, *, kernel):
    return getattr(k, kernel)(*args)


#: Minimum float64 speed-ups of kernel cases, by name.
_KERNEL_TARGETS = {"optim.adam_update.1M": 4.0}


def _kernel_cases() -> list[Case]:
    return [
        Case(family, f"{kernel}.{where}", partial(_kernel_inputs, kernel=kernel, dims=dims),
             partial(_kernel_run, kernel=kernel), _KERNEL_TARGETS.get(f"{family}.{kernel}.{where}"))
        for family, names in KERNELS.items()
        for kernel in names
        for where, dims in KERNEL_CASES[kernel].shapes("book").items()
    ]


# ------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerSpec:
    """A layer of the book's networks: its constructor by dtype and its input by batch."""

    make: Callable[[np.random.Generator, np.dtype], Any]
    input_shape: Callable[[int], tuple[int, ...]]


def _conv_layer(dims):
    _, c, h, w, fn, fh, fw, stride, pad = dims

    def make(rng, dtype):
        from fastzero.layers import Convolution

        W = (rng.standard_normal((fn, c, fh, fw)) * np.sqrt(2.0 / (c * fh * fw))).astype(dtype)
        return Convolution(W, np.zeros(fn, dtype), stride, pad)

    return LayerSpec(make, lambda n: (n, c, h, w))


def _pool_layer(dims):
    _, c, h, w, ph, pw, stride, pad = dims

    def make(rng, dtype):
        from fastzero.layers import Pooling

        return Pooling(ph, pw, stride, pad)

    return LayerSpec(make, lambda n: (n, c, h, w))


def _affine_layer(dims, input_tail):
    _, d, m = dims

    def make(rng, dtype):
        from fastzero.layers import Affine

        return Affine((rng.standard_normal((d, m)) * np.sqrt(1.0 / d)).astype(dtype),
                      np.zeros(m, dtype))

    return LayerSpec(make, lambda n: (n, *input_tail))


def _simple_layer(name, *tail, **kwargs):
    def make(rng, dtype):
        import fastzero.layers

        return getattr(fastzero.layers, name)(**kwargs)

    return LayerSpec(make, lambda n: (n, *tail))


def _batchnorm_layer(d):
    def make(rng, dtype):
        from fastzero.layers import BatchNormalization

        return BatchNormalization(np.ones(d, dtype), np.zeros(d, dtype))

    return LayerSpec(make, lambda n: (n, d))


#: The book's layers, named by network and position; conv, pool and affine
#: shapes are the kernel registry's book shapes.
LAYERS: dict[str, LayerSpec] = {
    **{where: _conv_layer(dims) for where, dims in CONV.book.items()},
    "SimpleConvNet.relu1": _simple_layer("Relu", 30, 24, 24),
    **{where: _pool_layer(dims) for where, dims in POOL.book.items()},
    "SimpleConvNet.affine1": _affine_layer(DENSE.book["SimpleConvNet.affine1"], (30, 12, 12)),
    "TwoLayerNet.affine1": _affine_layer(DENSE.book["TwoLayerNet.affine1"], (784,)),
    "MultiLayerNet.sigmoid": _simple_layer("Sigmoid", 100),
    "MultiLayerNetExtend.batchnorm": _batchnorm_layer(100),
    "DeepConvNet.dropout": _simple_layer("Dropout", 50, dropout_ratio=0.5),
    "SimpleConvNet.loss": _simple_layer("SoftmaxWithLoss", 10),
}

#: Minimum float64 speed-ups of layer cases (batch 100), by layer.
_LAYER_TARGETS = {
    "SimpleConvNet.conv1": 5.0,
    "DeepConvNet.conv2": 5.0,
    "SimpleConvNet.pool1": 10.0,
    "DeepConvNet.pool1": 10.0,
    "DeepConvNet.pool3": 10.0,
    "SimpleConvNet.affine1": 1.0,
}


def _layer_inputs(dtype, *, spec, n):
    rng = np.random.default_rng(0)
    layer = spec.make(rng, dtype)
    shape = spec.input_shape(n)
    x = rng.standard_normal(shape).astype(dtype)
    if type(layer).__name__ == "SoftmaxWithLoss":
        return layer, x, rng.integers(0, shape[1], n, dtype=np.int64)
    return layer, x, None


def _layer_run(k, inputs):
    layer, x, t = inputs
    if t is not None:
        layer.forward(x, t)
        return layer.backward(1)
    out = layer.forward(x)
    return layer.backward(np.ones_like(out))


def _layer_cases() -> list[Case]:
    return [
        Case("layer", f"{where}.b{n}", partial(_layer_inputs, spec=spec, n=n), _layer_run,
             _LAYER_TARGETS.get(where) if n == BATCH else None)
        for where, spec in LAYERS.items() for n in BATCHES
    ]


# ----------------------------------------------------------------- networks


def make_net(name: str, dtype: Any, seed: int = 0) -> Any:
    """A book network as the book's scripts build it (MNIST input, 10 classes)."""
    import fastzero.nets as nets

    if name == "TwoLayerNet":
        return nets.TwoLayerNet(784, 50, 10, dtype=dtype, seed=seed)
    if name == "MultiLayerNet":
        return nets.MultiLayerNet(784, [100] * 5, 10, dtype=dtype, seed=seed)
    if name == "MultiLayerNetExtend":
        return nets.MultiLayerNetExtend(784, [100] * 5, 10, use_batchnorm=True, dtype=dtype,
                                        seed=seed)
    return getattr(nets, name)(dtype=dtype, seed=seed)


#: The book's networks; the convnets take images, the others flat vectors.
NETS: tuple[str, ...] = ("TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend",
                         "SimpleConvNet", "DeepConvNet")


def _batch(name: str, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (n, 1, 28, 28) if name.endswith("ConvNet") else (n, 784)
    return rng.random(shape).astype(dtype), rng.integers(0, 10, n, dtype=np.int64)


def _net_inputs(dtype, *, net, n):
    return (make_net(net, dtype), *_batch(net, n, dtype))


def _net_run(k, inputs, *, method):
    net, x, t = inputs
    return getattr(net, method)(x, t)


def _net_cases() -> list[Case]:
    cases = [
        Case("net", f"{net}.{method}.b{n}", partial(_net_inputs, net=net, n=n),
             partial(_net_run, method=method),
             slow=(net == "DeepConvNet" and method == "gradient" and n == BATCH))
        for net in NETS for method in ("loss", "gradient") for n in BATCHES
    ]
    cases.append(Case("net", "TwoLayerNet.numerical_gradient.b3",
                      partial(_net_inputs, net="TwoLayerNet", n=3),
                      partial(_net_run, method="numerical_gradient"), slow=True))
    return cases


# ----------------------------------------------------------- training steps


@dataclass
class TrainState:
    """A network, its optimizer and one batch: what a training step needs."""

    net: Any
    optimizer: Any
    x: np.ndarray
    t: np.ndarray


def _train_inputs(dtype, *, net, optimizer, lr):
    import fastzero.optimizer

    x, t = _batch(net, BATCH, dtype)
    return TrainState(make_net(net, dtype), getattr(fastzero.optimizer, optimizer)(lr=lr), x, t)


def train_step(state: TrainState) -> None:
    """One training step: gradients by backprop, then the optimizer's update."""
    grads = state.net.gradient(state.x, state.t)
    state.optimizer.update(state.net.params, grads)


def _train_run(k, state):
    train_step(state)


#: training step -> (optimizer, learning rate, float64 target, slow), as the book's scripts
_TRAINING = {
    "TwoLayerNet": ("SGD", 0.1, None, False),
    "MultiLayerNet": ("SGD", 0.01, None, False),
    "MultiLayerNetExtend": ("SGD", 0.01, None, False),
    "SimpleConvNet": ("Adam", 0.001, 5.0, False),
    "DeepConvNet": ("Adam", 0.001, 4.0, True),
}


def _train_cases() -> list[Case]:
    return [
        Case("train", net, partial(_train_inputs, net=net, optimizer=opt, lr=lr), _train_run,
             target, slow)
        for net, (opt, lr, target, slow) in _TRAINING.items()
    ]


# ----------------------------------------------------------------- registry

#: Every benchmark case, in table order.
CASES: tuple[Case, ...] = tuple(_kernel_cases() + _layer_cases() + _net_cases() + _train_cases())
CASES_BY_NAME: dict[str, Case] = {c.name: c for c in CASES}


def cases_of(family: str) -> list[Case]:
    """The cases of one family ("conv", "pool", ..., "layer", "net", "train"), in order."""
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
