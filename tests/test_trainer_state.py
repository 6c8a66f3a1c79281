"""Trainer and the state of a network's layers (batch-norm running statistics):
a diverging step leaves it as it was, and checkpoints keep it, for fastzero's
networks and for a network written the way the book writes its own."""
from collections import OrderedDict

import numpy as np
import pytest

from fastzero import blocks
from fastzero.layers import Affine, BatchNormalization, Relu, SoftmaxWithLoss
from fastzero.nets import MultiLayerNetExtend
from fastzero.trainer import Trainer, TrainingDiverged
from test_trainer import _blobs


class BookStyleNetExtend:
    """A plain object in the book's ``MultiLayerNetExtend(use_batchnorm=True)`` style:
    ``params``, an ``OrderedDict`` of layers whose batch norms create their own
    running statistics, ``last_layer``, ``loss``/``gradient``/``accuracy``; no
    ``buffers``, no ``last_loss``."""

    def __init__(self, input_size, hidden_size_list, output_size, seed):
        rng = np.random.default_rng(seed)
        sizes = [input_size, *hidden_size_list, output_size]
        self.hidden_layer_num = len(hidden_size_list)
        self.params = {}
        self.layers = OrderedDict()
        for idx in range(1, len(sizes)):
            self.params[f"W{idx}"] = rng.standard_normal(sizes[idx - 1:idx + 1]) * np.sqrt(
                2.0 / sizes[idx - 1])
            self.params[f"b{idx}"] = np.zeros(sizes[idx])
            self.layers[f"Affine{idx}"] = Affine(self.params[f"W{idx}"], self.params[f"b{idx}"])
            if idx < len(sizes) - 1:
                self.params[f"gamma{idx}"] = np.ones(sizes[idx])
                self.params[f"beta{idx}"] = np.zeros(sizes[idx])
                self.layers[f"BatchNorm{idx}"] = BatchNormalization(
                    self.params[f"gamma{idx}"], self.params[f"beta{idx}"])
                self.layers[f"Activation_function{idx}"] = Relu()
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for key, layer in self.layers.items():
            x = layer.forward(x, train_flg) if "BatchNorm" in key else layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        return self.last_layer.forward(self.predict(x, train_flg), t)

    def accuracy(self, x, t):
        return float(np.sum(np.argmax(self.predict(x), axis=1) == t) / x.shape[0])

    def gradient(self, x, t):
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            affine = self.layers[f"Affine{idx}"]
            grads[f"W{idx}"], grads[f"b{idx}"] = affine.dW, affine.db
            if idx <= self.hidden_layer_num:
                norm = self.layers[f"BatchNorm{idx}"]
                grads[f"gamma{idx}"], grads[f"beta{idx}"] = norm.dgamma, norm.dbeta
        return grads


NETS = {
    "fastzero": lambda seed: MultiLayerNetExtend(8, [10, 6], 3, use_batchnorm=True, seed=seed),
    "book_style": lambda seed: BookStyleNetExtend(8, [10, 6], 3, seed=seed),
}


@pytest.fixture
def data():
    (x, t), (xt, tt) = _blobs(120, 1), _blobs(60, 2)
    return x, t, xt, tt


def _trainer(net, data, **kw):
    return Trainer(net, *data, epochs=2, mini_batch_size=40, optimizer="Adam",
                   optimizer_param={"lr": 0.01}, verbose=False, seed=0, **kw)


@pytest.mark.parametrize("kind", NETS)
def test_diverging_step_leaves_the_running_statistics_alone(backend, data, kind):
    net = NETS[kind](seed=0)
    trainer = _trainer(net, data)
    for _ in range(2):
        trainer.train_step()
    buffers = blocks.network_buffers(net)
    assert len(buffers) == 4
    before = {name: value.copy() for name, value in buffers.items()}
    predicted = net.predict(data[2])
    weight = net.params["W1"][0, 0]
    net.params["W1"][0, 0] = np.nan
    with pytest.raises(TrainingDiverged):
        trainer.train_step()
    for name, value in blocks.network_buffers(net).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    net.params["W1"][0, 0] = weight
    np.testing.assert_array_equal(net.predict(data[2]), predicted)


@pytest.mark.parametrize("kind", NETS)
def test_resumed_run_keeps_the_running_statistics(backend, tmp_path, data, kind):
    uninterrupted = NETS[kind](seed=1)
    trainer_a = _trainer(uninterrupted, data)
    trainer_a.train()

    path = tmp_path / "checkpoint.npz"
    trainer_b = _trainer(NETS[kind](seed=1), data, checkpoint=path)
    for _ in range(trainer_b.iter_per_epoch):  # one epoch, then "interrupted"
        trainer_b.train_step()

    resumed = NETS[kind](seed=2)
    trainer_c = _trainer(resumed, data)
    trainer_c.load_checkpoint(path)
    for name, value in blocks.network_buffers(trainer_b.network).items():
        np.testing.assert_array_equal(blocks.network_buffers(resumed)[name], value, err_msg=name)
    trainer_c.train()
    np.testing.assert_array_equal(resumed.predict(data[2]), uninterrupted.predict(data[2]))
    assert trainer_c.test_acc_list == trainer_a.test_acc_list
    assert trainer_c.final_test_acc == trainer_a.final_test_acc


def test_state_that_cannot_be_captured_is_refused_before_a_step(data):
    net = BookStyleNetExtend(8, [10, 6], 3, seed=0)
    net.layers["BatchNorm1"].running_mean = [0.0] * 10  # not an array: cannot be restored
    before = {name: value.copy() for name, value in net.params.items()}
    trainer = _trainer(net, data)
    with pytest.raises(TypeError, match="BatchNormalization: running_mean must be a float64 ndarray"):
        trainer.train_step()
    assert trainer.current_iter == 0
    for name, value in net.params.items():
        np.testing.assert_array_equal(value, before[name])
