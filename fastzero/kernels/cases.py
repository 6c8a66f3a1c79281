"""One registry of example calls: every kernel's arguments for a size and a dtype.

:data:`CASES` maps each kernel name of the contract (:data:`KERNELS`) to a
:class:`KernelCase`: the shapes of its kind of work (:class:`Shapes`, shared by
the kernels of a family) and a builder of its arguments. The equivalence,
float32, layout and determinism tests, ``fastzero bench`` and the asv suites
all iterate over it; adding a kernel is its two implementations and one entry
here (``tests/test_kernel_cases.py`` fails for a kernel without one).

Sizes:

``"tiny"``
    odd, small shapes (batch 1, odd widths, a single column, windows that
    overlap or skip): what the numpy-vs-numba equivalence tests run;
``"parallel"``
    shapes just large enough for the numba kernels' parallel paths, one per
    path (the determinism and alignment tests);
``"book"``
    the book's layer shapes at batch 100, named after the layer
    (``"SimpleConvNet.conv1"``): what the benchmarks time.

A builder takes the backend's kernel module, because a backward kernel needs
the cache its own backend's forward kernel made from the same inputs; it
draws every random value before calling any kernel, so the same seed gives
both backends the same arguments::

    case = CASES["conv_backward"]
    for label, dims in case.shapes("tiny").items():
        args = case.arguments(kernels("numba"), dims, np.float32, seed=0)
        getattr(kernels("numba"), case.kernel)(*args)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Literal

import numpy as np

from fastzero.kernels import KERNEL_NAMES, KERNELS
from fastzero.kernels._geometry import output_size

Size = Literal["tiny", "parallel", "book"]
SIZES: tuple[Size, ...] = ("tiny", "parallel", "book")
#: The batch of the book's training scripts, and of every "book" shape.
BATCH = 100

Dims = tuple[int, ...]
Builder = Callable[[ModuleType, Dims, np.dtype, np.random.Generator], tuple]


@dataclass(frozen=True)
class Shapes:
    """A family's shapes by size: ``{size: {label: dims}}``; ``dims`` is described by ``doc``."""

    doc: str
    tiny: tuple[Dims, ...]
    parallel: tuple[Dims, ...]
    book: dict[str, Dims]

    def of(self, size: Size) -> dict[str, Dims]:
        """``{label: dims}`` of one size; tiny and parallel shapes are labelled by their dims."""
        if size == "book":
            return dict(self.book)
        dims = self.tiny if size == "tiny" else self.parallel
        return {"x".join(map(str, d)): d for d in dims}


@dataclass(frozen=True)
class KernelCase:
    """How to call one kernel: its family's shapes and a builder of its arguments.

    ``updates`` are the positions of the arguments the kernel updates in place
    (an optimizer's parameter and state, batch norm's running statistics);
    ``opaque`` the positions in its result tuple of caches only the same
    backend's backward kernel reads.
    """

    kernel: str
    family: str
    dims: Shapes = field(repr=False)
    build: Builder = field(repr=False)
    updates: tuple[int, ...] = ()
    opaque: tuple[int, ...] = ()

    def shapes(self, size: Size) -> dict[str, Dims]:
        """``{label: dims}`` of one size."""
        return self.dims.of(size)

    def arguments(self, k: ModuleType, dims: Dims, dtype: Any, seed: int = 0) -> tuple:
        """The kernel's arguments for ``dims`` and ``dtype``, the same for every backend ``k``."""
        return self.build(k, dims, np.dtype(dtype), np.random.default_rng(seed))

    def call(self, k: ModuleType, args: tuple) -> Any:
        """Run the kernel of backend ``k`` on ``args``."""
        return getattr(k, self.kernel)(*args)


# ----------------------------------------------------------------- shapes

