"""Small calls (a few samples, the book's chapter 4-6 sizes) take the layers' cheap paths:
validation that only looks at type, dtype, shape and flags when the input already
fits, label range checks in Python, matrix-vector products for a few rows, and
NumPy's ``exp`` in the sigmoid from 1024 elements. These tests hold those paths to
plain NumPy formulas of the book's maths on both backends, and check that a
malformed input arriving after well-formed calls still gets the full check's error.
"""
import subprocess
import sys

import numpy as np
import pytest

from fastzero import _validate
from fastzero.kernels.numba import activation, dense
from fastzero.layers import Affine, Dropout, Relu, Sigmoid, SoftmaxWithLoss
from fastzero.gradient import numerical_gradient
from fastzero.nets import TwoLayerNet

BATCHES = [1, 2, 3, 4, 100]


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_affine_is_the_books_formula_at_small_batches(backend, n, dtype, rng):
    """784x50 is large enough for the few-rows dx path (2-3 rows), 50x10 is not."""
    eps = 1e-5 if dtype == np.float32 else 1e-13

    def close(actual, expected):  # expected in float64; error relative to its largest entry
        assert actual.dtype == dtype
        np.testing.assert_allclose(actual, expected, rtol=0, atol=eps * np.abs(expected).max())

    for d, m in ((784, 50), (50, 10)):
        W, b = rng.standard_normal((d, m)).astype(dtype), rng.standard_normal(m).astype(dtype)
        x, dout = rng.standard_normal((n, d)).astype(dtype), rng.standard_normal((n, m)).astype(dtype)
        W64, x64, dout64 = W.astype(np.float64), x.astype(np.float64), dout.astype(np.float64)
        layer = Affine(W, b)
        close(layer.forward(x), x64 @ W64 + b)
        close(layer.backward(dout), dout64 @ W64.T)
        close(layer.dW, x64.T @ dout64)
        close(layer.db, dout64.sum(axis=0))


@pytest.mark.parametrize("rows", [1, 2, 3, 4])
def test_few_rows_dx_is_the_matrix_product(rows, rng):
    """The matrix-vector form of ``dout @ W.T``, where it is taken and where not."""
    for d, m in ((784, 50), (10, 5)):
        W, dout = rng.standard_normal((d, m)), rng.standard_normal((rows, m))
        dx = dense._few_rows_dx(dout, W)
        assert dx.shape == (rows, d) and dx.flags.c_contiguous
        np.testing.assert_allclose(dx, dout @ W.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 10), (3, 100), (100, 100), (7, 1024)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_layers_are_the_books_formulas(backend, shape, dtype, rng):
    x = (rng.standard_normal(shape) * 30).astype(dtype)
    x.flat[:4] = [0.0, -0.0, -1e4, 1e4]
    dout = rng.standard_normal(shape).astype(dtype)
    # float32: the reference's textbook sigmoid flushes the subnormal tail to 0
    tol = dict(rtol=1e-6, atol=np.finfo(np.float32).tiny) if dtype == np.float32 else dict(
        rtol=1e-14, atol=0)
    relu = Relu()
    assert np.array_equal(relu.forward(x), np.where(x <= 0, 0, x))
    assert np.array_equal(relu.mask, x <= 0)
    assert np.array_equal(relu.backward(dout), np.where(x <= 0, 0, dout))
    sigmoid = Sigmoid()
    x64 = x.astype(np.float64)
    e = np.exp(-np.abs(x64))
    expected = np.where(x64 >= 0, 1 / (1 + e), e / (1 + e))
    y = sigmoid.forward(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, expected, **tol)
    np.testing.assert_allclose(sigmoid.backward(dout), dout * (1 - y) * y, **tol)
    np.random.seed(3)
    keep = np.random.rand(*shape).astype(dtype) > 0.5
    np.random.seed(3)
    dropout = Dropout(0.5)
    assert np.array_equal(dropout.forward(x), x * keep)
    assert np.array_equal(dropout.backward(dout), dout * keep)


def test_numba_sigmoid_takes_numpys_exp_from_its_threshold_only_where_it_is_exact(rng):
    """Both sides of the threshold agree with the reference formula, saturate without
    warnings under ``errstate(all='raise')`` and keep the subnormal tail."""
    for size in (activation.NUMPY_EXP_MIN - 1, activation.NUMPY_EXP_MIN):
        x = rng.standard_normal(size) * 40
        x[:3] = [-1e4, 1e4, -720.0]
        with np.errstate(all="raise"):
            y = activation.sigmoid_forward(x)
        assert y[0] == 0.0 and y[1] == 1.0 and 0 < y[2] < 1e-300
        e = np.exp(-np.abs(x))
        np.testing.assert_allclose(y, np.where(x >= 0, 1 / (1 + e), e / (1 + e)), rtol=1e-14, atol=0)


