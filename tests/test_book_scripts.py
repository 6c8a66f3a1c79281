"""The code paths of the book's chapter 5-8 scripts, with fastzero in place of ``common``.

Each test follows what one or more of the book's scripts do (its current
repository) on small data: the names a star import hands a script, Python
floats as optimizer parameters, a scalar bias, labels shaped (N, 1), soft
targets, reproducibility from ``np.random.seed`` alone, and the Trainer's
per-epoch lists. The scripts themselves are not copied here.
"""
import numpy as np
import pytest

from fastzero.gradient import numerical_gradient, numerical_gradient_2d
from fastzero.layers import Convolution, Pooling
from fastzero.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from fastzero.optimizer import SGD, Adam
from fastzero.trainer import Trainer

# ---------------------------------------------------------------- star imports

_FUNCTIONS = ["cross_entropy_error", "identity_function", "np", "relu", "relu_grad", "sigmoid",
              "sigmoid_grad", "softmax", "softmax_loss", "step_function", "sum_squared_error"]
_LAYERS = ["Affine", "BatchNormalization", "Convolution", "Dropout", "Pooling", "Relu", "Sigmoid",
           "SoftmaxWithLoss", "col2im", "im2col", *_FUNCTIONS]
_OPTIMIZERS = ["AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop", "SGD", "np"]
_NET_MODULE = [*_LAYERS, "OrderedDict", "os", "sys"]

#: fastzero module -> the names ``from <book module> import *`` gives a script
#: (the book's modules have no ``__all__``), listed from the book's current code.
BOOK_STAR_NAMES = {
    "fastzero.functions": _FUNCTIONS,  # common/functions.py
    "fastzero.gradient": ["np", "numerical_gradient", "numerical_gradient_2d"],  # common/gradient.py
    "fastzero.layers": _LAYERS,  # common/layers.py
    "fastzero.optimizer": _OPTIMIZERS,  # common/optimizer.py
    "fastzero.util": ["col2im", "conv_output_size", "im2col", "np", "shuffle_dataset",
                      "smooth_curve"],  # common/util.py
    "fastzero.trainer": [*_OPTIMIZERS, "Trainer", "os", "sys"],  # common/trainer.py
    "fastzero.nets.multi_layer_net": [*_NET_MODULE, "MultiLayerNet", "numerical_gradient"],
    "fastzero.nets.multi_layer_net_extend": [*_NET_MODULE, "MultiLayerNetExtend",
                                             "numerical_gradient"],
    "fastzero.nets.two_layer_net": [*_NET_MODULE, "TwoLayerNet", "numerical_gradient"],  # ch05
    "fastzero.nets.simple_convnet": [*_NET_MODULE, "SimpleConvNet", "numerical_gradient",
                                     "pickle"],  # ch07
    "fastzero.nets.deep_convnet": [*_NET_MODULE, "DeepConvNet", "pickle"],  # ch08
}


@pytest.mark.parametrize("module", list(BOOK_STAR_NAMES))
def test_star_import_gives_every_name_the_books_module_gives(module):
    """``ch06/optimizer_compare_mnist.py`` uses the ``np`` its star import hands it."""
    namespace: dict = {}
    exec(f"from {module} import *", namespace)
    missing = sorted(set(BOOK_STAR_NAMES[module]) - set(namespace))
    assert missing == []
    assert namespace["np"] is np
    for name in namespace:
        assert not name.startswith("_") or name == "__builtins__"


def test_star_imported_names_are_the_real_things():
    namespace: dict = {}
    exec("from fastzero.nets.simple_convnet import *", namespace)
    assert namespace["SimpleConvNet"] is SimpleConvNet
    assert namespace["Pooling"] is Pooling
    assert namespace["numerical_gradient"] is numerical_gradient
    import collections
    import os
    import pickle
    import sys
    assert (namespace["OrderedDict"], namespace["os"], namespace["sys"], namespace["pickle"]) == (
        collections.OrderedDict, os, sys, pickle)
    namespace = {}
    exec("from fastzero.trainer import *", namespace)
    assert namespace["Adam"] is Adam


# ----------------------------------------------------- ch04/ch05: gradients