#: (N, C, H, W, FN, FH, FW, stride, pad)
CONV = Shapes(
    doc="(N, C, H, W, FN, FH, FW, stride, pad)",
    tiny=(
        (1, 1, 28, 28, 30, 5, 5, 1, 0),  # SimpleConvNet conv1, one image
        (3, 16, 9, 9, 16, 3, 3, 1, 1),  # DeepConvNet's 3x3 pad 1
        (5, 3, 11, 10, 4, 7, 3, 2, 2),
        (2, 3, 9, 7, 3, 1, 1, 3, 0),
        (4, 1, 8, 8, 2, 3, 3, 3, 2),
        (1, 3, 5, 6, 2, 5, 5, 1, 2),
        (7, 16, 13, 11, 3, 3, 5, 2, 1),
        (3, 1, 6, 9, 5, 3, 3, 2, 0),
    ),
    parallel=((8, 3, 16, 16, 8, 3, 3, 1, 1),),
    book={
        "SimpleConvNet.conv1": (BATCH, 1, 28, 28, 30, 5, 5, 1, 0),
        # DeepConvNet conv2 (16->16 at 28x28) and conv6 (64->64 at 8x8, after conv4's pad 2)
        "DeepConvNet.conv2": (BATCH, 16, 28, 28, 16, 3, 3, 1, 1),
        "DeepConvNet.conv6": (BATCH, 64, 8, 8, 64, 3, 3, 1, 1),
    },
)

#: (N, C, H, W, pool_h, pool_w, stride, pad)
POOL = Shapes(
    doc="(N, C, H, W, pool_h, pool_w, stride, pad)",
    tiny=(
        (1, 1, 6, 6, 2, 2, 2, 0),
        (3, 30, 24, 24, 2, 2, 2, 0),  # SimpleConvNet's pooling, few images
        (5, 3, 9, 8, 3, 2, 1, 1),
        (2, 16, 7, 9, 3, 3, 2, 1),
        (3, 2, 11, 10, 2, 3, 3, 2),
        (1, 3, 5, 5, 5, 5, 1, 2),
        (4, 1, 13, 7, 1, 4, 2, 0),
    ),
    parallel=((8, 3, 16, 16, 2, 2, 2, 0),),
    book={
        "SimpleConvNet.pool1": (BATCH, 30, 24, 24, 2, 2, 2, 0),
        "DeepConvNet.pool1": (BATCH, 16, 28, 28, 2, 2, 2, 0),
        "DeepConvNet.pool3": (BATCH, 64, 8, 8, 2, 2, 2, 0),
    },
)

#: (N, D, M): x (N, D) @ W (D, M)
DENSE = Shapes(
    doc="(N, D, M)",
    tiny=((1, 1, 1), (1, 9, 5), (7, 13, 3), (130, 2, 1), (3, 11, 300), (257, 7, 131)),
    parallel=((32, 1200, 50),),
    book={"SimpleConvNet.affine1": (BATCH, 4320, 100), "TwoLayerNet.affine1": (BATCH, 784, 50)},
)

#: any array shape (element-wise kernels); the last tiny ones run in parallel
ARRAY = Shapes(
    doc="any shape",
    tiny=((1,), (7, 13), (2, 3, 5, 7), (1, 40000), (3, 5, 47, 53)),
    parallel=((32, 1200),),
    book={"SimpleConvNet.conv1_out": (BATCH, 30, 24, 24), "MultiLayerNet.hidden": (BATCH, 100)},
)

#: (N, D): rows of a matrix (softmax, losses, batch norm); the last tiny one in parallel
ROWS = Shapes(
    doc="(N, D)",
    tiny=((1, 1), (1, 9), (7, 13), (130, 1), (3, 300), (257, 131)),
    parallel=((32, 1200),),
    book={"output": (BATCH, 10)},
)

