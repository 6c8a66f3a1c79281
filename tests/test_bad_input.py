"""Bad input to every public entry point: the reference's result, or a clear error.

Every layer, public function, optimizer, network and the trainer is fed the
input users get wrong -- wrong ndim, channel/feature counts that do not match
the weights, windows larger than the padded input, empty batches, strided,
Fortran-ordered, read-only and byte-swapped arrays, int/bool/float16 input,
mixed float32/float64, NaN and inf, labels out of range, targets of the wrong
length -- on both backends. Each case either gives exactly what the NumPy
reference gives for the equivalent clean input, or raises ValueError/TypeError
whose message names the entry point and the expected and received shape or
dtype.

The valid edge geometries at the end (1x1 images, windows as large as the
padded input, strides larger than the image, padding larger than the filter,
batches that straddle the conv kernel's chunk size, argmax index-type
boundaries) are what make this file meaningful under ``NUMBA_BOUNDSCHECK=1``:
there every out-of-bounds access of a numba kernel raises instead of reading
garbage. Run that job with a *fresh* ``NUMBA_CACHE_DIR``: numba's cache key
(signature, target, bytecode hash) does not include the boundscheck flag, so
kernels cached without checks would otherwise be reused.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import fastzero
from fastzero import functions as F
from fastzero import util
from fastzero.gradient import numerical_gradient
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
from fastzero.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from fastzero.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from fastzero.trainer import Trainer
from layouts import VALUE_LAYOUTS, as_layout, assert_close

#: also run by CI's bounds-checked job (NUMBA_BOUNDSCHECK=1)
pytestmark = pytest.mark.boundscheck

F64, F32 = np.dtype(np.float64), np.dtype(np.float32)


def raises(exc, *fragments):
    """``pytest.raises(exc)`` whose message contains every literal fragment."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# ------------------------------------------------------------------ the layers

LABELS = np.array([0, 3, 1])  # SoftmaxWithLoss targets for a batch of 3


def make_layer(name: str, dtype=F64):
    """A fresh layer with deterministic weights of ``dtype``; see SHAPES for its input."""
    rng = np.random.default_rng(7)

    def w(*shape):
        return rng.standard_normal(shape).astype(dtype)

    if name == "Convolution":
        return Convolution(w(4, 3, 3, 2), w(4), stride=2, pad=1)
    if name == "Pooling":
        return Pooling(3, 2, stride=2, pad=1)
    if name == "Affine":
        return Affine(w(12, 5), w(5))
    if name == "BatchNormalization":
        return BatchNormalization(1 + 0.1 * w(12), w(12), momentum=0.8)
    if name == "Dropout":
        return Dropout(0.3)
    return {"Relu": Relu, "Sigmoid": Sigmoid, "SoftmaxWithLoss": SoftmaxWithLoss}[name]()


#: A valid input shape per layer.
SHAPES = {
    "Convolution": (3, 3, 7, 6),
    "Pooling": (3, 2, 7, 6),
    "Affine": (3, 3, 2, 2),
    "BatchNormalization": (3, 12),
    "Relu": (3, 2, 5),
    "Sigmoid": (3, 2, 5),
    "Dropout": (3, 2, 5),
    "SoftmaxWithLoss": (3, 4),
}
LAYERS = list(SHAPES)
WEIGHTED = ("Convolution", "Affine", "BatchNormalization")


def run_layer(name: str, x, dtype=F64) -> list[np.ndarray]:
    """Forward, backward (a fixed ``dout``) and every gradient/state of a fresh layer."""
    layer = make_layer(name, dtype)
    if name == "SoftmaxWithLoss":
        loss = layer.forward(x, LABELS)  # a Python float, computed in y's dtype
        return [np.asarray(loss, dtype=layer.y.dtype), layer.y, layer.backward(1.0)]
    if name == "Dropout":
        np.random.seed(3)
    out = layer.forward(x)
    dout = np.linspace(-1.0, 2.0, out.size).reshape(out.shape).astype(out.dtype)
    results = [out, layer.backward(dout)]
    results += [getattr(layer, g) for g in ("dW", "db", "dgamma", "dbeta") if hasattr(layer, g)]
    if name == "BatchNormalization":
        results += [layer.forward(x, train_flg=False), layer.running_mean, layer.running_var]
    return results


def sample(name: str, dtype=F64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPES[name]).astype(dtype)


def reference(name: str, x: np.ndarray, dtype=F64) -> list[np.ndarray]:
    with fastzero.use_backend("numpy"):
        return run_layer(name, np.ascontiguousarray(x), dtype)


@pytest.mark.parametrize("layout", VALUE_LAYOUTS)
@pytest.mark.parametrize("name", LAYERS)
def test_memory_layout_never_changes_the_result(backend, name, layout):
    """Fortran, strided, reversed, read-only and byte-swapped input: the C-order result,
    bit for bit on the same backend, within tolerance of the NumPy reference; the
    user's array is left untouched."""
    for dtype in (F64, F32):
        x = sample(name, dtype)
        c_result = run_layer(name, x, dtype)
        given = as_layout(x, layout)
        before = given.copy()
        result = run_layer(name, given, dtype)
        np.testing.assert_array_equal(given, before)
        assert given.dtype == before.dtype
        for got, want, ref in zip(result, c_result, reference(name, x, dtype), strict=True):
            assert got.dtype == dtype, (layout, dtype, got.dtype)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {layout} {dtype}")
            assert_close(got, ref, dtype, f"{name} {layout} {dtype} vs reference")