def test_numerical_gradient_2d_is_row_wise_as_the_books():
    """``common.gradient.numerical_gradient_2d``: a 1-D ``X`` is one point; each row of a
    2-D ``X`` is a point of its own, and ``f`` sees one row at a time."""
    def f(x):
        assert x.ndim == 1
        return float(np.sum(x ** 2) + x[0] * x[-1])

    x = np.array([3.0, -1.0, 2.0])
    np.testing.assert_allclose(numerical_gradient_2d(f, x), [2 * 3 + 2, -2, 2 * 2 + 3], rtol=1e-7)
    X = np.array([[3.0, -1.0, 2.0], [0.5, 4.0, -2.0]])
    before = X.copy()
    expected = 2 * X
    expected[:, 0] += X[:, -1]
    expected[:, -1] += X[:, 0]
    np.testing.assert_allclose(numerical_gradient_2d(f, X), expected, rtol=1e-7)
    np.testing.assert_array_equal(X, before)
    with pytest.raises(ValueError, match="numerical_gradient_2d"):
        numerical_gradient_2d(f, np.zeros((2, 2, 2)))


def _run(source: str) -> dict:
    """Run a small script the way the book's scripts are written: its names come from
    its own (star) imports only. Returns its namespace."""
    namespace: dict = {"__name__": "__book_script__"}
    exec(compile(source, "<book-style script>", "exec"), namespace)
    return namespace


def _one_hot(labels, k):
    return np.eye(k)[labels]


# ------------------------------------------------------------------ chapter 5

def test_ch05_buy_apple_orange_layers():
    """``ch05/buy_apple_orange.py``: the multiplication and addition layers."""
    ns = _run(
        "from fastzero.layers import *\n"
        "apple, apple_num, orange, orange_num, tax = 100, 2, 150, 3, 1.1\n"
        "mul_apple, mul_orange, add, mul_tax = MulLayer(), MulLayer(), AddLayer(), MulLayer()\n"
        "price = mul_tax.forward(add.forward(mul_apple.forward(apple, apple_num),\n"
        "                                    mul_orange.forward(orange, orange_num)), tax)\n"
        "dall_price, dtax = mul_tax.backward(1)\n"
        "dapple_price, dorange_price = add.backward(dall_price)\n"
        "dorange, dorange_num = mul_orange.backward(dorange_price)\n"
        "dapple, dapple_num = mul_apple.backward(dapple_price)\n"
    )
    assert ns["price"] == pytest.approx(715.0)
    assert (ns["dapple"], ns["dapple_num"], ns["dorange"], ns["dorange_num"], ns["dtax"]) == \
        pytest.approx((2.2, 110.0, 3.3, 165.0, 650.0))


def test_ch05_gradient_check_two_layer_net(backend):
    """``ch05/gradient_check.py``: numerical vs backprop gradients, one-hot labels."""
    rng = np.random.default_rng(0)
    net = TwoLayerNet(input_size=12, hidden_size=6, output_size=4)
    x, t = rng.random((3, 12)), _one_hot([0, 3, 1], 4)
    numerical, backprop = net.numerical_gradient(x, t), net.gradient(x, t)
    for key in ("W1", "b1", "W2", "b2"):
        assert np.average(np.abs(backprop[key] - numerical[key])) < 1e-6, key


def test_ch05_train_neuralnet_updates_params_in_place(backend):
    """``ch05/train_neuralnet.py``: ``network.params[key] -= learning_rate * grad[key]``
    in a loop of ``np.random.choice`` batches; the layers see the updates."""
    np.random.seed(0)
    x = np.random.rand(60, 12)
    t = _one_hot(np.argmax(x[:, :4], axis=1), 4)
    net = TwoLayerNet(input_size=12, hidden_size=8, output_size=4, weight_init_std=0.5)
    first = net.loss(x, t)
    for _ in range(200):
        mask = np.random.choice(60, 10)
        grad = net.gradient(x[mask], t[mask])
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.5 * grad[key]
    assert net.layers["Affine1"].W is net.params["W1"]
    assert net.loss(x, t) < first
    assert net.accuracy(x, t) > 0.5


# ------------------------------------------------------------------ chapter 6

