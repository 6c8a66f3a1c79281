"""Property-based equivalence: the numba backend equals the NumPy reference on random cases.

Hypothesis draws shapes, strides, padding, float32/float64 and the memory
layout of the input (C, Fortran, strided, reversed, read-only, byte-swapped);
the values come from a drawn seed. Every layer of the book, forward and
backward, and two whole networks (SimpleConvNet with a small input,
MultiLayerNetExtend with batch norm and dropout) run on both backends; the
numba result with the drawn layout must equal the reference result on the
C-ordered input to ``1e-10`` (float64) or ``1e-4`` (float32) relative to its
largest magnitude (with an absolute floor of 1e-12 / 1e-5 for results that are
rounding noise around an exact zero). Dropout masks are fixed by seeding ``np.random``.

Quick by default (the "default" hypothesis profile, 25 examples per test);
``FASTZERO_HYPOTHESIS_PROFILE=long`` tries 500. The number of cases tried
is printed at the end of the module.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastzero
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
from fastzero.nets import MultiLayerNetExtend, SimpleConvNet
from layouts import ATOL, VALUE_LAYOUTS, as_layout, assert_close

#: also run by CI's bounds-checked job (NUMBA_BOUNDSCHECK=1)
pytestmark = pytest.mark.boundscheck

#: cases tried per test, reported when the module finishes
TRIED: Counter = Counter()

dtypes = st.sampled_from([np.dtype(np.float64), np.dtype(np.float32)])
layouts = st.sampled_from(VALUE_LAYOUTS)
seeds = st.integers(0, 2**32 - 1)


@pytest.fixture(scope="module", autouse=True)
def report_cases_tried(pytestconfig):
    """Print how many cases each property tried, past pytest's output capture."""
    yield
    total = sum(TRIED.values())
    detail = ", ".join(f"{name} {n}" for name, n in sorted(TRIED.items()))
    line = f"\ntest_properties: {total} hypothesis cases tried on both backends ({detail})"
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(line, flush=True)


def check(name, run, layout, dtype):
    """``run(layout)`` on the numba backend against ``run("C")`` on the NumPy reference."""
    with fastzero.use_backend("numba"):
        got = run(layout)
    with fastzero.use_backend("numpy"):
        want = run("C")
    TRIED[name] += 1
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype == dtype, (name, i, g.dtype, w.dtype)
        assert_close(g, w, dtype, f"{name} output {i}", atol=ATOL[dtype])