@pytest.mark.parametrize("layout", VALUE_LAYOUTS)
@pytest.mark.parametrize("name", [n for n in LAYERS if n != "SoftmaxWithLoss"])
def test_dout_layout_never_changes_the_gradient(backend, name, layout):
    """A ``dout`` in any layout gives the C-order ``dout``'s gradients, bit for bit."""
    x = sample(name)
    want, got = make_layer(name), make_layer(name)
    if name == "Dropout":
        np.random.seed(3)
    out = want.forward(x)
    if name == "Dropout":
        np.random.seed(3)
    got.forward(x)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    np.testing.assert_array_equal(got.backward(as_layout(dout, layout)), want.backward(dout),
                                  err_msg=f"{name} {layout}")
    for grad in ("dW", "db", "dgamma", "dbeta"):
        if hasattr(want, grad):
            np.testing.assert_array_equal(getattr(got, grad), getattr(want, grad), err_msg=grad)


def test_dropout_at_inference_keeps_float32(backend):
    x = sample("Dropout", F32)
    assert make_layer("Dropout").forward(x, train_flg=False).dtype == F32


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("kind", ["int64", "int8", "uint8", "bool", "float16", "list"])
def test_int_bool_float16_and_list_input_are_converted(backend, name, kind):
    """int/bool become float64 (a weighted layer: its weights' dtype), float16 float32."""
    x = sample(name) * 3
    given = {"int64": x.astype(np.int64), "int8": x.astype(np.int8),
             "uint8": np.abs(x).astype(np.uint8), "bool": x > 0,
             "float16": x.astype(np.float16), "list": x.tolist()}[kind]
    for weights in (F64, F32):
        expected = F32 if kind == "float16" and name not in WEIGHTED else F64
        if name in WEIGHTED:
            expected = weights
        elif weights == F32:
            continue  # no weights: only the input's dtype matters
        result = run_layer(name, given, weights)
        ref = reference(name, np.asarray(given).astype(expected), weights)
        for got, want in zip(result, ref, strict=True):
            assert got.dtype == expected, (kind, got.dtype)
            assert_close(got, want, expected, f"{name} {kind}")


@pytest.mark.parametrize("name", WEIGHTED)
def test_mixed_float32_float64_follows_the_weights(backend, name):
    """float32 input to a float64 layer computes in float64, and vice versa."""
    for x_dtype, w_dtype in ((F32, F64), (F64, F32)):
        x = sample(name, x_dtype)
        result = run_layer(name, x, w_dtype)
        ref = reference(name, x.astype(w_dtype), w_dtype)
        for got, want in zip(result, ref, strict=True):
            assert got.dtype == w_dtype
            assert_close(got, want, w_dtype, f"{name} x {x_dtype} W {w_dtype}")


@pytest.mark.parametrize("name", LAYERS)
def test_nan_and_inf_propagate_as_in_the_reference(numba_backend, name):
    x = sample(name)
    flat = x.reshape(-1)
    flat[[1, 7, 11]] = [np.nan, np.inf, -np.inf]
    with np.errstate(invalid="ignore", over="ignore"):
        result = run_layer(name, x)
        ref = reference(name, x)
    for got, want in zip(result, ref, strict=True):
        assert_close(got, want, F64, f"{name} with NaN/inf")


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", ["complex128", "object", "<U3", "datetime64[s]"])
def test_non_numeric_input_is_a_type_error(backend, name, dtype):
    x = sample(name).astype(dtype) if dtype != "object" else sample(name).astype(object)
    layer = make_layer(name)
    call = (lambda: layer.forward(x, LABELS)) if name == "SoftmaxWithLoss" else (lambda: layer.forward(x))
    with raises(TypeError, name, "expected a real-valued numeric input", str(np.dtype(dtype))):
        call()


@pytest.mark.parametrize("name", LAYERS)
def test_empty_batch_is_a_value_error(backend, name):
    x = np.zeros((0, *SHAPES[name][1:]))
    layer = make_layer(name)
    call = (lambda: layer.forward(x, LABELS[:0])) if name == "SoftmaxWithLoss" else (lambda: layer.forward(x))
    with raises(ValueError, name, "expected a non-empty input", str(x.shape)):
        call()


@pytest.mark.parametrize("name", ["Convolution", "Pooling"])
@pytest.mark.parametrize("shape", [(2, 3, 0, 6), (2, 3, 7, 0)])
def test_empty_image_is_a_value_error(backend, name, shape):
    shape = (shape[0], SHAPES[name][1], *shape[2:])
    with raises(ValueError, name, str(shape)):
        make_layer(name).forward(np.zeros(shape))


def test_int_weights_are_converted_per_call(backend):
    layer = Affine(np.array([[1, 2], [3, 4]]), np.array([0, 1]))
    np.testing.assert_array_equal(layer.forward(np.array([[1.0, 1.0]])), [[4.0, 7.0]])


@pytest.mark.parametrize("layout", VALUE_LAYOUTS)
def test_weight_layout_never_changes_the_result(backend, layout):
    rng = np.random.default_rng(0)
    W, x = rng.standard_normal((5, 3)), rng.standard_normal((4, 5))
    expected = Affine(W, np.zeros(3)).forward(x)
    np.testing.assert_allclose(Affine(as_layout(W, layout), np.zeros(3)).forward(x), expected,
                               rtol=1e-14)


# wrong ndim / counts against the weights: (layer, input shape, fragments of the message)
WRONG_SHAPES = [
    ("Convolution", (3, 7, 6), ["expected input of shape (N, 3, H, W), got shape"]),
    ("Convolution", (1, 3, 3, 7, 6), ["(N, 3, H, W)"]),
    ("Convolution", (3, 2, 7, 6), ["3 channels"]),
    ("Convolution", (3, 4, 7, 6), ["3 channels"]),
    ("Pooling", (2, 7, 6), ["(N, C, H, W)"]),
    ("Pooling", (6,), ["(N, C, H, W)"]),
    ("Affine", (12,), ["(N, 12)"]),
    ("Affine", (3, 11), ["expected input with 12 features per sample"]),
    ("Affine", (3, 13), ["12"]),
    ("Affine", (3, 2, 2, 2), ["12"]),
    ("BatchNormalization", (3, 11), ["expected input with 12 features"]),
    ("BatchNormalization", (3, 3, 4), ["expected input of shape", "(N, 12)"]),
    ("BatchNormalization", (12,), ["(N, 12)"]),
    ("BatchNormalization", (3, 3, 2, 3), ["12"]),
    ("Relu", (), ["(N, ...)"]),
    ("Sigmoid", (), ["(N, ...)"]),
    ("Dropout", (), ["(N, ...)"]),
    ("SoftmaxWithLoss", (1, 3, 4), ["(N, K)"]),
    ("SoftmaxWithLoss", (), ["(N, K)"]),
]