def test_ch06_optimizer_compare_naive_runs_with_float_params(backend):
    """``ch06/optimizer_compare_naive.py``: Python floats in ``params``, ``np`` from the
    star import, 30 steps of each optimizer towards the minimum of x**2/20 + y**2."""
    ns = _run(
        "from collections import OrderedDict\n"
        "from fastzero.optimizer import *\n"
        "def df(x, y):\n"
        "    return x / 10.0, 2.0 * y\n"
        "optimizers = OrderedDict(SGD=SGD(lr=0.95), Momentum=Momentum(lr=0.1),\n"
        "                         AdaGrad=AdaGrad(lr=1.5), Adam=Adam(lr=0.3))\n"
        "history = {}\n"
        "for key, optimizer in optimizers.items():\n"
        "    params, grads = {'x': -7.0, 'y': 2.0}, {'x': 0, 'y': 0}\n"
        "    xs, ys = [], []\n"
        "    for i in range(30):\n"
        "        xs.append(params['x'])\n"
        "        ys.append(params['y'])\n"
        "        grads['x'], grads['y'] = df(params['x'], params['y'])\n"
        "        optimizer.update(params, grads)\n"
        "    history[key] = np.array(xs), np.array(ys)\n"
    )
    for key, (xs, ys) in ns["history"].items():
        assert xs.shape == ys.shape == (30,) and xs.dtype == np.float64, key
        assert abs(xs[-1]) < 7.0 and abs(ys[-1]) < 2.0, key
    # SGD written out: x -= 0.95 * x / 10, y -= 0.95 * 2 * y
    np.testing.assert_allclose(ns["history"]["SGD"][0], -7.0 * 0.905 ** np.arange(30), rtol=1e-12)


def test_ch06_optimizer_compare_mnist_uses_the_star_imported_np(backend):
    """``ch06/optimizer_compare_mnist.py``: ``np`` comes from ``from common.optimizer import *``."""
    ns = _run(
        "from fastzero.util import smooth_curve\n"
        "from fastzero.nets.multi_layer_net import MultiLayerNet\n"
        "from fastzero.optimizer import *\n"
        "np.random.seed(0)\n"
        "x_train = np.random.rand(50, 10)\n"
        "t_train = np.argmax(x_train[:, :3], axis=1)\n"
        "optimizers = {'SGD': SGD(), 'Momentum': Momentum(), 'AdaGrad': AdaGrad(), 'Adam': Adam(),\n"
        "              'Nesterov': Nesterov(), 'RMSprop': RMSprop()}\n"
        "networks, train_loss = {}, {}\n"
        "for key in optimizers:\n"
        "    networks[key] = MultiLayerNet(input_size=10, hidden_size_list=[8, 8], output_size=3)\n"
        "    train_loss[key] = []\n"
        "for i in range(12):\n"
        "    batch_mask = np.random.choice(50, 10)\n"
        "    for key in optimizers:\n"
        "        grads = networks[key].gradient(x_train[batch_mask], t_train[batch_mask])\n"
        "        optimizers[key].update(networks[key].params, grads)\n"
        "        train_loss[key].append(networks[key].loss(x_train[batch_mask], t_train[batch_mask]))\n"
        "smoothed = {key: smooth_curve(train_loss[key]) for key in optimizers}\n"
    )
    for key, curve in ns["smoothed"].items():
        assert curve.shape == (12,) and np.all(np.isfinite(curve)), key


def test_ch06_batch_norm_gradient_check(backend):
    """``ch06/batch_norm_gradient_check.py``: one sample, one-hot label, batch norm on."""
    np.random.seed(1)
    net = MultiLayerNetExtend(input_size=12, hidden_size_list=[6, 6], output_size=4,
                              use_batchnorm=True)
    x, t = np.random.rand(3, 12), _one_hot([2, 0, 1], 4)
    # the script's single sample puts every unit after batch norm on the ReLU kink
    # (the output is beta = 0): the two gradients differ there, in the book as well
    one = net.gradient(x[:1], t[:1]), net.numerical_gradient(x[:1], t[:1])
    for grads in one:
        assert set(grads) == set(net.params)
        assert all(np.all(np.isfinite(g)) for g in grads.values())
    backprop = net.gradient(x, t)
    numerical = net.numerical_gradient(x, t)
    for key in numerical:
        assert np.average(np.abs(backprop[key] - numerical[key])) < 1e-6, key


@pytest.mark.parametrize("init", ["sigmoid", "relu", 0.01])
def test_ch06_weight_init_weight_decay_and_batch_norm_loops(backend, init):
    """``ch06/weight_init_compare.py``, ``overfit_weight_decay.py``, ``batch_norm_test.py``:
    ``SGD.update(network.params, grads)`` with weight decay or batch norm, int labels."""
    np.random.seed(2)
    x = np.random.rand(40, 10)
    t = np.argmax(x[:, :3], axis=1)
    nets = [MultiLayerNet(10, [8, 8], 3, weight_init_std=init, weight_decay_lambda=0.1),
            MultiLayerNetExtend(10, [8, 8], 3, weight_init_std=init, use_batchnorm=True)]
    optimizer = SGD(lr=0.01)
    for _ in range(5):
        mask = np.random.choice(40, 10)
        for net in nets:
            optimizer.update(net.params, net.gradient(x[mask], t[mask]))
    for net in nets:
        assert 0.0 <= net.accuracy(x, t) <= 1.0
        assert np.isfinite(net.loss(x, t))


