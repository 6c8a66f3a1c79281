"""The book's layers: gradient checks, forward values against naive references, contracts."""
import numpy as np
import pytest

import fastzero
from fastzero.layers import (
    Affine,
    AddLayer,
    BatchNormalization,
    Convolution,
    Dropout,
    MulLayer,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from gradcheck import layer_gradcheck

TOL = 1e-6  # relative error of backprop vs central differences, float64


def assert_grads(errors):
    worst = max(errors.values())
    assert worst < TOL, f"relative errors {errors}"


def away_from_zero(rng, shape, gap=0.1):
    """Normal values pushed at least ``gap`` from 0 (no ReLU kinks within the FD step)."""
    x = rng.standard_normal(shape)
    return np.sign(x) * (gap + np.abs(x))


def distinct(rng, shape):
    """Values with no ties (at least 0.01 apart), so max pooling is differentiable."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 0.5


# ---------------------------------------------------------------- naive references

def naive_conv(x, W, b, stride, pad):
    n, c, h, w = x.shape
    fn, _, fh, fw = W.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    out = np.empty((n, fn, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + fh, j * stride:j * stride + fw]
            out[:, :, i, j] = np.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def naive_maxpool(x, ph, pw, stride, pad):
    n, c, h, w = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], constant_values=-np.inf)
    oh, ow = (h + 2 * pad - ph) // stride + 1, (w + 2 * pad - pw) // stride + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = xp[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw].max(axis=(2, 3))
    return out


# ---------------------------------------------------------------- gradient checks

def test_gradcheck_affine_4d_input(backend, rng):
    layer = Affine(rng.standard_normal((12, 5)), rng.standard_normal(5))
    x = rng.standard_normal((3, 2, 3, 2))
    assert_grads(layer_gradcheck(layer, x, ["W", "b"]))


def test_gradcheck_convolution_stride2_pad1_nonsquare(backend, rng):
    layer = Convolution(rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4), stride=2, pad=1)
    x = rng.standard_normal((2, 3, 7, 6))
    assert_grads(layer_gradcheck(layer, x, ["W", "b"]))


@pytest.mark.parametrize("pool_h, pool_w, stride, pad", [(2, 3, 1, 0), (3, 2, 2, 1), (2, 2, 2, 0)])
def test_gradcheck_pooling(backend, rng, pool_h, pool_w, stride, pad):
    layer = Pooling(pool_h, pool_w, stride=stride, pad=pad)
    x = distinct(rng, (2, 3, 6, 7))
    assert_grads(layer_gradcheck(layer, x))


@pytest.mark.parametrize("shape", [(6, 4), (4, 2, 3, 3)])
def test_gradcheck_batchnorm(backend, rng, shape):
    d = int(np.prod(shape[1:]))
    layer = BatchNormalization(1 + 0.1 * rng.standard_normal(d), 0.1 * rng.standard_normal(d))
    x = rng.standard_normal(shape)
    assert_grads(layer_gradcheck(layer, x, ["gamma", "beta"]))


@pytest.mark.parametrize("one_hot", [False, True])
def test_gradcheck_softmax_with_loss(backend, rng, one_hot):
    layer = SoftmaxWithLoss()
    labels = np.array([0, 3, 2, 3, 1])
    t = np.eye(4)[labels] if one_hot else labels
    x = rng.standard_normal((5, 4))
    # The loss has the book's +1e-7 inside the log, backward the exact (y - t) / N:
    # they differ by a relative ~1e-7 / y[t], so make the true classes likely.
    x[np.arange(5), labels] += 3.0
    assert_grads(layer_gradcheck(layer, x, forward=lambda x: layer.forward(x, t)))


def test_gradcheck_sigmoid(backend, rng):
    assert_grads(layer_gradcheck(Sigmoid(), 2 * rng.standard_normal((3, 4, 2))))


def test_gradcheck_relu(backend, rng):
    assert_grads(layer_gradcheck(Relu(), away_from_zero(rng, (3, 2, 4))))


def test_gradcheck_dropout_fixed_mask(backend, rng):
    layer = Dropout(0.4)

    def forward(x):
        np.random.seed(7)  # the same mask at every call
        return layer.forward(x)

    assert_grads(layer_gradcheck(layer, rng.standard_normal((4, 5)), forward=forward))


# ---------------------------------------------------------------- forward values

@pytest.mark.parametrize("stride, pad, fshape", [(1, 0, (5, 3, 3, 3)), (2, 1, (4, 3, 3, 2)), (3, 2, (2, 3, 1, 4))])
def test_convolution_matches_naive(backend, rng, stride, pad, fshape):
    W, b = rng.standard_normal(fshape), rng.standard_normal(fshape[0])
    x = rng.standard_normal((2, 3, 9, 8))
    out = Convolution(W, b, stride, pad).forward(x)
    np.testing.assert_allclose(out, naive_conv(x, W, b, stride, pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ph, pw, stride, pad", [(2, 2, 2, 0), (3, 2, 1, 1), (2, 3, 3, 1), (3, 3, 2, 2)])
def test_pooling_matches_naive_with_padding(backend, rng, ph, pw, stride, pad):
    x = rng.standard_normal((2, 3, 7, 8))
    out = Pooling(ph, pw, stride, pad).forward(x)
    np.testing.assert_array_equal(out, naive_maxpool(x, ph, pw, stride, pad))


def test_pooling_padding_never_wins(backend):
    x = -1.0 - np.arange(2 * 16, dtype=float).reshape(1, 2, 4, 4)  # all negative
    out = Pooling(2, 2, stride=2, pad=1).forward(x)
    assert out.shape == (1, 2, 3, 3)  # pad counts in the output size
    assert np.all(out < 0)
    assert out[0, 0, 0, 0] == x[0, 0, 0, 0]


def test_pooling_default_stride_is_the_books(backend):
    """``Pooling(pool_h, pool_w, stride=2, pad=0)`` as the book's current ``common/layers.py``."""
    layer = Pooling(2, 2)
    assert (layer.stride, layer.pad) == (2, 0)
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(layer.forward(x), [[[[5.0, 7.0], [13.0, 15.0]]]])


def test_pooling_backward_routes_to_the_max(backend):
    x = np.array([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 7.0, 6.0]]]])
    layer = Pooling(2, 2, stride=2)
    np.testing.assert_array_equal(layer.forward(x), [[[[5.0, 7.0]]]])
    np.testing.assert_array_equal(layer.arg_max, [[[[1, 2]]]])
    dx = layer.backward(np.array([[[[10.0, 20.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0, 10, 0, 0], [0, 0, 20, 0]]]])


def test_affine_forward_backward_values(backend, rng):
    W, b = rng.standard_normal((6, 3)), rng.standard_normal(3)
    x = rng.standard_normal((4, 2, 3))
    layer = Affine(W, b)
    np.testing.assert_allclose(layer.forward(x), x.reshape(4, 6) @ W + b, rtol=1e-13)
    assert layer.x.shape == (4, 6) and layer.original_x_shape == (4, 2, 3)
    dout = rng.standard_normal((4, 3))
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, (dout @ W.T).reshape(x.shape), rtol=1e-13)
    np.testing.assert_allclose(layer.dW, x.reshape(4, 6).T @ dout, rtol=1e-13)
    np.testing.assert_allclose(layer.db, dout.sum(axis=0), rtol=1e-13)