#: (N, D), the book's layer, per column; or (N, C, L), images (N, C, H*W), per channel
NORM = Shapes(
    doc="(N, D) or (N, C, L)",
    # batch 1, one value per channel, odd sizes, one channel; the last in parallel
    tiny=ROWS.tiny + ((1, 5, 25), (1, 3, 1), (7, 3, 11), (2, 16, 49), (3, 1, 130), (5, 7, 260)),
    parallel=ROWS.parallel + ((8, 16, 196),),
    book={
        "MultiLayerNetExtend.hidden": (BATCH, 100),
        "wide": (BATCH, 1000),
        "ResNet.stage1": (BATCH, 16, 28 * 28),
        "ResNet.stage3": (BATCH, 64, 7 * 7),
    },
)

#: (N, C, H, W): images resampled at displaced points
WARP = Shapes(
    doc="(N, C, H, W)",
    tiny=((1, 1, 5, 7), (2, 3, 9, 4), (3, 1, 28, 28)),
    parallel=((8, 1, 28, 28),),
    book={"MNIST": (BATCH, 1, 28, 28)},
)

#: a parameter's shape
PARAM = Shapes(
    doc="a parameter's shape",
    tiny=((37,), (4, 3, 5, 5)),
    parallel=((32, 1200),),
    book={"1M": (1000, 1000)},
)


# ---------------------------------------------------------------- builders


def _normal(rng: np.random.Generator, shape: Dims, dtype: np.dtype, scale: float = 1.0,
            shift: float = 0.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape) + shift).astype(dtype)


def _conv_out(n, c, h, w, fn, fh, fw, stride, pad) -> Dims:
    return (n, fn, output_size(h, fh, stride, pad), output_size(w, fw, stride, pad))


def _conv_xwb(dims, dtype, rng):
    n, c, h, w, fn, fh, fw, stride, pad = dims
    x = _normal(rng, (n, c, h, w), dtype)
    W = _normal(rng, (fn, c, fh, fw), dtype, math.sqrt(2.0 / (c * fh * fw)))
    return x, W, _normal(rng, (fn,), dtype, 0.1)


def _im2col(k, dims, dtype, rng):
    x, W, _ = _conv_xwb(dims, dtype, rng)
    return x, W.shape[2], W.shape[3], dims[7], dims[8]


def _col2im(k, dims, dtype, rng):
    n, c, h, w, fn, fh, fw, stride, pad = dims
    _, _, oh, ow = _conv_out(*dims)
    col = _normal(rng, (n * oh * ow, c * fh * fw), dtype)
    return col, (n, c, h, w), fh, fw, stride, pad


def _conv_forward(k, dims, dtype, rng):
    x, W, b = _conv_xwb(dims, dtype, rng)
    return x, W, b, dims[7], dims[8]


def _conv_backward(k, dims, dtype, rng):
    x, W, b = _conv_xwb(dims, dtype, rng)
    dout = _normal(rng, _conv_out(*dims), dtype)
    _, cache = k.conv_forward(x, W, b, dims[7], dims[8])
    return dout, cache, W, dims[7], dims[8]


def _pool_out(n, c, h, w, ph, pw, stride, pad) -> Dims:
    return (n, c, output_size(h, ph, stride, pad), output_size(w, pw, stride, pad))


def _maxpool_forward(k, dims, dtype, rng):
    return (_normal(rng, dims[:4], dtype), *dims[4:])


def _maxpool_backward(k, dims, dtype, rng):
    x = _normal(rng, dims[:4], dtype)
    dout = _normal(rng, _pool_out(*dims), dtype)
    _, argmax = k.maxpool_forward(x, *dims[4:])
    return (dout, argmax, x.shape, *dims[4:])


def _affine_forward(k, dims, dtype, rng):
    n, d, m = dims
    return (_normal(rng, (n, d), dtype), _normal(rng, (d, m), dtype, math.sqrt(1.0 / d)),
            _normal(rng, (m,), dtype, 0.1))


def _affine_backward(k, dims, dtype, rng):
    n, d, m = dims
    x, W = _normal(rng, (n, d), dtype), _normal(rng, (d, m), dtype, math.sqrt(1.0 / d))
    return _normal(rng, (n, m), dtype), x, W