# ------------------------------------------------------------------ chapter 7

def test_ch07_gradient_check_with_labels_shaped_n_by_1(backend):
    """``ch07/gradient_check.py``: SimpleConvNet on one 10x10 image, ``T`` shaped (1, 1)."""
    np.random.seed(3)
    net = SimpleConvNet(input_dim=(1, 10, 10),
                        conv_param={"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
                        hidden_size=5, output_size=10, weight_init_std=0.01)
    X = np.random.rand(100).reshape((1, 1, 10, 10))
    T = np.array([1]).reshape((1, 1))
    numerical, grad = net.numerical_gradient(X, T), net.gradient(X, T)
    same = net.gradient(X, np.array([1]))
    for key, val in numerical.items():
        np.testing.assert_array_equal(grad[key], same[key])
        # the median: an entry whose h = 1e-4 step crosses a ReLU or max-pool kink is off
        assert np.median(np.abs(val - grad[key])) < 1e-6 * np.abs(grad[key]).max() + 1e-10, key
    assert net.loss(X, T) == net.loss(X, np.array([1]))


def test_ch07_apply_filter_with_a_scalar_bias(backend):
    """``ch07/apply_filter.py``: one float64 filter, ``b = 0``, a float32 image."""
    np.random.seed(4)
    filters = np.random.randn(3, 1, 5, 5)
    img = np.random.rand(12, 12).astype(np.float32)
    img = img.reshape(1, 1, *img.shape)
    for i in range(3):
        w = filters[i].reshape(1, *filters[i].shape)
        out = Convolution(w, 0).forward(img)
        assert out.shape == (1, 1, 8, 8)
        np.testing.assert_array_equal(out, Convolution(w, np.zeros(1)).forward(img))
        out = out.reshape(out.shape[2], out.shape[3])  # what the script shows


def test_ch07_ch08_pooling_layers_are_the_books():
    """``Pooling(pool_h=2, pool_w=2, stride=2)`` in both CNNs; the default stride is 2."""
    nets = [SimpleConvNet(seed=0), DeepConvNet(seed=0)]
    pools = [layer for net in nets for layer in
             (net.layers.values() if isinstance(net.layers, dict) else net.layers)
             if isinstance(layer, Pooling)]
    assert len(pools) == 4
    assert {(p.pool_h, p.pool_w, p.stride, p.pad) for p in pools} == {(2, 2, 2, 0)}
    default = Pooling(pool_h=2, pool_w=2)
    assert (default.stride, default.pad) == (2, 0)


# ---------------------------------------------- soft targets (label smoothing, mixup)

def test_mixup_targets_through_a_network(backend):
    """The book's SoftmaxWithLoss takes soft target rows; its gradient is linear in them,
    so a mixup batch's gradient is the mix of the two one-hot gradients."""
    net = TwoLayerNet(10, 6, 3, seed=5)
    x = np.random.default_rng(5).random((4, 10))
    a, b = _one_hot([0, 1, 2, 0], 3), _one_hot([1, 1, 0, 2], 3)
    lam = 0.7
    ga, gb = net.gradient(x, a), net.gradient(x, b)
    mixed = net.gradient(x, lam * a + (1 - lam) * b)
    for key in ga:
        np.testing.assert_allclose(mixed[key], lam * ga[key] + (1 - lam) * gb[key],
                                   rtol=1e-10, atol=1e-13)
    smooth = 0.9 * a + 0.1 / 3
    assert net.accuracy(x, smooth) == net.accuracy(x, [0, 1, 2, 0])
    assert net.loss(x, smooth) == net.loss(x, a)  # the book's loss: the argmax class's


# ------------------------------------------------ np.random.seed reproducibility

def test_np_random_seed_reproduces_the_books_weights():
    """The book draws every weight from ``np.random.randn`` in construction order, so
    ``np.random.seed`` alone fixes a network (and so its whole seeded run)."""
    np.random.seed(6)
    net = TwoLayerNet(input_size=7, hidden_size=5, output_size=3)
    np.random.seed(6)
    np.testing.assert_array_equal(net.params["W1"], 0.01 * np.random.randn(7, 5))
    np.testing.assert_array_equal(net.params["W2"], 0.01 * np.random.randn(5, 3))
    np.testing.assert_array_equal(net.params["b1"], np.zeros(5))

    conv = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}
    np.random.seed(7)
    net = SimpleConvNet(input_dim=(1, 8, 8), conv_param=conv, hidden_size=4, output_size=2)
    np.random.seed(7)
    for key, shape in (("W1", (3, 1, 3, 3)), ("W2", (3 * 3 * 3, 4)), ("W3", (4, 2))):
        np.testing.assert_array_equal(net.params[key], 0.01 * np.random.randn(*shape))

    np.random.seed(8)
    net = MultiLayerNet(input_size=6, hidden_size_list=[5, 4], output_size=3)
    np.random.seed(8)
    for key, (fan_in, fan_out) in (("W1", (6, 5)), ("W2", (5, 4)), ("W3", (4, 3))):
        np.testing.assert_array_equal(net.params[key],
                                      np.sqrt(2.0 / fan_in) * np.random.randn(fan_in, fan_out))