def test_relu_and_sigmoid_values(backend, rng):
    x = rng.standard_normal((3, 4))
    relu = Relu()
    np.testing.assert_array_equal(relu.forward(x), np.maximum(x, 0))
    np.testing.assert_array_equal(relu.mask, x <= 0)
    dout = rng.standard_normal((3, 4))
    keep = dout.copy()
    np.testing.assert_array_equal(relu.backward(dout), np.where(x <= 0, 0, dout))
    np.testing.assert_array_equal(dout, keep)  # dout not modified (the book's Relu did)
    sig = Sigmoid()
    np.testing.assert_allclose(sig.forward(x), 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(sig.backward(dout), dout * sig.out * (1 - sig.out), rtol=1e-14)


def test_softmax_with_loss_values(backend):
    x = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    t = np.array([2, 0])
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, t)
    y = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    expected = -(np.log(y[0, 2] + 1e-7) + np.log(y[1, 0] + 1e-7)) / 2
    assert loss == pytest.approx(expected, rel=1e-14)
    assert layer.loss == loss and layer.t is t
    np.testing.assert_allclose(layer.y, y, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(), (y - np.eye(3)[t]) / 2, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(3.0), 3 * (y - np.eye(3)[t]) / 2, rtol=1e-14)


def test_softmax_with_loss_single_sample(backend):
    x = np.array([0.5, -1.0, 2.0])
    layer = SoftmaxWithLoss()
    a = layer.forward(x, 2)
    b = SoftmaxWithLoss().forward(x, np.array([0.0, 0.0, 1.0]))
    assert a == b == pytest.approx(SoftmaxWithLoss().forward(x[None], np.array([2])))
    assert layer.backward().shape == (3,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_with_loss_soft_targets_are_the_books(backend, rng, dtype):
    """Target rows that are not one-hot (label smoothing, mixup, or not distributions at
    all) give the book's numbers: the loss of each row's argmax class, ``dx = (y - t) / N``."""
    x = rng.standard_normal((5, 4)).astype(dtype)
    smooth = np.full((5, 4), 0.1 / 3)
    smooth[np.arange(5), [0, 3, 1, 1, 2]] = 0.9
    mixup = 0.7 * np.eye(4)[[0, 1, 2, 3, 0]] + 0.3 * np.eye(4)[[1, 1, 3, 0, 2]]
    anything = rng.standard_normal((5, 4))  # not distributions: the book computes anyway
    tol = 1e-14 if dtype == np.float64 else 1e-6
    for t in (smooth, mixup, anything):
        layer = SoftmaxWithLoss()
        loss = layer.forward(x, t)
        y = np.exp(x.astype(float))
        y /= y.sum(axis=1, keepdims=True)
        book_loss = -np.sum(np.log(y[np.arange(5), t.argmax(axis=1)] + 1e-7)) / 5
        assert loss == pytest.approx(book_loss, rel=tol)
        dx = layer.backward()
        assert dx.dtype == dtype
        np.testing.assert_allclose(dx, (y - t) / 5, rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.backward(2.0), 2 * (y - t) / 5, rtol=tol, atol=tol)


def test_softmax_with_loss_soft_rows_gradient_is_the_soft_cross_entropys(backend, rng):
    """For rows that are distributions, ``backward`` is the gradient of ``-sum(t*log(y))/N``."""
    x = rng.standard_normal((3, 4))
    t = rng.random((3, 4))
    t /= t.sum(axis=1, keepdims=True)

    def soft_cross_entropy(logits):
        z = logits - logits.max(axis=1, keepdims=True)
        return float(-np.sum(t * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))) / 3)

    layer = SoftmaxWithLoss()
    layer.forward(x, t)
    h, numeric = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        numeric[idx] = (soft_cross_entropy(x + e) - soft_cross_entropy(x - e)) / (2 * h)
    np.testing.assert_allclose(layer.backward(), numeric, rtol=1e-7, atol=1e-9)