def _relu_forward(k, shape, dtype, rng):
    return (np.round(rng.standard_normal(shape), 1).astype(dtype),)  # exact zeros: mask x <= 0


def _relu_backward(k, shape, dtype, rng):
    x, dout = _relu_forward(k, shape, dtype, rng)[0], _normal(rng, shape, dtype)
    return dout, k.relu_forward(x)[1]


def _sigmoid_forward(k, shape, dtype, rng):
    return (_normal(rng, shape, dtype, 4.0),)


def _sigmoid_backward(k, shape, dtype, rng):
    x, dout = _normal(rng, shape, dtype, 4.0), _normal(rng, shape, dtype)
    return dout, k.sigmoid_forward(x)


def _softmax(k, dims, dtype, rng):
    return (_normal(rng, dims, dtype, 3.0),)


def _xent_forward(k, dims, dtype, rng):
    return _normal(rng, dims, dtype, 3.0), rng.integers(0, dims[1], dims[0], dtype=np.int64)


def _xent_backward(k, dims, dtype, rng):
    x, t = _xent_forward(k, dims, dtype, rng)
    return 0.37, k.softmax_cross_entropy_forward(x, t)[1], t


def _bn_inputs(dims, dtype, rng):
    """x, gamma, beta, running_mean, running_var."""
    d = dims[1]
    return (_normal(rng, dims, dtype, 2.0, 1.0), rng.uniform(0.5, 1.5, d).astype(dtype),
            _normal(rng, (d,), dtype), rng.uniform(-1, 1, d).astype(dtype),
            rng.uniform(0.5, 2, d).astype(dtype))


def _bn_train(k, dims, dtype, rng):
    return (*_bn_inputs(dims, dtype, rng), 0.9, 1e-6)


def _bn_infer(k, dims, dtype, rng):
    return (*_bn_inputs(dims, dtype, rng), 1e-6)


def _bn_backward(k, dims, dtype, rng):
    x, gamma, beta, mean, var = _bn_inputs(dims, dtype, rng)
    dout = _normal(rng, dims, dtype)
    _, cache = k.batchnorm_forward_train(x, gamma, beta, mean, var, 0.9, 1e-6)
    return dout, cache, gamma


def _dropout_forward(k, shape, dtype, rng):
    x = _normal(rng, shape, dtype)
    return x, np.round(rng.random(shape), 1), 0.5  # values equal to the ratio are dropped


def _dropout_backward(k, shape, dtype, rng):
    x, rand, ratio = _dropout_forward(k, shape, dtype, rng)
    dout = _normal(rng, shape, dtype)
    return dout, k.dropout_forward(x, rand, ratio)[1]


def _bilinear_sample(k, dims, dtype, rng):
    n, c, h, w = dims
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    # displaced by up to 2 pixels: some points fall between pixels, some outside
    src_y = (ys + rng.uniform(-2, 2, (n, h, w))).astype(dtype)
    src_x = (xs + rng.uniform(-2, 2, (n, h, w))).astype(dtype)
    return rng.random((n, c, h, w)).astype(dtype), src_y, src_x


def _warp(k, dims, dtype, rng):
    n, c, h, w = dims
    angle, zoom = rng.uniform(-0.2, 0.2, n), rng.uniform(0.9, 1.1, n)
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    shift = rng.uniform(-2, 2, (2, n))
    grid = np.stack([np.stack([cos, -sin, shift[0]], axis=1),
                     np.stack([sin, cos, shift[1]], axis=1)], axis=1)  # (N, 2, 3)
    sigma = 4.0 if min(h, w) >= 28 else 1.0  # Augment's elastic preset; fewer taps on tiny images
    taps = np.exp(-0.5 * (np.arange(-2 * sigma, 2 * sigma + 1) / sigma) ** 2)
    key = int(rng.integers(0, 2**64, dtype=np.uint64))  # as Augment's raw 64-bit draw
    return (rng.random((n, c, h, w)).astype(dtype), grid.astype(dtype), key, 8.0,
            (taps / taps.sum()).astype(dtype))  # alpha 8: displacements of about a pixel