@pytest.mark.parametrize("n", [1, 3, 33, 100])
@pytest.mark.parametrize("kind", ["labels", "one-hot", "soft", "labels (N, 1)", "uint8"])
def test_softmax_with_loss_is_the_books_at_small_batches(backend, n, kind, rng):
    x = rng.standard_normal((n, 10)) * 3
    labels = rng.integers(0, 10, n)
    one_hot = np.eye(10)[labels]
    t = {"labels": labels, "one-hot": one_hot, "soft": 0.9 * one_hot + 0.01,
         "labels (N, 1)": labels.reshape(n, 1), "uint8": labels.astype(np.uint8)}[kind]
    y = _softmax(x)
    target = t if kind == "soft" else one_hot
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, t)
    assert loss == pytest.approx(-np.sum(np.log(y[np.arange(n), labels] + 1e-7)) / n, rel=1e-12)
    np.testing.assert_allclose(layer.backward(1), (y - target) / n, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3, 100])
def test_two_layer_net_loss_and_gradient_are_the_books_backpropagation(backend, n, rng):
    """The whole small path of ``ch05/gradient_check.py``'s network (a 784x50 W1: the
    few-rows dx path at 2-3 samples), against its maths in plain NumPy."""
    net = TwoLayerNet(784, 50, 10, seed=1)
    x, labels = rng.random((n, 784)), rng.integers(0, 10, n)
    p = net.params
    h = x @ p["W1"] + p["b1"]
    r = np.maximum(h, 0)
    prob = _softmax(r @ p["W2"] + p["b2"])
    dy = (prob - np.eye(10)[labels]) / n
    dr = (dy @ p["W2"].T) * (h > 0)
    expected = {"W1": x.T @ dr, "b1": dr.sum(axis=0), "W2": r.T @ dy, "b2": dy.sum(axis=0)}
    for t in (labels, np.eye(10)[labels]):
        grads = net.gradient(x, t)
        assert net.last_loss == pytest.approx(
            -np.log(prob[np.arange(n), labels] + 1e-7).sum() / n, rel=1e-12)
        for name, value in expected.items():
            np.testing.assert_allclose(grads[name], value, rtol=1e-10, atol=1e-15)
    # the layers' input gradient too (Affine1's dx, which the net discards)
    np.testing.assert_allclose(net.layers["Affine1"].backward(dr), dr @ p["W1"].T, rtol=1e-12)


# ------------------------------------------- bad input after the cheap paths were taken

@pytest.mark.parametrize("bad, error, words", [
    (np.array([0, 10, 1]), ValueError, "labels must be in [0, 10), got values in [0, 10]"),
    (np.array([0, -1, 1]), ValueError, "labels must be in [0, 10), got values in [-1, 1]"),
    (np.arange(40) % 11, ValueError, "labels must be in [0, 10), got values in [0, 10]"),
    (np.array([[0, 1], [1, 0], [0, 0]]) @ np.ones((2, 5)), ValueError, "expected labels"),
])
def test_labels_out_of_range_after_good_calls_get_the_full_message(backend, bad, error, words, rng):
    n = bad.shape[0]
    layer = SoftmaxWithLoss()
    x = rng.standard_normal((n, 10))
    for _ in range(3):
        layer.forward(x, rng.integers(0, 10, n))
    with pytest.raises(error) as info:
        layer.forward(x, bad)
    assert words in str(info.value) and "SoftmaxWithLoss" in str(info.value)


@pytest.mark.parametrize("rows, message", [
    ([[0, 1, 0], [1, 0, 0], [0, 0, np.nan]], "target rows must be finite"),
    ([[0, 1, 0], [1, 0, 0], [0, np.inf, 0]], "target rows must be finite"),
])
def test_non_finite_target_rows_after_one_hot_ones_are_refused(backend, rows, message, rng):
    layer = SoftmaxWithLoss()
    x = rng.standard_normal((3, 3))
    layer.forward(x, np.eye(3)[[1, 0, 2]])
    with pytest.raises(ValueError, match=message):
        layer.forward(x, np.array(rows))


def test_rows_that_are_not_one_hot_are_soft_targets(rng):
    """Two ones in one row and none in another (n nonzeros in all), or a 1 at every
    argmax beside another nonzero: not one-hot."""
    for rows, expected in (([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [0, 0]),
                           ([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]], [0, 2])):
        labels, soft = _validate.targets(np.array(rows), 2, 3, "SoftmaxWithLoss")
        assert np.array_equal(soft, rows) and labels.tolist() == expected
    labels, soft = _validate.targets(np.eye(3)[[2, 0]], 2, 3, "SoftmaxWithLoss")
    assert soft is None and labels.tolist() == [2, 0]