def test_softmax_with_loss_labels_shaped_n_by_1(backend, rng):
    """``ch07/gradient_check.py`` passes ``np.array([1]).reshape((1, 1))``; (N, 1) labels
    are the (N,) labels, for any N (the book's own indexing is right only for N = 1)."""
    x = rng.standard_normal((6, 4))
    t = np.array([0, 3, 1, 1, 2, 0])
    ref = SoftmaxWithLoss()
    expected = ref.forward(x, t)
    layer = SoftmaxWithLoss()
    assert layer.forward(x, t.reshape(6, 1)) == expected
    np.testing.assert_array_equal(layer.backward(), ref.backward())
    one = SoftmaxWithLoss()
    assert one.forward(x[:1], np.array([[3]])) == SoftmaxWithLoss().forward(x[:1], np.array([3]))
    single = SoftmaxWithLoss()  # one sample (K,): a label (), (1,) or (1, 1)
    assert single.forward(x[0], np.array([[3]])) == SoftmaxWithLoss().forward(x[0], 3)
    np.testing.assert_array_equal(single.backward(), one.backward()[0])


def test_dropout_mask_is_the_books_draw(backend, rng):
    x = rng.standard_normal((5, 6))
    np.random.seed(42)
    expected_mask = np.random.rand(*x.shape) > 0.3
    layer = Dropout(0.3)
    np.random.seed(42)
    out = layer.forward(x)
    np.testing.assert_array_equal(layer.mask, expected_mask)
    np.testing.assert_array_equal(out, x * expected_mask)
    dout = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(dout), dout * expected_mask)
    np.testing.assert_allclose(layer.forward(x, train_flg=False), x * 0.7, rtol=1e-15)


def test_mul_and_add_layers_book_example():
    apple, num, tax = 100, 2, 1.1
    mul_apple, mul_tax = MulLayer(), MulLayer()
    price = mul_tax.forward(mul_apple.forward(apple, num), tax)
    assert price == pytest.approx(220)
    dprice_apple, dtax = mul_tax.backward(1)
    dapple, dnum = mul_apple.backward(dprice_apple)
    assert (dapple, dnum, dtax) == (pytest.approx(2.2), pytest.approx(110), 200)
    add = AddLayer()
    assert add.forward(3, 4) == 7 and add.backward(2) == (2, 2)


# ---------------------------------------------------------------- batch normalisation