#: optimizer kernel -> (state arrays it keeps, hyper-parameters after them)
OPTIMIZERS: dict[str, tuple[int, tuple[float, ...]]] = {
    "sgd_update": (0, (0.01,)),
    "momentum_update": (1, (0.01, 0.9)),
    "nesterov_update": (1, (0.01, 0.9)),
    "adagrad_update": (1, (0.01,)),
    "rmsprop_update": (1, (0.01, 0.99)),
    "adam_update": (2, (0.001, 0.9, 0.999)),
}


def _optimizer(kernel: str) -> Builder:
    n_state, hyper = OPTIMIZERS[kernel]

    def build(k, shape, dtype, rng):
        param, grad = _normal(rng, shape, dtype), _normal(rng, shape, dtype)
        # states as after a few steps: a velocity, and squares of gradients (>= 0)
        states = tuple(np.abs(_normal(rng, shape, dtype, 0.1)) for _ in range(n_state))
        return (param, grad, *states, *hyper)

    return build


# ---------------------------------------------------------------- registry


def _entries() -> dict[str, KernelCase]:
    table: list[tuple[str, str, Shapes, Builder, tuple[int, ...]]] = [
        ("im2col", "conv", CONV, _im2col, ()),
        ("col2im", "conv", CONV, _col2im, ()),
        ("conv_forward", "conv", CONV, _conv_forward, ()),
        ("conv_backward", "conv", CONV, _conv_backward, ()),
        ("maxpool_forward", "pool", POOL, _maxpool_forward, ()),
        ("maxpool_backward", "pool", POOL, _maxpool_backward, ()),
        ("affine_forward", "dense", DENSE, _affine_forward, ()),
        ("affine_backward", "dense", DENSE, _affine_backward, ()),
        ("relu_forward", "activation", ARRAY, _relu_forward, ()),
        ("relu_backward", "activation", ARRAY, _relu_backward, ()),
        ("sigmoid_forward", "activation", ARRAY, _sigmoid_forward, ()),
        ("sigmoid_backward", "activation", ARRAY, _sigmoid_backward, ()),
        ("softmax", "loss", ROWS, _softmax, ()),
        ("softmax_cross_entropy_forward", "loss", ROWS, _xent_forward, ()),
        ("softmax_cross_entropy_backward", "loss", ROWS, _xent_backward, ()),
        ("batchnorm_forward_train", "norm", NORM, _bn_train, (3, 4)),
        ("batchnorm_forward_infer", "norm", NORM, _bn_infer, ()),
        ("batchnorm_backward", "norm", NORM, _bn_backward, ()),
        ("dropout_forward", "dropout", ARRAY, _dropout_forward, ()),
        ("dropout_backward", "dropout", ARRAY, _dropout_backward, ()),
        ("bilinear_sample", "augment", WARP, _bilinear_sample, ()),
        ("warp", "augment", WARP, _warp, ()),
    ]
    # in place: the parameter (0) and the state arrays after the gradient (2, ...)
    table += [(name, "optim", PARAM, _optimizer(name), (0, *range(2, 2 + OPTIMIZERS[name][0])))
              for name in KERNELS["optim"]]
    opaque = {"conv_forward": (1,), "batchnorm_forward_train": (1,)}
    return {name: KernelCase(name, family, dims, build, updates, opaque.get(name, ()))
            for name, family, dims, build, updates in table}


#: kernel name -> its case, in the contract's order
CASES: dict[str, KernelCase] = _entries()


def cases_of(family: str) -> list[KernelCase]:
    """The cases of one kernel module ("conv", "pool", ...), in the contract's order."""
    return [c for c in CASES.values() if c.family == family]


def missing() -> list[str]:
    """Kernels of the contract without a case (empty when the registry is complete)."""
    return [name for name in KERNEL_NAMES if name not in CASES]
