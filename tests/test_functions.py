"""The book's functions (activations, losses) and numerical_gradient."""
import warnings

import numpy as np
import pytest

from fastzero.functions import (
    cross_entropy_error,
    identity_function,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax,
    softmax_loss,
    step_function,
    sum_squared_error,
)
from fastzero.gradient import numerical_gradient


def test_step_identity_relu():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(step_function(x), [0, 0, 1])
    assert step_function(x).dtype.kind == "i"
    assert identity_function(x) is x
    np.testing.assert_array_equal(relu(x), [0, 0, 2])
    np.testing.assert_array_equal(relu_grad(x), [0, 1, 1])  # the book: 1 where x >= 0


def test_sigmoid_values_and_no_overflow_warning(backend):
    x = np.array([-1000.0, -30.0, 0.0, 2.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sigmoid(x)
        assert sigmoid(-1000.0) == 0.0
        assert sigmoid(np.float32(-1000.0)) == 0.0
    np.testing.assert_allclose(y, [0.0, np.exp(-30.0) / (1 + np.exp(-30.0)), 0.5,
                                   1 / (1 + np.exp(-2.0)), 1.0], rtol=1e-14)
    np.testing.assert_allclose(sigmoid_grad(x), y * (1 - y), rtol=1e-14)
    assert sigmoid(np.ones((2, 3), np.float32)).dtype == np.float32
    assert sigmoid([1, 2]).dtype == np.float64


def test_softmax_stable_for_large_logits(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y1 = softmax(np.array([1e4, 1e4 + 1.0, 1e4 - 1.0]))
        y2 = softmax(np.array([[1e4, 1e4 + 1.0, 1e4 - 1.0], [-1e4, 0.0, 1e4]]))
    e = np.exp([0.0, 1.0, -1.0])
    np.testing.assert_allclose(y1, e / e.sum(), rtol=1e-14)
    np.testing.assert_allclose(y2[0], e / e.sum(), rtol=1e-14)
    np.testing.assert_allclose(y2[1], [0.0, 0.0, 1.0], atol=1e-300)
    np.testing.assert_allclose(y2.sum(axis=1), 1.0, rtol=1e-15)
    assert softmax(np.zeros((2, 3), np.float32)).dtype == np.float32


def test_softmax_last_axis_of_3d(backend, rng):
    x = rng.standard_normal((2, 3, 4))
    e = np.exp(x)
    np.testing.assert_allclose(softmax(x), e / e.sum(axis=-1, keepdims=True), rtol=1e-14)


def test_cross_entropy_labels_equal_one_hot_and_hand_value():
    y = np.array([[0.1, 0.6, 0.3], [0.8, 0.1, 0.1]])
    t = np.array([1, 2])
    expected = -(np.log(0.6 + 1e-7) + np.log(0.1 + 1e-7)) / 2
    assert cross_entropy_error(y, t) == pytest.approx(expected, rel=1e-15)
    assert cross_entropy_error(y, np.eye(3)[t]) == cross_entropy_error(y, t)
    # a single sample: a label or a one-hot vector
    assert cross_entropy_error(y[0], 1) == pytest.approx(-np.log(0.6 + 1e-7), rel=1e-15)
    assert cross_entropy_error(y[0], np.array([0, 1, 0])) == cross_entropy_error(y[0], 1)


def test_cross_entropy_rejects_bad_targets():
    y = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"cross_entropy_error: labels must be in \[0, 3\)"):
        cross_entropy_error(y, np.array([0, 3]))
    with pytest.raises(ValueError, match="cross_entropy_error: expected labels"):
        cross_entropy_error(y, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="finite"):
        cross_entropy_error(y, np.array([[0.5, np.nan, 0], [0, 0, 1]]))
    with pytest.raises(TypeError, match="integers"):
        cross_entropy_error(y, np.array([0.0, 1.0]))


def test_softmax_loss_matches_composition(backend, rng):
    x = rng.standard_normal((4, 5))
    t = np.array([0, 4, 2, 2])
    assert softmax_loss(x, t) == pytest.approx(cross_entropy_error(softmax(x), t), rel=1e-14)
    assert softmax_loss(x, np.eye(5)[t]) == pytest.approx(softmax_loss(x, t), rel=1e-15)


def test_sum_squared_error_book_example():
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
    assert sum_squared_error(np.array(y), np.array(t)) == pytest.approx(0.0975, rel=1e-12)
    with pytest.raises(ValueError, match="sum_squared_error"):
        sum_squared_error(np.ones(3), np.ones(4))


# ---------------------------------------------------------------- numerical_gradient

def test_numerical_gradient_any_shape(rng):
    x = rng.standard_normal((2, 3, 4))
    a = rng.standard_normal(x.shape)
    grad = numerical_gradient(lambda z: np.sum(a * z ** 3), x)
    np.testing.assert_allclose(grad, 3 * a * x ** 2, rtol=1e-6, atol=1e-8)


def test_numerical_gradient_book_example():
    grad = numerical_gradient(lambda x: x[0] ** 2 + x[1] ** 2, np.array([3.0, 4.0]))
    np.testing.assert_allclose(grad, [6.0, 8.0], rtol=1e-9)


def test_numerical_gradient_restores_x_exactly(rng):
    x = rng.standard_normal((3, 3))
    before = x.copy()
    numerical_gradient(lambda z: float(np.sum(np.sin(z))), x)
    np.testing.assert_array_equal(x, before)

    calls = []

    def explode(z):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return float(z.sum())

    with pytest.raises(RuntimeError):
        numerical_gradient(explode, x)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_needs_a_writeable_float_array():
    with pytest.raises(TypeError, match="float ndarray"):
        numerical_gradient(np.sum, np.array([1, 2]))
    x = np.ones(2)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        numerical_gradient(np.sum, x)
