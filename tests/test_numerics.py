"""Numerical safety: softmax, the losses and sigmoid stay finite and warning-free at extremes.

Every check runs with warnings turned into errors and numpy's overflow,
invalid and divide-by-zero floating-point errors raising, on both backends
and in float32 and float64. Those filters only reach NumPy code, not numba's
compiled kernels: what the numba backend computes is checked by its values.
Values are compared with a float64 formula written here (log-sum-exp), not
with either backend.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pytest

import fastzero
from fastzero import functions as F
from fastzero.layers import BatchNormalization, Sigmoid, SoftmaxWithLoss
from layouts import assert_close

DTYPES = [np.float32, np.float64]

#: Logit rows of magnitude 1e4: one dominant class, a tie of huge values, all very
#: negative, mixed signs, and a row of equal values.
LOGITS = np.array([
    [1e4, -1e4, 0.0, 5e3],
    [-1e4, -1e4, -1e4, -1e4],
    [1e4, 1e4, 1e4, -1e4],
    [-1e4, 1e4, -9999.0, 3.0],
    [2.0, 2.0, 2.0, 2.0],
])
LABELS = np.array([1, 0, 3, 2, 1])  # mostly the *unlikely* class: the loss is at its cap


@contextmanager
def strict():
    """Warnings are errors; overflow, invalid and divide-by-zero raise FloatingPointError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            yield


def softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return np.exp(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


def book_loss64(x, t):
    y = softmax64(x)
    return float(-np.sum(np.log(y[np.arange(len(t)), t] + 1e-7)) / len(t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_huge_logits_is_finite_and_exact(backend, dtype):
    x = LOGITS.astype(dtype)
    with strict():
        y = F.softmax(x)
        y1 = F.softmax(x[3])
        y3 = F.softmax(np.stack([x, -x]))
    assert y.dtype == dtype and np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    assert_close(y, softmax64(x), dtype, "softmax")
    assert_close(y1, softmax64(x[3]), dtype, "softmax 1-D")
    assert_close(y3, softmax64(np.stack([x, -x])), dtype, "softmax 3-D")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_losses_of_huge_logits_are_finite(backend, dtype):
    x = LOGITS.astype(dtype)
    expected = book_loss64(x, LABELS)
    with strict():
        loss_fn = F.softmax_loss(x, LABELS)
        loss_ce = F.cross_entropy_error(F.softmax(x), LABELS)
        layer = SoftmaxWithLoss()
        loss_layer = layer.forward(x, np.eye(4)[LABELS])
        dx = layer.backward()
    for loss in (loss_fn, loss_ce, loss_layer):
        assert np.isfinite(loss)
        assert loss == pytest.approx(expected, rel=1e-6 if dtype is np.float64 else 1e-4)
    assert dx.dtype == dtype and np.isfinite(dx).all()
    assert_close(dx, (softmax64(x) - np.eye(4)[LABELS]) / len(LABELS), dtype, "SoftmaxWithLoss dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_logits_spanning_the_float_range(backend, dtype):
    """Logits of opposite sign near the largest float: ``x - max`` must not overflow
    into a warning (its exact value, -inf after rounding, gives the right 0)."""
    big = np.finfo(dtype).max / 2 * 1.5
    x = np.array([[big, -big, 0.0]], dtype=dtype)
    with strict():
        y = F.softmax(x)
        loss = F.softmax_loss(x, [1])
    np.testing.assert_array_equal(y, [[1.0, 0.0, 0.0]])
    assert loss == pytest.approx(-np.log(1e-7), rel=1e-4)


X_SIGMOID = np.array([-1e4, -1000.0, -745.0, -710.0, -89.0, -50.0, 0.0, 50.0, 89.0, 710.0, 1e4])


def sigmoid64(x):
    x = np.asarray(x, dtype=np.float64)
    # the two-sided form never overflows: exp of a non-positive number
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_is_overflow_free_for_large_negative_input(backend, dtype):
    x = X_SIGMOID.astype(dtype)
    with strict():
        s = F.sigmoid(x)
        g = F.sigmoid_grad(x)
        layer = Sigmoid()
        out = layer.forward(x[None])
        dx = layer.backward(np.ones_like(out))
    assert s.dtype == dtype and out.dtype == dtype
    for arr in (s, g, out, dx):
        assert np.isfinite(arr).all()
    assert_close(s, sigmoid64(x), dtype, "sigmoid")
    np.testing.assert_array_equal(out[0], s)
    assert_close(dx[0], sigmoid64(x) * (1 - sigmoid64(x)), dtype, "Sigmoid backward")
    np.testing.assert_array_equal(s[x <= -1000], 0.0)  # exact saturation
    np.testing.assert_array_equal(s[x >= 710], 1.0)


def test_numba_sigmoid_keeps_the_subnormal_tail():
    """On the numba backend sigmoid never computes ``exp(-x)`` for x < 0, so it cannot
    overflow: sigmoid(x) = exp(x) down to the subnormals, where ``1 / (1 + exp(-x))``
    (the NumPy reference, the book's formula) gives 0."""
    x = np.array([-710.0, -720.0, -740.0])
    with fastzero.use_backend("numba"):
        s, out = F.sigmoid(x), Sigmoid().forward(x[None])[0]
        s32 = F.sigmoid(np.array([-89.0, -95.0, -100.0], np.float32))
    np.testing.assert_allclose(s, np.exp(x), rtol=1e-5, atol=1e-323)
    np.testing.assert_array_equal(out, s)
    assert np.all(s > 0) and np.all(s32 > 0)
    np.testing.assert_allclose(s32, np.exp(np.array([-89.0, -95.0, -100.0])).astype(np.float32),
                               rtol=1e-5, atol=3e-45)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_of_very_negative_input_under_all_raise(backend, dtype):
    """Overflow-free under the strictest settings: ``np.errstate(all='raise')`` with -1e4 (exp(1e4) would overflow)."""
    x = np.array([[-1e4, -1e3, -100.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = F.sigmoid(x)
            out = Sigmoid().forward(x)
    assert np.all(s >= 0) and np.all(s < 1e-40)
    np.testing.assert_array_equal(out, s)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_of_constant_and_huge_input_is_finite(backend, dtype):
    """Zero variance is what ``eps`` is for; 1e4-sized activations must not overflow the variance."""
    for x in (np.full((4, 3), 7.0), np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1.0]])):
        x = x.astype(dtype)
        layer = BatchNormalization(np.ones(3, dtype), np.zeros(3, dtype))
        with strict():
            out = layer.forward(x)
            dx = layer.backward(np.ones_like(out))
            infer = layer.forward(x, train_flg=False)
        for arr in (out, dx, infer, layer.running_var):
            assert arr.dtype == dtype and np.isfinite(arr).all()
        mu, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
        assert_close(out, (x - mu) / np.sqrt(var + 10e-7), dtype, "BN forward")