@pytest.mark.parametrize("name, shape, fragments", WRONG_SHAPES)
def test_wrong_shape_names_layer_expected_and_received(backend, name, shape, fragments):
    layer = make_layer(name)
    x = np.ones(shape)
    with raises(ValueError, name, str(shape), *fragments):
        layer.forward(x, LABELS) if name == "SoftmaxWithLoss" else layer.forward(x)


def test_channel_count_message_in_full(backend):
    with pytest.raises(ValueError) as err:
        make_layer("Convolution").forward(np.ones((2, 4, 8, 8)))
    assert str(err.value) == ("Convolution: expected input with 3 channels (N, 3, H, W), "
                              "got shape (2, 4, 8, 8)")


@pytest.mark.parametrize("make, shape, fragments", [
    (lambda: Convolution(np.ones((2, 1, 3, 3)), np.ones(2)), (1, 1, 2, 5), ["3x3", "2x5"]),
    (lambda: Convolution(np.ones((2, 1, 4, 1)), np.ones(2), pad=1), (1, 1, 1, 5), ["4x1", "3x7"]),
    (lambda: Pooling(4, 4, stride=1), (1, 1, 3, 9), ["4x4", "3x9"]),
    (lambda: Pooling(3, 5, stride=1, pad=1), (1, 1, 9, 2), ["3x5", "11x4"]),
], ids=["conv", "conv-pad", "pool", "pool-pad"])
def test_window_larger_than_padded_input(backend, make, shape, fragments):
    layer = make()
    with raises(ValueError, type(layer).__name__, str(shape), "is larger than the padded input",
                *fragments):
        layer.forward(np.ones(shape))


@pytest.mark.parametrize("make, exc, fragments", [
    (lambda: Convolution(np.ones((2, 3, 3)), np.ones(2)), ValueError,
     ["expected W of shape (FN, C, FH, FW)", "(2, 3, 3)"]),
    (lambda: Convolution(np.ones((2, 3, 3, 3)), np.ones(3)), ValueError, ["b", "(2,)", "(3,)"]),
    (lambda: Convolution(np.ones((2, 3, 3, 3)), np.ones((2, 1))), ValueError, ["b", "(2, 1)"]),
    (lambda: Convolution(np.ones((0, 3, 3, 3)), np.ones(0)), ValueError, ["W", "(0, 3, 3, 3)"]),
    (lambda: Convolution(np.ones((2, 3, 3, 3), np.float32), np.ones(2)), TypeError, ["float32", "float64"]),
    (lambda: Convolution(np.ones((2, 3, 3, 3)), np.ones(2, np.float32)), TypeError,
     ["parameters must share one dtype, got W float64, b float32"]),
    (lambda: Convolution(np.ones((2, 3, 3, 3)) * 1j, np.ones(2)), TypeError, ["complex128"]),
    (lambda: Affine(np.ones(12), np.ones(5)), ValueError, ["W", "(12,)"]),
    (lambda: Affine(np.ones((12, 5)), np.ones(4)), ValueError, ["b", "(5,)", "(4,)"]),
    (lambda: Affine(np.ones((12, 5)), np.ones(5, np.float32)), TypeError, ["float32", "float64"]),
    (lambda: BatchNormalization(np.ones((12, 1)), np.ones(12)), ValueError, ["gamma", "(12, 1)"]),
    (lambda: BatchNormalization(np.ones(12), np.ones(11)), ValueError, ["beta", "(12,)", "(11,)"]),
    (lambda: BatchNormalization(np.ones(12), np.ones(12), running_mean=np.ones(11)), ValueError,
     ["running_mean", "(12,)", "(11,)"]),
    (lambda: BatchNormalization(np.ones(12), np.ones(12), running_var=np.ones(13)), ValueError,
     ["running_var", "(12,)", "(13,)"]),
    (lambda: BatchNormalization(np.ones(12), np.ones(12), running_var=np.ones(12, np.float32)),
     TypeError, ["running_var", "float64", "float32"]),
    (lambda: BatchNormalization(np.ones(12), np.ones(12), running_mean=np.ones(12, np.float32)),
     TypeError, ["running_mean must be a float64 ndarray"]),
    (lambda: BatchNormalization(np.ones(12), np.ones(12), running_mean=np.ones(24)[::2]), ValueError,
     ["running_mean", "contiguous"]),
    (lambda: BatchNormalization(np.ones(12), np.ones(12), running_var=[1.0] * 12), TypeError,
     ["running_var", "list"]),
], ids=lambda p: "" if callable(p) or isinstance(p, list) else p.__name__)
def test_bad_weights_are_refused_before_any_kernel(backend, make, exc, fragments):
    layer = make()
    name = type(layer).__name__
    shape = {"Convolution": (2, 3, 5, 5), "Affine": (2, 12), "BatchNormalization": (2, 12)}[name]
    with raises(exc, name, *fragments):
        layer.forward(np.ones(shape))


