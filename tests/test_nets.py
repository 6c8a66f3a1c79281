"""The book's networks: gradients against numerical differentiation, the book's
initialisation and names, float32 end to end, and numba == numpy."""
from collections import OrderedDict

import numpy as np
import pytest

import fastzero
from fastzero.layers import Affine, BatchNormalization, Convolution, Dropout, Pooling, Relu, Sigmoid
from fastzero.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from fastzero.optimizer import SGD

TINY_DEEP = dict(
    input_dim=(1, 8, 8),
    conv_param_1={"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1},
    conv_param_2={"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1},
    conv_param_3={"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1},
    conv_param_4={"filter_num": 3, "filter_size": 3, "pad": 2, "stride": 1},
    conv_param_5={"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1},
    conv_param_6={"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1},
    hidden_size=6, output_size=3,
)

# name -> (constructor of a small network, input shape per sample, classes)
SMALL_NETS = {
    "two_layer": (lambda **kw: TwoLayerNet(6, 5, 3, weight_init_std=0.5, **kw), (6,), 3),
    "multi_relu_decay": (
        lambda **kw: MultiLayerNet(6, [5, 4], 3, weight_decay_lambda=0.3, **kw), (6,), 3),
    "multi_sigmoid": (
        lambda **kw: MultiLayerNet(6, [5, 4], 3, activation="sigmoid",
                                   weight_init_std="xavier", **kw), (6,), 3),
    "extend_dropout": (
        lambda **kw: MultiLayerNetExtend(6, [5, 4], 3, use_dropout=True, dropout_ration=0.3,
                                         weight_decay_lambda=0.1, **kw), (6,), 3),
    "extend_batchnorm": (
        lambda **kw: MultiLayerNetExtend(6, [5, 4], 3, use_batchnorm=True, **kw), (6,), 3),
    "extend_both": (
        lambda **kw: MultiLayerNetExtend(6, [5, 4], 3, activation="sigmoid", use_dropout=True,
                                         use_batchnorm=True, **kw), (6,), 3),
    "simple_conv": (
        lambda **kw: SimpleConvNet((2, 8, 7), {"filter_num": 3, "filter_size": 3, "pad": 1,
                                               "stride": 2}, hidden_size=5, output_size=3,
                                   weight_init_std=0.3, **kw), (2, 8, 7), 3),
    "deep_conv": (lambda **kw: DeepConvNet(**TINY_DEEP, **kw), (1, 8, 8), 3),
}


def _data(shape, classes, n=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(dtype), rng.integers(0, classes, n)


def _relative_error(a, b):
    """``|a - b| / (|a| + |b|)``, the denominator floored at 1e-4: central differences
    of a zero gradient (a bias feeding batch norm) leave round-off near 1e-11."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-4))


def _nonzero_biases(net, seed=0):
    """Random biases: with zero biases an all-dropped row sits exactly on a ReLU kink."""
    rng = np.random.default_rng(seed)
    for key, param in net.params.items():
        if key.startswith(("b", "beta")):
            param += rng.normal(0, 0.1, param.shape)
    return net


def _gradient_with_mask_seed(net, x, t, seed=7):
    """gradient() with np.random reseeded, so dropout draws the same masks every call."""
    np.random.seed(seed)
    return net.gradient(x, t)


def _loss_with_mask_seed(net, x, t, seed=7):
    np.random.seed(seed)
    return net.loss(x, t, train_flg=True)


def _numeric_entries(loss, param, indices, h=1e-5):
    """Central differences of ``loss()`` for the flat ``indices`` of ``param`` (perturbed in place)."""
    flat = param.reshape(-1)
    assert np.shares_memory(flat, param)
    out = []
    for i in indices:
        old = flat[i]
        flat[i] = old + h
        plus = loss()
        flat[i] = old - h
        minus = loss()
        flat[i] = old
        out.append((plus - minus) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("name", SMALL_NETS)
def test_backprop_matches_numerical_gradient(backend, name):
    # Up to 10 random entries of every parameter (all of them in the small
    # fully connected nets): each loss evaluation is a full forward pass.
    make, shape, classes = SMALL_NETS[name]
    net = _nonzero_biases(make(seed=1))
    x, t = _data(shape, classes)
    grads = _gradient_with_mask_seed(net, x, t)
    assert list(grads) == list(net.params)
    rng = np.random.default_rng(2)
    for key, param in net.params.items():
        assert grads[key].shape == param.shape and grads[key].dtype == np.float64
        indices = rng.choice(param.size, min(param.size, 10), replace=False)
        numeric = _numeric_entries(lambda: _loss_with_mask_seed(net, x, t), param, indices)
        assert _relative_error(grads[key].reshape(-1)[indices], numeric) < 1e-6, key


@pytest.mark.parametrize("name", ["two_layer", "multi_relu_decay", "simple_conv"])
def test_numerical_gradient_method(name):
    # The book's numerical_gradient() method, over every entry (numpy backend).
    make, shape, classes = SMALL_NETS[name]
    net = _nonzero_biases(make(seed=2))
    x, t = _data(shape, classes, seed=3)
    numeric = net.numerical_gradient(x, t)
    grads = net.gradient(x, t)
    assert list(numeric) == list(net.params)
    for key in net.params:
        assert _relative_error(grads[key], numeric[key]) < 1e-6, key


def test_batchnorm_input_bias_has_no_gradient():
    # The bias of an Affine feeding batch norm cancels in the normalisation.
    make, shape, classes = SMALL_NETS["extend_batchnorm"]
    net = make(seed=0)
    grads = net.gradient(*_data(shape, classes))
    assert np.max(np.abs(grads["b1"])) < 1e-12 * np.max(np.abs(grads["W1"]))


def test_full_size_deep_convnet_directional_derivative(backend):
    # All 28x28 DeepConvNet parameters at once: d/de loss(params + e*d) at 0
    # must equal <gradient, d> for a random direction d (dropout masks fixed).
    # The step is tiny so that hardly any of the ~10^5 ReLU and max-pool kinks
    # is crossed; float64 round-off stays near 1e-9 of the derivative.
    net = DeepConvNet(seed=3)
    x, t = _data((1, 28, 28), 10, n=3, seed=4)
    grads = _gradient_with_mask_seed(net, x, t)
    rng = np.random.default_rng(5)
    direction = {k: rng.standard_normal(p.shape) for k, p in net.params.items()}
    h = 1e-7

    def shifted_loss(step):
        for k, p in net.params.items():
            p += step * direction[k]
        try:
            return _loss_with_mask_seed(net, x, t)
        finally:
            for k, p in net.params.items():
                p -= step * direction[k]

    numeric = (shifted_loss(h) - shifted_loss(-h)) / (2 * h)
    analytic = sum(float(np.sum(grads[k] * direction[k])) for k in net.params)
    assert abs(numeric - analytic) < 1e-5 * abs(analytic)


@pytest.mark.parametrize("name", SMALL_NETS)
def test_float32_end_to_end(backend, name):
    make, shape, classes = SMALL_NETS[name]
    net32, net64 = make(seed=4, dtype=np.float32), make(seed=4)
    x, t = _data(shape, classes, n=6)
    assert all(p.dtype == np.float32 for p in net32.state().values())
    for x_in in (x, x.astype(np.float32), (x > 0).astype(np.int64)):
        assert net32.predict(x_in).dtype == np.float32
        assert net32.predict(x_in, train_flg=True).dtype == np.float32
    grads32 = _gradient_with_mask_seed(net32, x.astype(np.float32), t)
    grads64 = _gradient_with_mask_seed(net64, x, t)
    assert isinstance(net32.last_loss, float)
    assert net32.last_loss == pytest.approx(net64.last_loss, rel=1e-4)
    scale = max(np.max(np.abs(g)) for g in grads64.values())
    for key in net64.params:
        assert grads32[key].dtype == np.float32, key
        np.testing.assert_allclose(grads32[key], grads64[key], atol=1e-3 * scale, err_msg=key)
    SGD(lr=0.1).update(net32.params, grads32)
    assert all(p.dtype == np.float32 for p in net32.params.values())


@pytest.mark.parametrize("name", SMALL_NETS)
def test_gradients_equal_under_both_backends(name):
    make, shape, classes = SMALL_NETS[name]
    x, t = _data(shape, classes, n=5)
    results = {}
    for backend in ("numpy", "numba"):
        with fastzero.use_backend(backend):
            net = make(seed=6)
            results[backend] = (_gradient_with_mask_seed(net, x, t), net.predict(x))
    (g_np, y_np), (g_nb, y_nb) = results["numpy"], results["numba"]
    np.testing.assert_allclose(y_nb, y_np, rtol=1e-12, atol=1e-12 * np.max(np.abs(y_np)))
    scale = max(np.max(np.abs(g)) for g in g_np.values())
    for key in g_np:
        np.testing.assert_allclose(g_nb[key], g_np[key], rtol=1e-10, atol=1e-13 * scale,
                                   err_msg=key)


@pytest.mark.parametrize("name", SMALL_NETS)
def test_first_layer_computes_no_dx_and_the_same_gradients(backend, monkeypatch, name):
    """gradient() asks its first layer for dW and db only (the dx it would return nobody
    reads): the kernel is told so, every other layer's is not, and the gradients are the
    bits of a full backward pass."""
    make, shape, classes = SMALL_NETS[name]
    x, t = _data(shape, classes, n=5)
    net = make(seed=3)
    kernels = fastzero._backend.kernels()
    asked = []
    for name in ("affine_backward", "conv_backward"):
        def spy(*args, need_dx=True, _kernel=getattr(kernels, name)):
            asked.append(need_dx)
            return _kernel(*args, need_dx=need_dx)
        monkeypatch.setattr(kernels, name, spy)
    skipped = _gradient_with_mask_seed(net, x, t)
    assert asked[-1] is False and all(asked[:-1]) and len(asked) >= 2
    for cls in (Affine, Convolution):
        monkeypatch.setattr(cls, "_backward_params", lambda layer, dout: layer.backward(dout))
    full = _gradient_with_mask_seed(net, x, t)
    assert asked[-1] is True
    for key in full:
        np.testing.assert_array_equal(skipped[key], full[key], err_msg=key)


def test_default_init_follows_np_random_like_the_book():
    np.random.seed(0)
    net = TwoLayerNet(784, 50, 10)
    np.random.seed(0)
    W1 = 0.01 * np.random.randn(784, 50)
    W2 = 0.01 * np.random.randn(50, 10)
    np.testing.assert_array_equal(net.params["W1"], W1)
    np.testing.assert_array_equal(net.params["W2"], W2)
    np.testing.assert_array_equal(net.params["b1"], np.zeros(50))


def test_deep_convnet_matches_the_books_he_initialisation():
    np.random.seed(1)
    net = DeepConvNet()
    np.random.seed(1)
    pre_node_nums = np.array([1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3,
                              64 * 3 * 3, 64 * 4 * 4, 50])
    scales = np.sqrt(2.0 / pre_node_nums)
    channels = 1
    for idx, filters in enumerate([16, 16, 32, 32, 64, 64]):
        W = scales[idx] * np.random.randn(filters, channels, 3, 3)
        np.testing.assert_array_equal(net.params[f"W{idx + 1}"], W)
        channels = filters
    np.testing.assert_array_equal(net.params["W7"], scales[6] * np.random.randn(64 * 4 * 4, 50))
    np.testing.assert_array_equal(net.params["W8"], scales[7] * np.random.randn(50, 10))
    assert list(net.params) == [f"{p}{i}" for i in range(1, 9) for p in "Wb"]
    kinds = [type(layer) for layer in net.layers]
    conv_relu = [Convolution, Relu]
    block = conv_relu + conv_relu + [Pooling]
    assert kinds == block * 3 + [Affine, Relu, Dropout, Affine, Dropout]
    assert [net.layers[i].W is net.params[f"W{n + 1}"]
            for n, i in enumerate((0, 2, 5, 7, 10, 12, 15, 18))] == [True] * 8


def test_multi_layer_net_init_scales():
    for init, expected in [("relu", np.sqrt(2 / 400)), ("he", np.sqrt(2 / 400)),
                           ("sigmoid", np.sqrt(1 / 400)), ("xavier", np.sqrt(1 / 400)), (0.5, 0.5)]:
        net = MultiLayerNet(400, [300], 10, weight_init_std=init, seed=0)
        assert np.std(net.params["W1"]) == pytest.approx(expected, rel=0.02)
    with pytest.raises(ValueError, match="weight_init_std"):
        MultiLayerNet(4, [3], 2, weight_init_std="lecun")
    with pytest.raises(ValueError, match="activation"):
        MultiLayerNet(4, [3], 2, activation="tanh")


def test_seed_keyword_is_reproducible_and_leaves_np_random_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = SimpleConvNet(seed=9), SimpleConvNet(seed=np.random.default_rng(9))
    assert np.array_equal(np.random.get_state()[1], before)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


def test_book_names_and_shapes():
    net = TwoLayerNet(784, 50, 10)
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert net.lastLayer is net.last_layer
    net = MultiLayerNetExtend(784, [100, 80], 10, use_dropout=True, use_batchnorm=True)
    assert list(net.layers) == [
        "Affine1", "BatchNorm1", "Activation_function1", "Dropout1",
        "Affine2", "BatchNorm2", "Activation_function2", "Dropout2", "Affine3",
    ]
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3",
                                "gamma1", "beta1", "gamma2", "beta2"]
    assert net.hidden_layer_num == 2 and net.params["gamma2"].shape == (80,)
    assert isinstance(net.layers, OrderedDict)
    assert isinstance(MultiLayerNet(4, [3], 2, activation="sigmoid").layers["Activation_function1"],
                      Sigmoid)
    net = SimpleConvNet()
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert {k: v.shape for k, v in net.params.items()} == {
        "W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
        "W3": (100, 10), "b3": (10,),
    }
    with pytest.raises(TypeError, match="float32 or float64"):
        SimpleConvNet(dtype=np.int32)


def test_layers_hold_the_params_arrays(backend):
    make, shape, classes = SMALL_NETS["extend_both"]
    net = make(seed=0)
    x, t = _data(shape, classes)
    before = net.predict(x)
    grads = _gradient_with_mask_seed(net, x, t)
    SGD(lr=0.5).update(net.params, grads)
    assert net.layers["Affine1"].W is net.params["W1"]
    assert net.layers["BatchNorm1"].gamma is net.params["gamma1"]
    assert not np.allclose(net.predict(x), before)


def test_weight_decay_term_in_loss():
    net = MultiLayerNet(6, [5], 3, weight_decay_lambda=0.0, seed=0)
    decayed = MultiLayerNet(6, [5], 3, weight_decay_lambda=0.25, seed=0)
    x, t = _data((6,), 3)
    expected = 0.5 * 0.25 * (np.sum(net.params["W1"] ** 2) + np.sum(net.params["W2"] ** 2))
    assert decayed.loss(x, t) == pytest.approx(net.loss(x, t) + expected, rel=1e-12)
    assert decayed.gradient(x, t)["b1"] == pytest.approx(net.gradient(x, t)["b1"])
    assert decayed.last_loss == pytest.approx(decayed.loss(x, t), rel=1e-12)


def test_batchnorm_running_statistics_are_buffers(backend):
    net = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0)
    x, t = _data((6,), 3, n=32)
    assert set(net.buffers) == {"running_mean1", "running_var1"}
    layer = net.layers["BatchNorm1"]
    assert layer.running_mean is net.buffers["running_mean1"]
    net.gradient(x, t)
    h = x @ net.params["W1"] + net.params["b1"]
    np.testing.assert_allclose(net.buffers["running_mean1"], 0.1 * h.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(net.buffers["running_var1"], 0.1 * h.var(axis=0), rtol=1e-10)
    # Inference normalises with the running statistics, not the batch's.
    std = np.sqrt(net.buffers["running_var1"] + BatchNormalization.eps)
    hidden = np.maximum((h - net.buffers["running_mean1"]) / std, 0)
    np.testing.assert_allclose(net.predict(x), hidden @ net.params["W2"] + net.params["b2"],
                               rtol=1e-10)


def test_accuracy_counts_every_sample_and_takes_one_hot(backend):
    net = TwoLayerNet(6, 5, 3, weight_init_std=1.0, seed=0)
    x, t = _data((6,), 3, n=250)
    expected = np.mean(np.argmax(net.predict(x), axis=1) == t)
    assert net.accuracy(x, t) == expected  # 2 full batches of 100 and one of 50
    assert net.accuracy(x, np.eye(3)[t], batch_size=7) == expected


def test_dropout_scales_at_inference():
    net = MultiLayerNetExtend(6, [5], 3, use_dropout=True, dropout_ration=0.4, seed=0)
    x, _ = _data((6,), 3)
    hidden = np.maximum(x @ net.params["W1"] + net.params["b1"], 0) * 0.6
    np.testing.assert_allclose(net.predict(x), hidden @ net.params["W2"] + net.params["b2"],
                               rtol=1e-12)