def test_batchnorm_train_and_running_stats_in_place(backend, rng):
    d = 2 * 3 * 3
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    running_mean, running_var = np.zeros(d), np.ones(d)
    layer = BatchNormalization(gamma, beta, momentum=0.8,
                               running_mean=running_mean, running_var=running_var)
    x = 3 + 2 * rng.standard_normal((5, 2, 3, 3))
    out = layer.forward(x)
    rows = x.reshape(5, d)  # per activation, as the book, not per channel
    mu, var = rows.mean(axis=0), rows.var(axis=0)
    expected = gamma * (rows - mu) / np.sqrt(var + 10e-7) + beta
    np.testing.assert_allclose(out, expected.reshape(x.shape), rtol=1e-12, atol=1e-12)
    assert layer.running_mean is running_mean and layer.running_var is running_var
    np.testing.assert_allclose(running_mean, 0.2 * mu, rtol=1e-13)
    np.testing.assert_allclose(running_var, 0.8 + 0.2 * var, rtol=1e-13)
    infer = layer.forward(x, train_flg=False)
    expected = gamma * (rows - running_mean) / np.sqrt(running_var + 10e-7) + beta
    np.testing.assert_allclose(infer, expected.reshape(x.shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(running_mean, 0.2 * mu, rtol=1e-13)  # unchanged by inference


def test_batchnorm_creates_running_stats_with_gamma_dtype(backend, rng):
    layer = BatchNormalization(np.ones(4, np.float32), np.zeros(4, np.float32))
    layer.forward(rng.standard_normal((3, 4)).astype(np.float32))
    assert layer.running_mean.dtype == np.float32 and layer.running_var.shape == (4,)


def test_backward_after_inference_forward_is_an_error(backend, rng):
    layer = BatchNormalization(np.ones(3), np.zeros(3))
    layer.forward(rng.standard_normal((2, 3)), train_flg=False)
    with pytest.raises(RuntimeError, match="BatchNormalization"):
        layer.backward(np.ones((2, 3)))
    drop = Dropout()
    drop.forward(np.ones((2, 3)), train_flg=False)
    with pytest.raises(RuntimeError, match="Dropout"):
        drop.backward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="Convolution"):
        Convolution(np.ones((1, 1, 1, 1)), np.zeros(1)).backward(np.ones((1, 1, 1, 1)))


# ---------------------------------------------------------------- the array contract

def test_layers_see_in_place_parameter_updates(backend, rng):
    W, b = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(4)
    conv = Convolution(W, b)
    x = rng.standard_normal((2, 3, 5, 5))
    conv.forward(x)
    W *= 2.0
    b += 1.0
    assert conv.W is W and conv.b is b
    np.testing.assert_allclose(conv.forward(x), naive_conv(x, W, b, 1, 0), rtol=1e-12, atol=1e-12)
    A, c = rng.standard_normal((75, 2)), rng.standard_normal(2)
    affine = Affine(A, c)
    affine.forward(x)
    A -= 1.0
    np.testing.assert_allclose(affine.forward(x), x.reshape(2, -1) @ A + c, rtol=1e-12)
    gamma, beta = np.ones(75), np.zeros(75)
    bn = BatchNormalization(gamma, beta)
    first = bn.forward(x)
    gamma *= 3.0
    np.testing.assert_allclose(bn.forward(x), 3.0 * first, rtol=1e-12)


LAYER_CASES = {
    "Relu": (lambda rng, dt: Relu(), (2, 3, 4, 4)),
    "Sigmoid": (lambda rng, dt: Sigmoid(), (2, 5)),
    "Dropout": (lambda rng, dt: Dropout(0.5), (2, 5)),
    "Affine": (lambda rng, dt: Affine(rng.standard_normal((48, 5)).astype(dt), np.zeros(5, dt)), (2, 3, 4, 4)),
    "BatchNormalization2d": (lambda rng, dt: BatchNormalization(np.ones(5, dt), np.zeros(5, dt)), (3, 5)),
    "BatchNormalization4d": (lambda rng, dt: BatchNormalization(np.ones(48, dt), np.zeros(48, dt)), (3, 3, 4, 4)),
    "Convolution": (lambda rng, dt: Convolution(rng.standard_normal((2, 3, 3, 3)).astype(dt), np.zeros(2, dt), 1, 1), (2, 3, 4, 4)),
    "Pooling": (lambda rng, dt: Pooling(2, 2, 2), (2, 3, 4, 4)),
}


@pytest.mark.parametrize("name", list(LAYER_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_forward_and_backward(backend, rng, name, dtype):
    make, shape = LAYER_CASES[name]
    layer = make(rng, dtype)
    out = layer.forward(rng.standard_normal(shape).astype(dtype))
    assert out.dtype == dtype
    dx = layer.backward(np.ones(out.shape, dtype=dtype))
    assert dx.dtype == dtype and dx.shape == shape
    for grad in ("dW", "db", "dgamma", "dbeta"):
        if hasattr(layer, grad):
            assert getattr(layer, grad).dtype == dtype, grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_with_loss_dtype(backend, rng, dtype):
    layer = SoftmaxWithLoss()
    loss = layer.forward(rng.standard_normal((4, 3)).astype(dtype), np.array([0, 1, 2, 1]))
    assert isinstance(loss, float)
    assert layer.y.dtype == dtype and layer.backward().dtype == dtype


def test_mixed_dtypes_compute_in_the_weights_dtype(backend, rng):
    x32 = rng.standard_normal((2, 4)).astype(np.float32)
    assert Affine(np.ones((4, 3)), np.zeros(3)).forward(x32).dtype == np.float64
    x64 = rng.standard_normal((2, 4))
    layer = Affine(np.ones((4, 3), np.float32), np.zeros(3, np.float32))
    assert layer.forward(x64).dtype == np.float32
    assert layer.backward(np.ones((2, 3))).dtype == np.float32


@pytest.mark.parametrize("other", [b for b in fastzero.available_backends() if b != "numpy"])
def test_backend_looked_up_at_forward_and_kept_for_backward(rng, other):
    """Explicitly about two backends: switching between calls works, and backward
    runs on the backend that ran the matching forward (it reads that backend's cache)."""
    W, b = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    x = rng.standard_normal((2, 3, 6, 6))
    layer = Convolution(W, b, stride=1, pad=1)
    with fastzero.use_backend("numpy"):
        ref = layer.forward(x)
        dref = layer.backward(np.ones_like(ref))
        dW_ref = layer.dW.copy()
    with fastzero.use_backend(other):
        np.testing.assert_allclose(layer.forward(x), ref, rtol=1e-12, atol=1e-12)
    with fastzero.use_backend("numpy"):
        dx = layer.backward(np.ones_like(ref))  # cache from `other`: `other` must run it
    np.testing.assert_allclose(dx, dref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.dW, dW_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", ["Affine", "Convolution"])
def test_bias_that_broadcasts_as_in_the_book(backend, rng, layer):
    """``x @ W + b`` in the book takes any ``b`` that broadcasts along the output's last
    axis: a scalar, (1,), (n,), (1, n), (1, 1, n) (ints too). Each gives the output of
    the (n,) bias it broadcasts to, and ``db`` is (n,) as in the book."""
    if layer == "Affine":
        n, W, x, make = 3, rng.standard_normal((4, 3)), rng.standard_normal((2, 4)), Affine
    else:
        n, W, x = 2, rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((2, 1, 5, 5))
        make = Convolution
    full = rng.standard_normal(n)
    cases = {"scalar": (0.5, np.full(n, 0.5)), "int zero": (0, np.zeros(n)),
             "(1,)": (np.array([0.25]), np.full(n, 0.25)), "(n,)": (full, full),
             "(1, n)": (full[None, :], full), "(1, 1, n)": (full[None, None, :], full),
             "(1, 1)": (np.array([[2.0]]), np.full(n, 2.0)),
             "ints (n,)": (np.arange(n), np.arange(n, dtype=float))}
    dout_shape = make(W, full).forward(x).shape
    dout = rng.standard_normal(dout_shape)
    for name, (b, equivalent) in cases.items():
        ref = make(W, equivalent)
        out = make(W, b)
        np.testing.assert_array_equal(out.forward(x), ref.forward(x), err_msg=name)
        np.testing.assert_array_equal(out.backward(dout), ref.backward(dout), err_msg=name)
        assert out.db.shape == (n,)
        np.testing.assert_array_equal(out.db, ref.db, err_msg=name)
    for bad in (np.zeros(n + 1), np.zeros((2, n)), np.zeros((n, 1)), np.zeros((1, n, 1))):
        with pytest.raises(ValueError, match=rf"{layer}: expected b of shape \({n},\)"):
            make(W, bad).forward(x)
    with pytest.raises(TypeError, match=f"{layer}: parameters must share one dtype"):
        make(W, np.float32(0.5)).forward(x)
    assert make(W.astype(np.float32), 0).forward(x).dtype == np.float32


def test_bias_broadcast_still_sees_in_place_updates(backend, rng):
    W, b = rng.standard_normal((4, 3)), np.zeros((1, 3))
    layer, x = Affine(W, b), rng.standard_normal((2, 4))
    before = layer.forward(x)
    b += 1.0
    np.testing.assert_allclose(layer.forward(x), before + 1.0, rtol=1e-14)