@pytest.mark.parametrize("make, exc, fragments", [
    (lambda: Convolution(np.ones((1, 1, 1, 1)), np.ones(1), stride=0), ValueError,
     ["stride must be >= 1, got 0"]),
    (lambda: Convolution(np.ones((1, 1, 1, 1)), np.ones(1), stride=-2), ValueError, ["stride", "-2"]),
    (lambda: Convolution(np.ones((1, 1, 1, 1)), np.ones(1), pad=-1), ValueError, ["pad", "-1"]),
    (lambda: Convolution(np.ones((1, 1, 1, 1)), np.ones(1), stride=1.5), TypeError,
     ["stride must be an int", "1.5"]),
    (lambda: Convolution(np.ones((1, 1, 1, 1)), np.ones(1), stride=True), TypeError, ["stride", "bool"]),
    (lambda: Convolution(np.ones((1, 1, 1, 1)), np.ones(1), pad="1"), TypeError, ["pad", "str"]),
    (lambda: Pooling(0, 2), ValueError, ["pool_h", "0"]),
    (lambda: Pooling(2, 2, stride=-1), ValueError, ["stride", "-1"]),
    (lambda: Pooling(2, 2, stride=0), ValueError, ["Pooling: stride must be >= 1"]),
    (lambda: Pooling(2, 3, pad=2), ValueError, ["pad must be smaller than the window", "2x3"]),
    (lambda: Pooling(2.0, 2), TypeError, ["pool_h"]),
    (lambda: Pooling(2, True), TypeError, ["pool_w must be an int"]),
    (lambda: Dropout(1.0), ValueError, ["dropout_ratio must be finite and in [0.0, 1.0)", "1.0"]),
    (lambda: Dropout(-0.1), ValueError, ["dropout_ratio", "-0.1"]),
    (lambda: Dropout(float("nan")), ValueError, ["dropout_ratio", "nan"]),
    (lambda: Dropout("0.5"), TypeError, ["dropout_ratio", "str"]),
    (lambda: BatchNormalization(np.ones(2), np.ones(2), momentum=1.5), ValueError, ["momentum", "1.5"]),
])
def test_bad_hyperparameters_are_refused_at_construction(make, exc, fragments):
    with raises(exc, *fragments):
        make()


@pytest.mark.parametrize("attr, value, exc", [
    ("stride", 0, ValueError), ("pad", -2, ValueError), ("stride", 2.0, TypeError),
])
def test_hyperparameters_changed_after_construction_are_checked_at_forward(backend, attr, value, exc):
    conv = make_layer("Convolution")
    setattr(conv, attr, value)
    with raises(exc, "Convolution", attr):
        conv.forward(sample("Convolution"))
    pool = make_layer("Pooling")
    setattr(pool, attr, value)
    with raises(exc, "Pooling", attr):
        pool.forward(sample("Pooling"))


@pytest.mark.parametrize("name", LAYERS)
def test_backward_without_forward_is_a_runtime_error(backend, name):
    with raises(RuntimeError, name, "forward"):
        make_layer(name).backward(np.ones(SHAPES[name]))


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "SoftmaxWithLoss"])
def test_backward_with_a_dout_of_the_wrong_shape(backend, name):
    layer = make_layer(name)
    out = layer.forward(sample(name))
    bad = np.ones((out.shape[0] + 1, *out.shape[1:]))
    with raises(ValueError, name, "dout", str(out.shape), str(bad.shape)):
        layer.backward(bad)
    with raises(ValueError, name, "dout"):
        layer.backward(np.ones(out.size))


def test_softmax_with_loss_backward_takes_a_real_dout(backend):
    layer = make_layer("SoftmaxWithLoss")
    layer.forward(sample("SoftmaxWithLoss"), LABELS)
    with raises(TypeError, "SoftmaxWithLoss", "dout"):
        layer.backward("1")
    with raises(ValueError, "SoftmaxWithLoss", "dout"):
        layer.backward(float("nan"))


@pytest.mark.parametrize("name, attr, new_shape", [
    ("Convolution", "W", (4, 3, 2, 3)),
    ("Convolution", "W", (4, 3, 3, 1)),
    ("Affine", "W", (12, 4)),
    ("BatchNormalization", "gamma", (6,)),
])
def test_parameter_replaced_between_forward_and_backward(backend, name, attr, new_shape):
    """A kernel never sees a weight whose shape differs from the cached forward's."""
    layer = make_layer(name)
    out = layer.forward(sample(name))
    setattr(layer, attr, np.ones(new_shape))
    if attr == "gamma":
        layer.beta = np.ones(new_shape)
    elif name == "Affine":
        layer.b = np.ones(new_shape[1])
    else:
        layer.b = np.ones(new_shape[0])
    with raises(ValueError, name, attr, "changed between forward() and backward()", str(new_shape)):
        layer.backward(np.ones_like(out))


@pytest.mark.parametrize("name", ["Affine", "Convolution"])
def test_parameter_dtype_changed_between_forward_and_backward(backend, name):
    layer = make_layer(name)
    out = layer.forward(sample(name))
    layer.W, layer.b = layer.W.astype(np.float32), layer.b.astype(np.float32)
    with raises(ValueError, name, "W", "float64, got", "float32"):
        layer.backward(np.ones_like(out))


# ------------------------------------------------------------------ labels and targets