def normal(seed, shape, dtype, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def layer_pass(make, x_c, dtype, seed):
    """``run(layout)``: forward and backward of a fresh ``make()`` on ``x_c`` laid out as
    ``layout``; returns the output, dx and every gradient the layer sets."""
    def run(layout):
        layer = make()
        np.random.seed(seed % 2**32)  # fixes dropout's mask
        out = layer.forward(as_layout(x_c, layout))
        dout = normal(seed + 1, out.shape, dtype)
        dx = layer.backward(dout)
        grads = [getattr(layer, g) for g in ("dW", "db", "dgamma", "dbeta") if getattr(layer, g, None) is not None]
        return [out, dx, *grads]
    return run


@st.composite
def conv_cases(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pad = draw(st.integers(0, 2))
    fh, fw = draw(st.integers(1, h + 2 * pad)), draw(st.integers(1, w + 2 * pad))
    return dict(x_shape=(n, c, h, w), w_shape=(draw(st.integers(1, 4)), c, fh, fw),
                stride=draw(st.integers(1, 3)), pad=pad)


@given(case=conv_cases(), dtype=dtypes, layout=layouts, seed=seeds)
def test_convolution(case, dtype, layout, seed):
    x = normal(seed, case["x_shape"], dtype)
    W, b = normal(seed + 2, case["w_shape"], dtype), normal(seed + 3, case["w_shape"][:1], dtype)

    def make():
        return Convolution(W, b, case["stride"], case["pad"])

    check("Convolution", layer_pass(make, x, dtype, seed), layout, dtype)


@st.composite
def pool_cases(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = draw(st.integers(0, min(ph, pw) - 1))
    if ph > h + 2 * pad or pw > w + 2 * pad:
        h, w = max(h, ph), max(w, pw)
    return dict(x_shape=(n, c, h, w), ph=ph, pw=pw, stride=draw(st.integers(1, 3)), pad=pad,
                ties=draw(st.booleans()))


@given(case=pool_cases(), dtype=dtypes, layout=layouts, seed=seeds)
def test_pooling(case, dtype, layout, seed):
    x = normal(seed, case["x_shape"], dtype)
    if case["ties"]:
        x = np.round(x)  # many equal maxima: both backends must pick the first
    make = lambda: Pooling(case["ph"], case["pw"], case["stride"], case["pad"])  # noqa: E731
    check("Pooling", layer_pass(make, x, dtype, seed), layout, dtype)


@given(n=st.integers(1, 5), dims=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       m=st.integers(1, 6), dtype=dtypes, layout=layouts, seed=seeds)
def test_affine(n, dims, m, dtype, layout, seed):
    d = int(np.prod(dims))
    x = normal(seed, (n, *dims), dtype)
    W, b = normal(seed + 2, (d, m), dtype), normal(seed + 3, (m,), dtype)
    make = lambda: Affine(W, b)  # noqa: E731
    check("Affine", layer_pass(make, x, dtype, seed), layout, dtype)


@given(n=st.integers(2, 6), shape=st.sampled_from([(5,), (1,), (2, 2, 3), (1, 3, 1)]),
       momentum=st.floats(0.0, 1.0), dtype=dtypes, layout=layouts, seed=seeds)
def test_batch_normalization(n, shape, momentum, dtype, layout, seed):
    d = int(np.prod(shape))
    x = normal(seed, (n, *shape), dtype, scale=3.0) + 1.0
    gamma, beta = 1 + normal(seed + 2, (d,), dtype, 0.2), normal(seed + 3, (d,), dtype)

    def run(layout):
        layer = BatchNormalization(gamma.copy(), beta.copy(), momentum=momentum)
        out = layer.forward(as_layout(x, layout))
        dx = layer.backward(normal(seed + 1, out.shape, dtype))
        infer = layer.forward(as_layout(x[:1], layout), train_flg=False)
        return [out, dx, layer.dgamma, layer.dbeta, infer, layer.running_mean, layer.running_var]

    check("BatchNormalization", run, layout, dtype)


@given(kind=st.sampled_from(["Relu", "Sigmoid", "Dropout"]),
       shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), scale=st.sampled_from([1.0, 30.0]),
       ratio=st.floats(0.0, 0.95), dtype=dtypes, layout=layouts, seed=seeds)
def test_elementwise_layers(kind, shape, scale, ratio, dtype, layout, seed):
    x = normal(seed, shape, dtype, scale)
    make = {"Relu": Relu, "Sigmoid": Sigmoid, "Dropout": lambda: Dropout(ratio)}[kind]
    check(kind, layer_pass(make, x, dtype, seed), layout, dtype)


@given(n=st.integers(1, 6), k=st.integers(1, 7), scale=st.sampled_from([1.0, 10.0, 1e3]),
       one_hot=st.booleans(), dout=st.floats(-2, 2), dtype=dtypes, layout=layouts, seed=seeds)
def test_softmax_with_loss(n, k, scale, one_hot, dout, dtype, layout, seed):
    x = normal(seed, (n, k), dtype, scale)
    labels = np.random.default_rng(seed + 5).integers(0, k, n)
    t = np.eye(k)[labels] if one_hot else labels

    def run(layout):
        layer = SoftmaxWithLoss()
        loss = layer.forward(as_layout(x, layout), t)
        return [np.asarray(loss, dtype=dtype), layer.y, layer.backward(dout)]

    check("SoftmaxWithLoss", run, layout, dtype)


@st.composite
def convnet_cases(draw):
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(4, 10)), draw(st.integers(4, 10))
    pad, stride = draw(st.integers(0, 1)), draw(st.integers(1, 2))
    size = draw(st.integers(1, min(h, w) + 2 * pad - 1))
    conv_h = (h + 2 * pad - size) // stride + 1
    conv_w = (w + 2 * pad - size) // stride + 1
    if min(conv_h, conv_w) < 2:  # the book's 2x2 pooling needs a 2x2 conv output
        size, stride = 1, 1
    return dict(input_dim=(c, h, w),
                conv_param={"filter_num": draw(st.integers(1, 4)), "filter_size": size,
                            "pad": pad, "stride": stride},
                hidden_size=draw(st.integers(1, 6)), output_size=draw(st.integers(2, 5)),
                weight_init_std=0.3)


def net_pass(make, x, t):
    """``run(layout)``: a fresh ``make()``'s loss, scores, gradients and buffers on ``x``."""
    def run(layout):
        net = make()
        np.random.seed(0)
        grads = net.gradient(as_layout(x, layout), t)
        return [np.asarray(net.last_loss, dtype=net.dtype), net.predict(as_layout(x, layout)),
                *(grads[k] for k in sorted(grads)), *(net.buffers[k] for k in sorted(net.buffers))]
    return run


@given(case=convnet_cases(), n=st.integers(1, 4), dtype=dtypes, layout=layouts, seed=seeds)
def test_simple_convnet(case, n, dtype, layout, seed):
    x = normal(seed, (n, *case["input_dim"]), dtype)
    t = np.random.default_rng(seed).integers(0, case["output_size"], n)
    make = lambda: SimpleConvNet(**case, dtype=dtype, seed=seed)  # noqa: E731
    assume(not _near_tie_in_a_pool_window(make(), x))
    check("SimpleConvNet", net_pass(make, x, t), layout, dtype)


def _near_tie_in_a_pool_window(net, x) -> bool:
    """Whether two of a 2x2 pool window's ReLU outputs are within rounding of each
    other: a one-ulp difference between the backends' convolutions then moves the
    argmax, and with it the gradient, to another cell (both right within rounding)."""
    with fastzero.use_backend("numpy"):
        a = net.layers["Relu1"].forward(net.layers["Conv1"].forward(x))
    n, c, h, w = a.shape
    windows = a[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    windows = np.sort(windows.transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4), axis=1)
    top, second = windows[:, -1], windows[:, -2]
    return bool(np.any((top > 0) & (top - second <= 1e-9 * top)))


@given(n=st.integers(2, 6), d=st.integers(1, 8), hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       k=st.integers(2, 5), activation=st.sampled_from(["relu", "sigmoid"]),
       dropout=st.booleans(), decay=st.sampled_from([0.0, 0.1]),
       dtype=dtypes, layout=layouts, seed=seeds)
def test_multi_layer_net_extend(n, d, hidden, k, activation, dropout, decay, dtype, layout, seed):
    x = normal(seed, (n, d), dtype, 2.0)
    t = np.random.default_rng(seed).integers(0, k, n)

    def make():
        return MultiLayerNetExtend(d, hidden, k, activation=activation, weight_decay_lambda=decay,
                                   use_dropout=dropout, dropout_ration=0.3, use_batchnorm=True,
                                   dtype=dtype, seed=seed)

    check("MultiLayerNetExtend", net_pass(make, x, t), layout, dtype)