def test_affine_checks_after_good_calls(backend, rng):
    W, b = rng.standard_normal((6, 4)), np.zeros(4)
    layer = Affine(W, b)
    x = rng.standard_normal((3, 6))
    for _ in range(3):
        layer.backward(np.ones_like(layer.forward(x)))
    with pytest.raises(ValueError, match=r"Affine: expected input with 6 features per sample"):
        layer.forward(rng.standard_normal((3, 5)))
    with pytest.raises(ValueError, match=r"Affine: expected a non-empty input"):
        layer.forward(np.empty((0, 6)))
    layer.b = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match=r"Affine: parameters must share one dtype, got W float64, b float32"):
        layer.forward(x)
    layer.b = np.zeros((4, 1))
    with pytest.raises(ValueError, match=r"Affine: expected b of shape \(4,\), got shape \(4, 1\)"):
        layer.forward(x)
    layer.b = b
    out = layer.forward(x)
    with pytest.raises(ValueError, match=r"Affine: expected dout \(the forward output's shape\) "
                                         r"of shape \(3, 4\), got shape \(3, 5\)"):
        layer.backward(np.ones((3, 5)))
    dx = layer.backward(np.ones(out.shape, np.float32))  # converted to the layer's dtype
    assert dx.dtype == np.float64
    layer.forward(x)
    layer.W = rng.standard_normal((7, 4))
    with pytest.raises(ValueError, match=r"Affine: W changed between forward\(\) and backward\(\)"):
        layer.backward(np.ones((3, 4)))


@pytest.mark.parametrize("dout", [1, 2.5, np.float32(1.5), np.int64(2)])
def test_softmax_with_loss_backward_takes_any_real_dout(backend, dout, rng):
    layer = SoftmaxWithLoss()
    x, t = rng.standard_normal((3, 4)), np.array([0, 3, 1])
    layer.forward(x, t)
    np.testing.assert_allclose(layer.backward(dout), float(dout) * (_softmax(x) - np.eye(4)[t]) / 3,
                               rtol=1e-12)


@pytest.mark.parametrize("dout, error", [(np.inf, ValueError), (np.nan, ValueError),
                                         (True, TypeError), ("1", TypeError)])
def test_softmax_with_loss_backward_refuses_bad_dout(backend, dout, error, rng):
    layer = SoftmaxWithLoss()
    layer.forward(rng.standard_normal((3, 4)), np.array([0, 3, 1]))
    with pytest.raises(error, match="SoftmaxWithLoss: dout must be"):
        layer.backward(dout)


@pytest.mark.parametrize("soft", [False, True])
def test_numerical_gradient_checks_the_batch_once_then_passes_it_on_converted(backend, soft, rng):
    """The first loss call gets ``x`` and ``t`` as given; the others the float64 ``x`` and the
    int64 labels the layers would make of them (soft target rows stay as given), and the
    gradient is the one of the loss on the batch as given."""
    net = TwoLayerNet(6, 4, 3, weight_init_std=0.5)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    t = rng.dirichlet(np.ones(3), size=3) if soft else np.eye(3)[[2, 0, 1]]
    seen = []
    loss = net.loss

    def recording_loss(x_, t_, train_flg=False):
        seen.append((x_, t_))
        return loss(x_, t_, train_flg)

    net.loss = recording_loss
    grads = net.numerical_gradient(x, t)
    assert seen[0][0] is x and seen[0][1] is t
    for x_, t_ in seen[1:]:
        assert x_.dtype == np.float64 and x_.flags.c_contiguous
        np.testing.assert_array_equal(x_, x)
        if soft:
            assert t_ is t
        else:
            assert t_.dtype == np.int64
            np.testing.assert_array_equal(t_, [2, 0, 1])
    net.loss = loss
    for name, p in net.params.items():
        expected = numerical_gradient(lambda _: net.loss(x, t, train_flg=True), p)
        np.testing.assert_array_equal(grads[name], expected)


SMALL_WORK_WITHOUT_NUMBA = {
    "optimizers on Python scalars": """
from fastzero.optimizer import SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam
for opt in (SGD(), Momentum(), Nesterov(), AdaGrad(), RMSprop(), Adam()):
    params = {"x": -7.0, "y": 2.0}
    for _ in range(3):
        opt.update(params, {"x": params["x"] / 10.0, "y": 2.0 * params["y"]})
""",
}


@pytest.mark.parametrize("work", sorted(SMALL_WORK_WITHOUT_NUMBA))
def test_small_work_never_imports_numba(work):
    """A script whose work is all small pays neither numba's import nor its compiler's start-up."""
    code = SMALL_WORK_WITHOUT_NUMBA[work] + "\nimport sys\nprint('numba' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]


def test_numba_backend_imports_a_kernel_module_on_first_use_of_one_of_its_kernels():
    code = ("import sys, numpy as np\nimport fastzero.kernels.numba as k\n"
            "k.relu_forward(np.ones(4))\n"
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules "
            "if m.startswith('fastzero.kernels.numba.') and not m.rsplit('.', 1)[1].startswith('_')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['activation']"