@pytest.mark.parametrize("t, exc, fragments", [
    (np.array([0, 4, 1]), ValueError, ["labels must be in [0, 4), got values in [0, 4]"]),
    (np.array([0, -1, 1]), ValueError, ["[0, 4)", "-1"]),
    (np.array([0, 2**40, 1]), ValueError, ["[0, 4)"]),
    (np.array([0, 3]), ValueError, ["(3,)", "(2,)"]),
    (np.array([0, 3, 1, 2]), ValueError, ["(3,)", "(4,)"]),
    (np.array([[0], [4], [1]]), ValueError, ["[0, 4)", "4"]),
    (np.array([[0, 1], [3, 2], [1, 1]]), ValueError,
     ["expected labels of shape (3,) or (3, 1) or target rows of shape (3, 4)", "got shape (3, 2)"]),
    (np.array([0.0, 3.0, 1.0]), TypeError, ["labels must be integers", "float64"]),
    (np.array([True, False, True]), TypeError, ["bool"]),
    (np.array(["0", "3", "1"]), ValueError, []),
    (np.eye(5)[[0, 3, 1]], ValueError, ["(3, 4)", "(3, 5)"]),
    (np.full((3, 4), np.nan), ValueError, ["target rows must be finite"]),
    (np.where(np.eye(4)[[0, 3, 1]] == 1, np.inf, 0.0), ValueError, ["finite"]),
    (np.eye(4)[[0, 3, 1]] * 1j, TypeError, ["complex128"]),
    (None, ValueError, []),
])
@pytest.mark.parametrize("where", ["SoftmaxWithLoss", "cross_entropy_error", "softmax_loss"])
def test_bad_labels(backend, where, t, exc, fragments):
    x = sample("SoftmaxWithLoss")
    call = {
        "SoftmaxWithLoss": lambda: SoftmaxWithLoss().forward(x, t),
        "cross_entropy_error": lambda: F.cross_entropy_error(F.softmax(x), t),
        "softmax_loss": lambda: F.softmax_loss(x, t),
    }[where]
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert info.type is exc or (t is None or t.dtype.kind == "U"), info.value
    message = str(info.value)
    assert where in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_single_sample_labels(backend):
    x = sample("SoftmaxWithLoss")[0]
    assert SoftmaxWithLoss().forward(x, 2) == pytest.approx(SoftmaxWithLoss().forward(x[None], [2]))
    with raises(ValueError, "SoftmaxWithLoss", "[0, 4)"):
        SoftmaxWithLoss().forward(x, 4)
    with raises(ValueError, "SoftmaxWithLoss"):
        SoftmaxWithLoss().forward(x, [1, 2])


def test_uint8_labels_are_accepted(backend):
    x = sample("SoftmaxWithLoss")
    expected = SoftmaxWithLoss().forward(x, LABELS)
    assert SoftmaxWithLoss().forward(x, LABELS.astype(np.uint8)) == expected


# ------------------------------------------------------------------ functions and util

@pytest.mark.parametrize("call, exc, fragments", [
    (lambda: F.softmax(np.zeros((2, 0))), ValueError, ["softmax", "(2, 0)"]),
    (lambda: F.softmax(3.0), ValueError, ["softmax", "()"]),
    (lambda: F.softmax(np.ones(3) * 1j), TypeError, ["softmax", "complex128"]),
    (lambda: F.sigmoid(np.array(["a"])), TypeError, ["sigmoid", "<U1"]),
    (lambda: F.relu(np.array([None])), TypeError, ["relu", "object"]),
    (lambda: F.sum_squared_error(np.ones(3), np.ones(4)), ValueError, ["sum_squared_error", "(3,)", "(4,)"]),
    (lambda: F.cross_entropy_error(np.ones((2, 3, 4)), [0, 1]), ValueError, ["cross_entropy_error", "(2, 3, 4)"]),
    (lambda: util.im2col(np.ones((1, 1, 2, 2)), 3, 3), ValueError, ["im2col", "3x3", "2x2"]),
    (lambda: util.im2col(np.ones((1, 2, 2)), 1, 1), ValueError, ["im2col", "(1, 2, 2)"]),
    (lambda: util.im2col(np.ones((1, 1, 2, 2)), 1, 1, stride=0), ValueError, ["im2col", "stride"]),
    (lambda: util.col2im(np.ones((4, 9)), (1, 1, 4, 4), 3, 3, stride=2), ValueError,
     ["col2im", "(1, 9)", "(4, 9)"]),
    (lambda: util.col2im(np.ones((4, 9)), (1, 1, 4), 3, 3), ValueError, ["col2im", "(1, 1, 4)"]),
    (lambda: util.col2im(np.ones((4, 9)), (1, 1, 0, 4), 3, 3), ValueError, ["col2im", "0"]),
    (lambda: util.col2im(np.ones((4, 9)), (1, 1, 2, 2), 3, 3), ValueError, ["col2im", "3x3", "2x2"]),
    (lambda: util.col2im(np.ones((4, 9)), (1, 1, 2.0, 2), 3, 3), TypeError, ["col2im"]),
    (lambda: util.conv_output_size(4, 7), ValueError, ["conv_output_size", "7"]),
    (lambda: util.conv_output_size(4, 3, stride=0), ValueError, ["conv_output_size", "stride"]),
    (lambda: util.shuffle_dataset(np.ones((3, 2)), np.ones(4)), ValueError, ["shuffle_dataset", "(3, 2)", "(4,)"]),
    (lambda: util.smooth_curve(np.ones(5)), ValueError, ["smooth_curve", "5"]),
    (lambda: numerical_gradient(lambda w: 0.0, np.ones(3, int)), TypeError, ["numerical_gradient", "int64"]),
    (lambda: numerical_gradient(lambda w: 0.0, [1.0, 2.0]), TypeError, ["numerical_gradient", "list"]),
    (lambda: fastzero.set_backend("cuda"), ValueError, ["cuda", "numpy", "numba"]),
    (lambda: fastzero.set_num_threads(0), ValueError, ["set_num_threads", "0"]),
    (lambda: fastzero.set_num_threads(1.5), TypeError, ["set_num_threads", "float"]),
    (lambda: fastzero.set_num_threads(True), TypeError, ["set_num_threads", "bool"]),
])
def test_public_functions_refuse_bad_input(backend, call, exc, fragments):
    with raises(exc, *fragments):
        call()


def test_numerical_gradient_refuses_a_read_only_array():
    x = np.ones(3)
    x.flags.writeable = False
    with raises(ValueError, "numerical_gradient", "writeable"):
        numerical_gradient(lambda w: float(w.sum()), x)


def test_im2col_col2im_accept_any_layout(backend):
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5))
    with fastzero.use_backend("numpy"):
        ref = util.im2col(x, 3, 2, 2, 1)
        ref_back = util.col2im(ref, x.shape, 3, 2, 2, 1)
    for layout in VALUE_LAYOUTS:
        col = util.im2col(as_layout(x, layout), 3, 2, 2, 1)
        assert_close(col, ref, F64, f"im2col {layout}")
        assert_close(util.col2im(as_layout(ref, layout), x.shape, 3, 2, 2, 1), ref_back, F64,
                     f"col2im {layout}")


