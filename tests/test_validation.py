"""Input validation: every bad input is rejected in Python, naming the layer; odd
but valid inputs (ints, float32, Fortran order, views, read-only, byte-swapped)
are converted and give the same numbers."""
import numpy as np
import pytest

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

# Backends these tests run on; add "numba" once the numba backend is in.
BACKENDS = ["numpy", "numba"]


@pytest.fixture(params=BACKENDS)
def on(request):
    with fastzero.use_backend(request.param):
        yield request.param


def conv(rng, c=3, fh=3, fw=3, stride=1, pad=0):
    return Convolution(rng.standard_normal((2, c, fh, fw)), np.zeros(2), stride, pad)


# ---------------------------------------------------------------- shapes

def test_convolution_channel_message(on, rng):
    with pytest.raises(ValueError) as err:
        conv(rng).forward(np.ones((2, 4, 8, 8)))
    assert str(err.value) == "Convolution: expected input with 3 channels (N, 3, H, W), got shape (2, 4, 8, 8)"


@pytest.mark.parametrize("make, x, match", [
    (lambda r: conv(r), np.ones((3, 8, 8)), r"Convolution: expected input of shape \(N, 3, H, W\), got shape \(3, 8, 8\)"),
    (lambda r: conv(r), np.ones((0, 3, 8, 8)), r"Convolution: expected a non-empty input"),
    (lambda r: conv(r, fh=5, pad=1), np.ones((1, 3, 2, 9)), r"Convolution: filter 5x3 is larger than the padded input 4x11"),
    (lambda r: Pooling(3, 2), np.ones((1, 2, 2, 5)), r"Pooling: window 3x2 is larger than the padded input 2x5"),
    (lambda r: Pooling(2, 2), np.ones((2, 8, 8)), r"Pooling: expected input of shape \(N, C, H, W\), got shape \(2, 8, 8\)"),
    (lambda r: Affine(np.ones((6, 2)), np.zeros(2)), np.ones((3, 5)), r"Affine: expected input with 6 features per sample .*got shape \(3, 5\)"),
    (lambda r: Affine(np.ones((6, 2)), np.zeros(2)), np.ones(6), r"Affine: expected input of shape \(N, 6\), got shape \(6,\)"),
    (lambda r: Affine(np.ones((6, 2)), np.zeros(2)), np.ones((0, 6)), r"Affine: expected a non-empty input"),
    (lambda r: BatchNormalization(np.ones(4), np.zeros(4)), np.ones((2, 5)), r"BatchNormalization: expected input with 4 features"),
    (lambda r: BatchNormalization(np.ones(4), np.zeros(4)), np.ones((2, 2, 2)), r"BatchNormalization: expected input of shape"),
    (lambda r: Relu(), np.ones((0, 3)), r"Relu: expected a non-empty input"),
    (lambda r: Sigmoid(), np.ones(0), r"Sigmoid: expected a non-empty input"),
    (lambda r: Dropout(), np.ones((0, 2)), r"Dropout: expected a non-empty input"),
])
def test_bad_input_shapes(on, rng, make, x, match):
    with pytest.raises(ValueError, match=match):
        make(rng).forward(x)