@pytest.mark.parametrize("make", [
    lambda: MultiLayerNetExtend(10, [8, 8], 3, use_dropout=True, dropout_ration=0.2,
                                use_batchnorm=True),
    lambda: DeepConvNet(input_dim=(1, 8, 8), hidden_size=6, output_size=3),
], ids=["MultiLayerNetExtend", "DeepConvNet"])
def test_np_random_seed_reproduces_construction_and_dropout(backend, make):
    """Two runs after the same ``np.random.seed``: same weights, same dropout masks,
    same gradients."""
    def run():
        np.random.seed(9)
        net = make()
        shape = (4, 1, 8, 8) if isinstance(net, DeepConvNet) else (4, 10)
        x = np.random.rand(*shape)
        return net, net.gradient(x, np.array([0, 2, 1, 0]))

    (net_a, grads_a), (net_b, grads_b) = run(), run()
    for key in net_a.params:
        np.testing.assert_array_equal(net_a.params[key], net_b.params[key])
        np.testing.assert_array_equal(grads_a[key], grads_b[key])


# ------------------------------------------------------------------ the Trainer

def _trainer_data(n_train=300, n_test=120, d=10, k=3):
    x = np.random.rand(n_train + n_test, d)
    t = np.argmax(x[:, :k], axis=1)
    return x[:n_train], t[:n_train], x[n_train:], t[n_train:]


@pytest.mark.parametrize("evaluate", [None, 50])
def test_trainer_lists_have_the_books_lengths(backend, evaluate):
    """``ch06/overfit_dropout.py``, ``ch07/train_convnet.py``: the scripts plot
    ``train_acc_list``/``test_acc_list`` against ``np.arange(max_epochs)``: one accuracy
    per epoch, one loss per step, ``iter_per_epoch = train_size / mini_batch_size``."""
    np.random.seed(10)
    x_train, t_train, x_test, t_test = _trainer_data()
    net = MultiLayerNetExtend(10, [8, 8], 3, use_dropout=True, dropout_ration=0.2)
    max_epochs = 4
    trainer = Trainer(net, x_train, t_train, x_test, t_test, epochs=max_epochs,
                      mini_batch_size=100, optimizer="sgd", optimizer_param={"lr": 0.01},
                      evaluate_sample_num_per_epoch=evaluate, verbose=False)
    trainer.train()
    assert trainer.iter_per_epoch == 300 / 100
    assert trainer.max_iter == max_epochs * 3
    assert len(trainer.train_loss_list) == max_epochs * 3
    x = np.arange(max_epochs)
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == len(x)
    assert all(0.0 <= a <= 1.0 for a in trainer.train_acc_list + trainer.test_acc_list)


def test_trainer_run_is_reproduced_by_np_random_seed_alone(backend):
    """``ch06/hyperparameter_optimization.py`` and every Trainer script: no ``seed=``
    argument exists in the book, so ``np.random.seed`` before building the network and
    the Trainer must make the whole run (weights, batches, dropout) reproducible."""
    def run():
        np.random.seed(11)
        x_train, t_train, x_test, t_test = _trainer_data()
        net = MultiLayerNetExtend(10, [8, 8], 3, use_dropout=True, dropout_ration=0.2)
        trainer = Trainer(net, x_train, t_train, x_test, t_test, epochs=2, mini_batch_size=100,
                          optimizer="sgd", optimizer_param={"lr": 0.1}, verbose=False)
        trainer.train()
        return trainer

    a, b = run(), run()
    assert a.train_loss_list == b.train_loss_list
    assert a.train_acc_list == b.train_acc_list and a.test_acc_list == b.test_acc_list