# ------------------------------------------------------------------ optimizers

OPTIMIZERS = [SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam]


def _param():
    return np.random.default_rng(0).standard_normal((3, 4))


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


BAD_UPDATES = [
    # (id, params, grads, exception, fragments)
    ("readonly-param", _readonly, lambda g: g, ValueError, ["writeable"]),
    ("complex-param", lambda p: p * 1j, lambda g: g, TypeError, ["complex128"]),
    ("string-param", lambda p: p.astype(str), lambda g: g, TypeError, ["<U"]),
    ("grad-shape", lambda p: p, lambda g: g[:2], ValueError, ["(2, 4)", "(3, 4)"]),
    ("grad-transposed", lambda p: p, lambda g: g.T, ValueError, ["(4, 3)", "(3, 4)"]),
    ("grad-complex", lambda p: p, lambda g: g * 1j, TypeError, ["complex128"]),
    ("grad-object", lambda p: p, lambda g: g.astype(object), TypeError, ["object"]),
]


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", BAD_UPDATES, ids=lambda c: c[0])
def test_optimizer_refuses_bad_arrays_and_updates_nothing(backend, cls, case):
    """A bad entry is refused before *any* parameter is touched: 'a' stays as it was."""
    _, make_p, make_g, exc, fragments = case
    good = _param()
    params = {"a": good, "b": make_p(_param())}
    grads = {"a": np.ones_like(good), "b": make_g(np.ones((3, 4)))}
    opt = cls()
    with raises(exc, f"{cls.__name__}.update", "'b'", *fragments):
        opt.update(params, grads)
    np.testing.assert_array_equal(good, _param())
    assert getattr(opt, "iter", 0) == 0


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizer_layouts_of_grads_give_the_reference_update(backend, cls):
    """Any layout or byte order of the *gradient* gives the reference's update."""
    grad = np.random.default_rng(1).standard_normal((3, 4))
    with fastzero.use_backend("numpy"):
        ref = _param()
        cls(lr=0.1).update({"W": ref}, {"W": grad})
    for layout in VALUE_LAYOUTS:
        p = _param()
        cls(lr=0.1).update({"W": p}, {"W": as_layout(grad, layout)})
        assert_close(p, ref, F64, f"{cls.__name__} grad {layout}")


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizer_layouts_of_params_are_updated_in_place(backend, cls):
    """A Fortran, strided, reversed or byte-swapped float parameter is updated in place
    (as the book's ``params[key] -= ...`` does), to the reference's values, over two steps."""
    grads = [np.random.default_rng(s).standard_normal((3, 4)) for s in (1, 2)]
    with fastzero.use_backend("numpy"):
        ref, opt = _param(), cls(lr=0.1)
        for g in grads:
            opt.update({"W": ref}, {"W": g})
    for layout in ("F", "strided", "negative_stride", "byteswapped"):
        p = as_layout(_param(), layout)
        params, opt = {"W": p}, cls(lr=0.1)
        for g in grads:
            opt.update(params, {"W": g})
        assert params["W"] is p
        assert_close(p, ref, F64, f"{cls.__name__} param {layout}")


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizer_key_mismatch_and_bad_hyperparameters(backend, cls):
    with raises(ValueError, f"{cls.__name__}.update", "'W'", "'V'"):
        cls().update({"W": _param()}, {"V": _param()})
    for lr, exc in ((-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
                    ("0.1", TypeError), (None, TypeError)):
        with raises(exc, cls.__name__, "lr"):
            cls(lr=lr)
    opt = cls()
    opt.lr = -1.0  # changed after construction: checked at update
    p = _param()
    with raises(ValueError, cls.__name__, "lr"):
        opt.update({"W": p}, {"W": np.ones_like(p)})
    np.testing.assert_array_equal(p, _param())


def test_optimizer_state_does_not_follow_a_reshaped_parameter(backend):
    opt = Adam()
    opt.update({"W": np.ones(3)}, {"W": np.ones(3)})
    with raises(ValueError, "Adam.update", "(4,)", "(3,)"):
        opt.update({"W": np.ones(4)}, {"W": np.ones(4)})


def test_optimizer_hyperparameter_ranges():
    with raises(ValueError, "Momentum", "momentum"):
        Momentum(momentum=1.5)
    with raises(ValueError, "RMSprop", "decay_rate"):
        RMSprop(decay_rate=-0.5)
    with raises(ValueError, "Adam", "beta1"):
        Adam(beta1=1.0)
    with raises(ValueError, "Adam", "beta2"):
        Adam(beta2=float("nan"))


# ------------------------------------------------------------------ networks and trainer

def small_convnet(dtype=np.float64):
    return SimpleConvNet(input_dim=(1, 8, 8),
                         conv_param={"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1},
                         hidden_size=5, output_size=4, dtype=dtype, seed=0)


NETS = {
    "SimpleConvNet": (small_convnet, (6, 1, 8, 8)),
    "TwoLayerNet": (lambda: TwoLayerNet(10, 5, 4, seed=0), (6, 10)),
    "MultiLayerNet": (lambda: MultiLayerNet(10, [6, 5], 4, seed=0), (6, 10)),
    "MultiLayerNetExtend": (lambda: MultiLayerNetExtend(10, [6, 5], 4, use_batchnorm=True,
                                                        use_dropout=True, seed=0), (6, 10)),
}
NET_LABELS = np.array([0, 1, 2, 3, 0, 1])


@pytest.mark.parametrize("net_name", NETS)
def test_network_refuses_bad_input_shapes(backend, net_name):
    make, shape = NETS[net_name]
    net = make()
    x = np.random.default_rng(0).standard_normal(shape)
    for bad in (x[0], x[:0], np.concatenate([x, x], axis=1), x[:, :-1]):
        with pytest.raises(ValueError, match=re.escape(str(bad.shape))):
            net.predict(bad)
        with pytest.raises(ValueError, match=re.escape(str(bad.shape))):
            net.gradient(bad, NET_LABELS[:len(bad)])


def small_deep_convnet():
    return DeepConvNet(input_dim=(1, 8, 8), hidden_size=5, output_size=4, seed=0)


@pytest.mark.parametrize("make", [small_convnet, small_deep_convnet], ids=["Simple", "Deep"])
@pytest.mark.parametrize("hw", [(9, 9), (8, 9), (7, 8)])
def test_convnet_refuses_images_of_another_size(backend, make, hw):
    """A 9x9 image on an 8x8 net would be cropped silently by the pooling; every
    entry point refuses it, naming the net, input_dim and the received shape."""
    net = make()  # input_dim (1, 8, 8)
    x = np.random.default_rng(0).standard_normal((6, 1, *hw))
    name = type(net).__name__
    for call in (net.predict, lambda x: net.loss(x, NET_LABELS),
                 lambda x: net.gradient(x, NET_LABELS), lambda x: net.accuracy(x, NET_LABELS)):
        with raises(ValueError, name, "(1, 8, 8)", str(x.shape)):
            call(x)


@pytest.mark.parametrize("net_name", NETS)
def test_network_input_layouts_and_dtypes_give_the_clean_result(backend, net_name):
    """Strided, Fortran, read-only, byte-swapped, uint8, int, bool and float32 samples
    give exactly the scores and gradients of the same values as a C-contiguous float64 array."""
    make, shape = NETS[net_name]
    net = make()
    x = np.random.default_rng(0).integers(0, 3, shape).astype(np.float64)  # exact in every dtype

    initial = {k: v.copy() for k, v in net.state().items()}

    def scores_and_grads(inputs):
        for k, v in net.state().items():  # batch-norm statistics move in training mode
            np.copyto(v, initial[k])
        np.random.seed(0)  # the dropout masks
        return net.predict(inputs), net.gradient(inputs, NET_LABELS)

    cases = {layout: (as_layout(x, layout), x) for layout in VALUE_LAYOUTS}
    cases.update({dtype: (x.astype(dtype), x) for dtype in ("uint8", "int32", "float32")})
    cases["bool"] = (x > 1, (x > 1).astype(np.float64))
    for name, (given, clean) in cases.items():
        expected_scores, expected_grads = scores_and_grads(clean)
        scores, grads = scores_and_grads(given)
        assert scores.dtype == F64, name
        np.testing.assert_array_equal(scores, expected_scores, err_msg=name)
        for key in expected_grads:
            np.testing.assert_array_equal(grads[key], expected_grads[key], err_msg=f"{name} d{key}")


@pytest.mark.parametrize("net_name", NETS)
@pytest.mark.parametrize("t", [NET_LABELS[:3], np.full(6, 4), np.full(6, -1), NET_LABELS.astype(float),
                               np.eye(5)[NET_LABELS]], ids=["short", "too-high", "negative", "float", "onehot-width"])
def test_network_loss_and_gradient_refuse_bad_labels(backend, net_name, t):
    make, shape = NETS[net_name]
    net = make()
    before = {k: v.copy() for k, v in net.params.items()}
    x = np.random.default_rng(0).standard_normal(shape)
    with pytest.raises((ValueError, TypeError), match="SoftmaxWithLoss"):
        net.loss(x, t)
    with pytest.raises((ValueError, TypeError), match="SoftmaxWithLoss"):
        net.gradient(x, t)
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("t", [NET_LABELS[:1], NET_LABELS[:3], np.r_[NET_LABELS, NET_LABELS],
                               np.full(6, 7), np.eye(3)[[0, 1, 2, 0, 1, 2]]],
                         ids=["length-1", "short", "long", "out-of-range", "onehot-width"])
def test_network_accuracy_refuses_bad_labels(backend, t):
    net = small_convnet()
    x = np.random.default_rng(0).standard_normal((6, 1, 8, 8))
    with raises(ValueError, "accuracy"):
        net.accuracy(x, t)


def test_network_accuracy_counts_the_partial_last_batch(backend):
    net = small_convnet()
    x = np.random.default_rng(0).standard_normal((7, 1, 8, 8))
    t = np.argmax(net.predict(x), axis=1)
    assert net.accuracy(x, t, batch_size=3) == 1.0
    t[-1] = (t[-1] + 1) % 4
    assert net.accuracy(x, t, batch_size=3) == pytest.approx(6 / 7)


@pytest.mark.parametrize("kwargs, exc", [
    (dict(input_dim=(1, 2, 2)), ValueError),
    (dict(dtype=np.int32), TypeError),
    (dict(dtype=np.float16), TypeError),
])
def test_network_constructor_refuses_bad_geometry_and_dtype(kwargs, exc):
    with pytest.raises(exc):
        SimpleConvNet(**kwargs)


def _trainer(**kwargs):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((20, 10)), rng.integers(0, 4, 20)
    args = dict(network=TwoLayerNet(10, 5, 4, seed=0), x_train=x, t_train=t, x_test=x, t_test=t,
                epochs=1, mini_batch_size=5, verbose=False)
    args.update(kwargs)
    return Trainer(**args)


@pytest.mark.parametrize("kwargs, exc, fragment", [
    (dict(t_train=np.zeros(19, int)), ValueError, "20 training samples but 19 labels"),
    (dict(t_test=np.zeros(3, int)), ValueError, "3 labels"),
    (dict(x_train=np.zeros((0, 10)), t_train=np.zeros(0, int)), ValueError, "empty"),
    (dict(mini_batch_size=0), ValueError, "mini_batch_size"),
    (dict(mini_batch_size=2.5), TypeError, "mini_batch_size"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(evaluate_sample_num_per_epoch=0), ValueError, "evaluate_sample_num_per_epoch"),
    (dict(optimizer="adamw"), ValueError, "adamw"),
    (dict(optimizer=object()), TypeError, "update"),
])
def test_trainer_refuses_bad_setup(kwargs, exc, fragment):
    with raises(exc, "Trainer", fragment):
        _trainer(**kwargs)


def test_trainer_refuses_labels_out_of_range_before_updating(backend):
    trainer = _trainer(t_train=np.full(20, 9))
    before = {k: v.copy() for k, v in trainer.network.params.items()}
    with raises(ValueError, "SoftmaxWithLoss", "[0, 4)"):
        trainer.train_step()
    for k, v in trainer.network.params.items():
        np.testing.assert_array_equal(v, before[k])
    assert trainer.current_iter == 0 and trainer.train_loss_list == []


# ------------------------------------------------------------------ valid edge geometry

CONV_EDGES = [
    # x shape, W shape, stride, pad
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0),          # 1x1 everything
    ((2, 3, 5, 4), (2, 3, 5, 4), 1, 0),          # window == input: one output pixel
    ((2, 3, 3, 2), (2, 3, 5, 4), 1, 1),          # window == padded input
    ((1, 2, 4, 4), (2, 2, 3, 3), 9, 0),          # stride larger than the image
    ((2, 2, 7, 6), (3, 2, 3, 2), 5, 0),          # stride skips columns; ragged right edge
    ((1, 2, 3, 3), (2, 2, 2, 2), 1, 4),          # padding wider than the filter: all-pad windows
    ((2, 3, 6, 1), (2, 3, 3, 1), 2, 0),          # one column
    ((3, 1, 2, 9), (1, 1, 2, 9), 1, 0),          # one output per row, wide filter
    ((30, 3, 28, 28), (4, 3, 3, 3), 1, 1),       # batch larger than one kernel chunk
]


@pytest.mark.parametrize("x_shape, w_shape, stride, pad", CONV_EDGES)
def test_convolution_edge_geometry_matches_reference(numba_backend, x_shape, w_shape, stride, pad):
    rng = np.random.default_rng(2)
    x, W, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    results = {}
    for name in ("numpy", numba_backend):
        with fastzero.use_backend(name):
            layer = Convolution(W, b, stride, pad)
            out = layer.forward(x)
            dout = rng.standard_normal(out.shape) if name == "numpy" else results["numpy"][-1]
            dx = layer.backward(dout)
            col = util.im2col(x, w_shape[2], w_shape[3], stride, pad)
            back = util.col2im(col, x_shape, w_shape[2], w_shape[3], stride, pad)
            results[name] = [out, dx, layer.dW, layer.db, col, back, dout]
    for got, want in zip(results[numba_backend], results["numpy"], strict=True):
        assert_close(got, want, F64, f"conv {x_shape} {w_shape} s{stride} p{pad}")


POOL_EDGES = [
    # x shape, pool_h, pool_w, stride, pad
    ((1, 1, 1, 1), 1, 1, 1, 0),
    ((2, 3, 5, 4), 5, 4, 1, 0),
    ((2, 3, 3, 3), 4, 4, 1, 1),
    ((1, 2, 4, 4), 2, 2, 9, 0),
    ((1, 2, 3, 3), 3, 3, 1, 2),
    ((2, 2, 7, 6), 3, 2, 2, 1),
    ((2, 3, 2, 9), 2, 9, 1, 0),
    ((1, 1, 8, 16), 8, 16, 1, 0),                # 128-cell window: largest int8 argmax
    ((1, 1, 9, 15), 9, 15, 1, 0),                # 135 cells: int16 argmax
    ((1, 1, 182, 181), 182, 181, 1, 0),          # 32942 cells: int32 argmax
]


@pytest.mark.parametrize("x_shape, ph, pw, stride, pad", POOL_EDGES)
def test_pooling_edge_geometry_matches_reference(numba_backend, x_shape, ph, pw, stride, pad):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    x[..., -1, -1] = 10.0  # the maximum in the last cell of the window: the largest argmax
    dout = None
    results = {}
    for name in ("numpy", numba_backend):
        with fastzero.use_backend(name):
            layer = Pooling(ph, pw, stride, pad)
            out = layer.forward(x)
            dout = rng.standard_normal(out.shape) if dout is None else dout
            results[name] = [out, layer.backward(dout)]
    for got, want in zip(results[numba_backend], results["numpy"], strict=True):
        assert_close(got, want, F64, f"pool {x_shape} {ph}x{pw} s{stride} p{pad}")


@pytest.mark.parametrize("name, shape", [
    ("Affine", (1, 1)), ("BatchNormalization", (1, 3)), ("BatchNormalization", (2, 1)),
    ("SoftmaxWithLoss", (2, 1)), ("Relu", (1,)), ("Sigmoid", (1,)), ("Dropout", (1,)),
])
def test_smallest_shapes_match_reference(numba_backend, name, shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    results = {}
    for b in ("numpy", numba_backend):
        with fastzero.use_backend(b):
            if name == "Affine":
                layer = Affine(np.full((1, 1), 2.0), np.ones(1))
            elif name == "BatchNormalization":
                layer = BatchNormalization(np.ones(shape[1]), np.zeros(shape[1]))
            else:
                layer = make_layer(name)
            if name == "SoftmaxWithLoss":
                results[b] = [np.array(layer.forward(x, np.zeros(shape[0], int))), layer.backward()]
                continue
            np.random.seed(0)
            out = layer.forward(x)
            results[b] = [out, layer.backward(np.ones_like(out))]
    for got, want in zip(results[numba_backend], results["numpy"], strict=True):
        assert_close(got, want, F64, f"{name} {shape}")


def test_broadcast_input_is_read_correctly(backend):
    """A zero-stride (np.broadcast_to) batch gives the same rows as a real copy."""
    row = np.random.default_rng(5).standard_normal(12)
    layer = make_layer("Affine")
    out = layer.forward(np.broadcast_to(row, (4, 12)))
    np.testing.assert_array_equal(out, make_layer("Affine").forward(np.tile(row, (4, 1))))