@pytest.mark.parametrize("W, b, match", [
    (np.ones((2, 3, 3)), np.zeros(2), r"Convolution: expected W of shape \(FN, C, FH, FW\), got shape \(2, 3, 3\)"),
    (np.ones((2, 3, 3, 3)), np.zeros(3), r"Convolution: expected b of shape \(2,\), got shape \(3,\)"),
    (np.ones((2, 3, 3, 3)), np.zeros(2, np.float32), r"Convolution: parameters must share one dtype, got W float64, b float32"),
])
def test_bad_convolution_weights(on, W, b, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Convolution(W, b).forward(np.ones((1, 3, 4, 4)))


def test_bad_affine_and_batchnorm_weights(on):
    with pytest.raises(ValueError, match=r"Affine: expected b of shape \(2,\)"):
        Affine(np.ones((3, 2)), np.zeros(3)).forward(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"BatchNormalization: expected beta \(like gamma\) of shape \(3,\)"):
        BatchNormalization(np.ones(3), np.zeros(2)).forward(np.ones((2, 3)))
    layer = BatchNormalization(np.ones(3), np.zeros(3), running_mean=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="BatchNormalization: running_mean must be a float64 ndarray"):
        layer.forward(np.ones((2, 3)))
    layer = BatchNormalization(np.ones(3), np.zeros(3), running_var=np.zeros(4))
    with pytest.raises(ValueError, match=r"BatchNormalization: expected running_var of shape \(3,\)"):
        layer.forward(np.ones((2, 3)))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(stride=0), ValueError, "Convolution: stride must be >= 1, got 0"),
    (dict(stride=-2), ValueError, "Convolution: stride must be >= 1"),
    (dict(stride=1.5), TypeError, "Convolution: stride must be an int"),
    (dict(pad=-1), ValueError, "Convolution: pad must be >= 0"),
])
def test_bad_convolution_geometry(rng, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Convolution(np.ones((1, 1, 2, 2)), np.zeros(1), **kwargs)


def test_geometry_changed_after_construction_is_checked(on):
    layer = Convolution(np.ones((1, 1, 2, 2)), np.zeros(1))
    layer.stride = 0
    with pytest.raises(ValueError, match="Convolution: stride"):
        layer.forward(np.ones((1, 1, 4, 4)))


@pytest.mark.parametrize("args, exc, match", [
    ((2, 2, 0), ValueError, "Pooling: stride must be >= 1"),
    ((0, 2), ValueError, "Pooling: pool_h must be >= 1"),
    ((2, 2, 2, 2), ValueError, "Pooling: pad must be smaller than the window"),
    ((2, True), TypeError, "Pooling: pool_w must be an int"),
])
def test_bad_pooling_geometry(args, exc, match):
    with pytest.raises(exc, match=match):
        Pooling(*args)


def test_backward_checks_dout(on, rng):
    layer = conv(rng)
    out = layer.forward(rng.standard_normal((2, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"Convolution: expected dout .* of shape \(2, 2, 3, 3\), got shape \(2, 2, 3, 4\)"):
        layer.backward(np.ones((2, 2, 3, 4)))
    layer.W = np.ones((2, 3, 2, 2))  # replaced with another shape between forward and backward
    with pytest.raises(ValueError, match=r"Convolution: W changed between forward\(\) and backward\(\)"):
        layer.backward(np.ones(out.shape))
    layer.W = np.ones((2, 3, 3, 3), np.float32)
    layer.b = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="float64, got .* float32"):
        layer.backward(np.ones(out.shape))
    pool = Pooling(2, 2, 2)
    pool.forward(np.ones((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="Pooling: expected dout"):
        pool.backward(np.ones((1, 1, 4, 4)))


# ---------------------------------------------------------------- SoftmaxWithLoss targets

@pytest.mark.parametrize("t, exc, match", [
    (np.array([0, 3]), ValueError, r"SoftmaxWithLoss: labels must be in \[0, 3\), got values in \[0, 3\]"),
    (np.array([-1, 0]), ValueError, r"SoftmaxWithLoss: labels must be in \[0, 3\)"),
    (np.array([0, 1, 2]), ValueError, r"SoftmaxWithLoss: expected labels of shape \(2,\) or \(2, 1\) or target rows of shape \(2, 3\)"),
    (np.array([[0, 1, 0]]), ValueError, r"SoftmaxWithLoss: expected labels"),
    (np.array([[0, 1, np.inf], [1, 0, 0]]), ValueError, "SoftmaxWithLoss: target rows must be finite"),
    (np.array([0.0, 1.0]), TypeError, "SoftmaxWithLoss: labels must be integers"),
])
def test_bad_targets(on, t, exc, match):
    with pytest.raises(exc, match=match):
        SoftmaxWithLoss().forward(np.ones((2, 3)), t)


def test_uint8_labels_accepted(on):
    x = np.array([[1.0, 2.0], [0.0, -1.0]])
    expected = SoftmaxWithLoss().forward(x, np.array([1, 0]))
    assert SoftmaxWithLoss().forward(x, np.array([1, 0], np.uint8)) == expected


# ---------------------------------------------------------------- dtypes and memory layout

@pytest.mark.parametrize("bad", [np.ones((2, 3), complex), np.array([["a", "b"]]), np.array([[None, 1]])])
def test_non_numeric_input_rejected(on, bad):
    with pytest.raises(TypeError, match="Relu: expected a real-valued numeric input"):
        Relu().forward(bad)


def test_int_and_bool_input_become_float64(on, rng):
    layer = Convolution(rng.standard_normal((2, 1, 2, 2)), np.zeros(2))
    xi = rng.integers(-3, 4, size=(2, 1, 4, 4))
    out = layer.forward(xi)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, layer.forward(xi.astype(np.float64)))
    assert Relu().forward(np.array([[True, False]])).dtype == np.float64
    assert Pooling(2, 2, 2).forward(np.ones((1, 1, 2, 2), np.int32)).dtype == np.float64


def test_int_weights_are_converted_per_call(on):
    layer = Affine(np.array([[1, 2], [3, 4]]), np.array([0, 1]))
    np.testing.assert_array_equal(layer.forward(np.array([[1.0, 1.0]])), [[4.0, 7.0]])


def layouts(x):
    """The same values as ``x`` in awkward memory layouts."""
    fortran = np.asfortranarray(x)
    padded = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
    padded[..., ::2] = x
    strided = padded[..., ::2]
    readonly = x.copy()
    readonly.flags.writeable = False
    swapped = x.astype(x.dtype.newbyteorder(">" if np.little_endian else "<"))
    return {"fortran": fortran, "strided": strided, "readonly": readonly, "byteswapped": swapped}


CASES = {
    "Convolution": lambda r: Convolution(r.standard_normal((2, 3, 3, 2)), r.standard_normal(2), 2, 1),
    "Pooling": lambda r: Pooling(2, 3, 1, 1),
    "Affine": lambda r: Affine(r.standard_normal((3 * 5 * 6, 4)), r.standard_normal(4)),
    "BatchNormalization": lambda r: BatchNormalization(r.standard_normal(90), r.standard_normal(90)),
    "Relu": lambda r: Relu(),
    "Sigmoid": lambda r: Sigmoid(),
}


@pytest.mark.parametrize("name", list(CASES))
def test_memory_layouts_give_the_same_numbers(on, rng, name):
    x = rng.standard_normal((2, 3, 5, 6))
    reference = CASES[name](np.random.default_rng(1))
    expected = reference.forward(x)
    dout_like = rng.standard_normal(expected.shape)
    expected_dx = reference.backward(dout_like)
    for label, variant in layouts(x).items():
        layer = CASES[name](np.random.default_rng(1))
        np.testing.assert_array_equal(layer.forward(variant), expected, err_msg=label)
        dx = layer.backward(layouts(dout_like)[label])
        np.testing.assert_array_equal(dx, expected_dx, err_msg=label)


def test_layouts_of_weights(on, rng):
    W = rng.standard_normal((5, 3))
    x = rng.standard_normal((4, 5))
    expected = Affine(W, np.zeros(3)).forward(x)
    for label, variant in layouts(W).items():
        np.testing.assert_allclose(Affine(variant, np.zeros(3)).forward(x), expected,
                                   rtol=1e-14, err_msg=label)


def test_float32_input_keeps_float32(on, rng):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    for name in ("Pooling", "Relu", "Sigmoid"):
        assert CASES[name](rng).forward(x).dtype == np.float32, name
    assert Dropout().forward(x).dtype == np.float32
    assert Dropout().forward(x, train_flg=False).dtype == np.float32
    assert SoftmaxWithLoss().forward(x[:, 0, 0], np.array([0, 1])) > 0


def test_input_not_modified(on, rng):
    x = rng.standard_normal((2, 3, 5, 6))
    before = x.copy()
    for make in CASES.values():
        layer = make(rng)
        out = layer.forward(x)
        layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(x, before)


def test_bad_dropout_ratio():
    with pytest.raises(ValueError, match=r"Dropout: dropout_ratio must be finite and in \[0.0, 1.0\)"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="BatchNormalization: momentum"):
        BatchNormalization(np.ones(2), np.zeros(2), momentum=2)
