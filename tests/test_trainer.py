"""Trainer: learning, history, sampling, divergence, checkpoints and exact resume.

Determinism, divergence, interrupts and bit-exact resume run on every backend
(the ``backend`` fixture); the tests of bookkeeping alone run on numpy.
"""
import os
import signal

import numpy as np
import pytest

import fastzero
from fastzero.nets import MultiLayerNetExtend, TwoLayerNet
from fastzero.trainer import Trainer, TrainingDiverged


@pytest.fixture(autouse=True)
def numpy_unless_every_backend(request):
    """The numpy backend, except in tests that take the ``backend`` fixture (both)."""
    if "backend" in request.fixturenames:
        yield
        return
    with fastzero.use_backend("numpy"):
        yield


def _blobs(n, seed, dim=8, classes=3):
    """Gaussian blobs around fixed class centres: learnable, not trivially separable."""
    centres = np.random.default_rng(0).standard_normal((classes, dim)) * 1.5
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, n)
    return centres[t] + rng.standard_normal((n, dim)), t


@pytest.fixture
def data():
    (x, t), (xt, tt) = _blobs(250, 1), _blobs(120, 2)
    return x, t, xt, tt


class Recorder:
    """A network stand-in that records which samples each step saw (x holds sample ids)."""

    def __init__(self):
        self.params = {"W": np.zeros(1)}
        self.batches = []

    def gradient(self, x, t):
        self.batches.append(x[:, 0].astype(int).tolist())
        return {"W": np.zeros(1)}

    def loss(self, x, t):
        return 1.0

    def accuracy(self, x, t):
        return 0.5


def test_loss_falls_and_history_lengths(data):
    net = TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=0)
    trainer = Trainer(net, *data, epochs=8, mini_batch_size=50, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    assert (trainer.iter_per_epoch, trainer.max_iter) == (5, 40)
    final = trainer.train()
    assert len(trainer.train_loss_list) == 40
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 8
    assert np.mean(trainer.train_loss_list[-5:]) < 0.5 * np.mean(trainer.train_loss_list[:5])
    assert trainer.test_acc_list[-1] > 0.8
    assert final == trainer.final_test_acc == net.accuracy(data[2], data[3])
    assert trainer.train_acc_list[-1] == net.accuracy(data[0], data[1])  # measured at epoch end


def test_shuffled_epochs_visit_every_sample_once():
    x = np.arange(250, dtype=float)[:, None]
    net = Recorder()
    trainer = Trainer(net, x, np.zeros(250), x[:10], np.zeros(10), epochs=2,
                      mini_batch_size=100, verbose=False, seed=3)
    trainer.train()
    assert [len(b) for b in net.batches] == [100, 100, 50] * 2
    first, second = sum(net.batches[:3], []), sum(net.batches[3:], [])
    assert sorted(first) == sorted(second) == list(range(250))
    assert first != second and first != list(range(250))


def test_replacement_sampling_like_the_book():
    x = np.arange(250, dtype=float)[:, None]
    net = Recorder()
    Trainer(net, x, np.zeros(250), x[:10], np.zeros(10), epochs=2, mini_batch_size=100,
            verbose=False, seed=3, replacement=True).train()
    assert [len(b) for b in net.batches] == [100] * 6
    assert any(len(set(b)) < len(b) for b in net.batches)  # duplicates within a batch


def test_one_forward_pass_per_step(data):
    net = MultiLayerNetExtend(8, [6], 3, use_dropout=True, seed=0)
    calls = []
    loss = net.loss
    net.loss = lambda *a, **k: calls.append(1) or loss(*a, **k)
    trainer = Trainer(net, *data, epochs=1, mini_batch_size=50, verbose=False, seed=0)
    for _ in range(3):
        recorded = trainer.train_step()
        assert recorded == net.last_loss == trainer.train_loss_list[-1]
    assert len(calls) == 3


def test_same_seed_same_run_different_seed_different_run(data, backend):
    def run(seed):
        net = MultiLayerNetExtend(8, [6], 3, use_dropout=True, seed=0)
        Trainer(net, *data, epochs=2, mini_batch_size=50, verbose=False, seed=seed).train()
        return net.params["W1"]

    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))


def test_divergence_names_the_step_and_skips_the_update(data, backend):
    net = TwoLayerNet(8, 6, 3, seed=0)
    trainer = Trainer(net, *data, epochs=2, mini_batch_size=50, verbose=False, seed=0)
    for _ in range(7):
        trainer.train_step()
    net.params["W2"][0, 0] = np.nan
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 8 of 10 \(epoch 2, step 3 of 5\)"):
        trainer.train_step()
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])
    assert len(trainer.train_loss_list) == 7
    assert issubclass(TrainingDiverged, FloatingPointError)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # BLAS in worker threads
def test_huge_learning_rate_stops_with_a_clear_error(data, backend):
    net = TwoLayerNet(8, 6, 3, weight_init_std=1.0, seed=0)
    trainer = Trainer(net, *data, epochs=50, mini_batch_size=50, optimizer="sgd",
                      optimizer_param={"lr": 1e30}, verbose=False, seed=0)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match=r"at step \d+ of 250"):
        trainer.train()


class LrRecorder:
    """An optimizer stand-in that records the learning rate of every update."""

    def __init__(self, lr):
        self.lr = lr
        self.seen = []

    def update(self, params, grads):
        self.seen.append(self.lr)


def _lr_run(lr_schedule, epochs=2):
    x = np.arange(10, dtype=float)[:, None]
    optimizer = LrRecorder(0.5)
    trainer = Trainer(Recorder(), x, np.zeros(10), x, np.zeros(10), epochs=epochs,
                      mini_batch_size=5, optimizer=optimizer, verbose=False,
                      lr_schedule=lr_schedule)
    trainer.train()
    return trainer, optimizer.seen


def test_cosine_schedule_falls_from_lr_to_zero():
    trainer, seen = _lr_run("cosine", epochs=3)
    steps = np.arange(6)
    np.testing.assert_allclose(seen, 0.25 * (1 + np.cos(np.pi * steps / 6)), rtol=1e-15)
    assert seen[0] == 0.5 and 0 < seen[-1] < 0.05
    assert [trainer.learning_rate(i) for i in steps] == seen
    assert trainer.learning_rate(6) == trainer.learning_rate(100) == 0.0  # past the end


def test_constant_schedule_leaves_the_learning_rate_alone():
    trainer, seen = _lr_run("constant")
    assert seen == [0.5] * 4 and trainer.learning_rate(3) == 0.5


def test_cosine_schedule_in_the_epoch_lines(data, capsys):
    net = TwoLayerNet(8, 6, 3, seed=0)
    Trainer(net, *data, epochs=2, mini_batch_size=50, optimizer="adam", verbose=True,
            lr_schedule="cosine").train()
    out = capsys.readouterr().out
    assert "epoch 1/2: train loss" in out
    assert f", lr {0.01 * (1 + np.cos(np.pi * 4 / 10)) / 2:.3g} (" in out  # step 5 of 10, lr 0.01


def _resumable(data, seed, checkpoint=None, epochs=3, lr_schedule="constant"):
    net = MultiLayerNetExtend(8, [10, 6], 3, use_dropout=True, dropout_ration=0.2,
                              use_batchnorm=True, seed=seed)
    trainer = Trainer(net, *data, epochs=epochs, mini_batch_size=40, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, verbose=False, seed=seed, checkpoint=checkpoint,
                      lr_schedule=lr_schedule)
    return net, trainer


def _assert_same_run(resumed, uninterrupted):
    """Bit for bit: parameters, batch-norm statistics and history."""
    net_c, net_a = resumed.network, uninterrupted.network
    for key in net_a.params:
        np.testing.assert_array_equal(net_c.params[key], net_a.params[key], err_msg=key)
    for key in net_a.buffers:
        np.testing.assert_array_equal(net_c.buffers[key], net_a.buffers[key], err_msg=key)
    assert resumed.train_loss_list == uninterrupted.train_loss_list
    assert resumed.train_acc_list == uninterrupted.train_acc_list
    assert resumed.test_acc_list == uninterrupted.test_acc_list


@pytest.mark.parametrize("mid_epoch, lr_schedule",
                         [(False, "constant"), (True, "constant"), (True, "cosine")])
def test_resume_from_checkpoint_is_bitwise_identical(tmp_path, data, mid_epoch, lr_schedule, backend):
    # Dropout (np.random), batch norm (running statistics), Adam (m, v, iter)
    # and the shuffling generator all have state that must survive the restart;
    # a checkpoint saved by hand mid-epoch also needs the epoch's sample order.
    net_a, trainer_a = _resumable(data, seed=7, lr_schedule=lr_schedule)
    trainer_a.train()

    path = tmp_path / "checkpoint.npz"
    net_b, trainer_b = _resumable(data, seed=7, checkpoint=path, lr_schedule=lr_schedule)
    steps = int(trainer_b.iter_per_epoch * 1.5)
    for _ in range(steps):  # "interrupted" mid-epoch 2
        trainer_b.train_step()
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    if mid_epoch:
        trainer_b.save_checkpoint(path)

    np.random.seed(999)  # a fresh process: other random state, other initial weights
    net_c, trainer_c = _resumable(data, seed=123, lr_schedule=lr_schedule)
    trainer_c.load_checkpoint(path)
    resumed_at = steps if mid_epoch else trainer_c.iter_per_epoch
    assert (trainer_c.current_epoch, trainer_c.current_iter) == (1, resumed_at)
    trainer_c.train()

    _assert_same_run(trainer_c, trainer_a)
    assert trainer_c.optimizer.iter == trainer_a.optimizer.iter
    for key in net_a.params:
        np.testing.assert_array_equal(trainer_c.optimizer.v[key], trainer_a.optimizer.v[key])
    assert net_c.layers["BatchNorm1"].running_mean is net_c.buffers["running_mean1"]
    assert net_c.layers["Affine1"].W is net_c.params["W1"]


def test_resume_can_extend_training(tmp_path, data, backend):
    path = tmp_path / "ck.npz"
    _, trainer = _resumable(data, seed=1, checkpoint=path, epochs=2)
    trainer.train()
    _, longer = _resumable(data, seed=1, epochs=3)
    longer.load_checkpoint(path)
    longer.train()
    assert len(longer.test_acc_list) == 3
    assert longer.train_loss_list[:len(trainer.train_loss_list)] == trainer.train_loss_list


def test_checkpoint_of_another_setup_is_refused(tmp_path, data):
    path = tmp_path / "ck.npz"
    _, trainer = _resumable(data, seed=1, checkpoint=path, epochs=1)
    trainer.train()
    net = MultiLayerNetExtend(8, [10, 6], 3, use_dropout=True, use_batchnorm=True, seed=1)
    other = Trainer(net, *data, epochs=1, mini_batch_size=50, optimizer="Adam", verbose=False)
    with pytest.raises(ValueError, match="batch_size=40, this trainer has batch_size=50"):
        other.load_checkpoint(path)
    _, cosine = _resumable(data, seed=1, lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_schedule='constant', this trainer has lr_schedule='cosine'"):
        cosine.load_checkpoint(path)


def test_evaluate_sample_num_and_verbose_output(data, capsys):
    net = TwoLayerNet(8, 6, 3, seed=0)
    trainer = Trainer(net, *data, epochs=2, mini_batch_size=50, evaluate_sample_num_per_epoch=30,
                      verbose=True, seed=0)
    trainer.train()
    assert trainer.test_acc_list[-1] == net.accuracy(data[2][:30], data[3][:30])
    out = capsys.readouterr().out
    assert "epoch 1/2: train loss" in out and "epoch 2/2" in out
    assert f"test acc:{trainer.final_test_acc}" in out

    Trainer(TwoLayerNet(8, 6, 3, seed=0), *data, epochs=1, verbose=False).train()
    assert capsys.readouterr().out == ""


def test_bad_arguments(data):
    net = TwoLayerNet(8, 6, 3)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        Trainer(net, *data, optimizer="lbfgs")
    with pytest.raises(ValueError, match="250 training samples but 249 labels"):
        Trainer(net, data[0], data[1][:-1], data[2], data[3])
    assert type(Trainer(net, *data, optimizer="rmsprop").optimizer).__name__ == "RMSprop"
    with pytest.raises(ValueError, match=r"^Adam: lr must be finite and >= 0.0, got -1.0$"):
        Trainer(net, *data, optimizer="adam", optimizer_param={"lr": -1})
    with pytest.raises(ValueError, match="unknown report 'tqdm'; choose one of book, epochs"):
        Trainer(net, *data, report="tqdm")
    with pytest.raises(ValueError, match="unknown lr_schedule 'step'; choose one of constant, cosine"):
        Trainer(net, *data, lr_schedule="step")
    for optimizer in (Recorder(), LrRecorder(0.0), LrRecorder(float("nan"))):
        optimizer.update = lambda params, grads: None
        with pytest.raises(ValueError, match="lr_schedule='cosine' needs an optimizer with a positive"):
            Trainer(net, *data, optimizer=optimizer, lr_schedule="cosine")


def test_the_backend_fixture_reaches_the_trainer(data, backend):
    assert fastzero.get_backend() == backend


def test_np_random_seed_alone_makes_a_run_reproducible(data, backend):
    """As in the book: no seed= given, np.random.seed(...) beforehand fixes the batch order
    and dropout."""
    def run(seed):
        np.random.seed(seed)
        net = MultiLayerNetExtend(8, [6], 3, use_dropout=True, seed=0)
        trainer = Trainer(net, *data, epochs=2, mini_batch_size=50, verbose=False)
        trainer.train()
        return trainer.train_loss_list

    assert run(4) == run(4)
    assert run(4) != run(5)


@pytest.mark.parametrize("train_size, batch_size, epochs", [(300, 100, 4), (400, 100, 3),
                                                             (50, 100, 3), (1000, 100, 2)])
def test_step_and_list_counts_are_the_books(train_size, batch_size, epochs):
    """Where the batch size divides the training set (or exceeds it), as in the book's
    scripts: the book's iter_per_epoch and max_iter, one accuracy per epoch (its scripts
    plot them against np.arange(epochs))."""
    x = np.arange(train_size, dtype=float)[:, None]
    for replacement in (False, True):
        trainer = Trainer(Recorder(), x, np.zeros(train_size), x[:10], np.zeros(10),
                          epochs=epochs, mini_batch_size=batch_size, verbose=False,
                          replacement=replacement)
        book_iter_per_epoch = max(train_size / batch_size, 1)
        assert trainer.iter_per_epoch == book_iter_per_epoch
        assert trainer.max_iter == int(epochs * book_iter_per_epoch)
        trainer.train()
        book_acc_count = sum(i % book_iter_per_epoch == 0 for i in range(trainer.max_iter))
        assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == book_acc_count == epochs
        assert len(trainer.train_loss_list) == trainer.max_iter


def test_verbose_shows_every_steps_loss_as_the_book(data, capsys):
    """Off a terminal (captured here) the book's 'train loss:' line for every step."""
    net = TwoLayerNet(8, 6, 3, seed=0)
    trainer = Trainer(net, *data, epochs=2, mini_batch_size=50, seed=0)
    trainer.train()
    lines = capsys.readouterr().out.splitlines()
    losses = [line for line in lines if line.startswith("train loss:")]
    assert losses == [f"train loss:{loss}" for loss in trainer.train_loss_list]
    assert lines.count("=============== Final Test Accuracy ===============") == 1

    Trainer(TwoLayerNet(8, 6, 3, seed=0), *data, epochs=2, mini_batch_size=50, seed=0,
            report="epochs").train()
    out = capsys.readouterr().out
    assert "train loss:" not in out and "Final Test Accuracy" not in out
    assert "epoch 2/2: train loss" in out


def test_epoch_line_says_when_accuracies_are_on_a_sample(data, capsys):
    Trainer(TwoLayerNet(8, 6, 3, seed=0), *data, epochs=1, mini_batch_size=50, seed=0,
            evaluate_sample_num_per_epoch=30, report="epochs").train()
    out = capsys.readouterr().out
    assert ", train acc " in out and " (first 30 of 250), test acc " in out
    assert out.split("test acc ")[1][6:].startswith(" (first 30 of 120) (")
    Trainer(TwoLayerNet(8, 6, 3, seed=0), *data, epochs=1, mini_batch_size=50, seed=0,
            evaluate_sample_num_per_epoch=200, report="epochs").train()
    out = capsys.readouterr().out
    assert " (first 200 of 250), test acc " in out and "of 120" not in out  # all 120 test samples


def test_ctrl_c_saves_a_checkpoint_mid_epoch_and_resuming_is_bit_exact(
        tmp_path, data, monkeypatch, sigint_at, backend):
    _, trainer_a = _resumable(data, seed=7)
    trainer_a.train()

    path = tmp_path / "checkpoint.npz"
    _, trainer_b = _resumable(data, seed=7, checkpoint=path)
    steps = trainer_b.iter_per_epoch + 3  # inside epoch 2
    with monkeypatch.context() as patch:
        sigint_at(patch, steps)
        with pytest.raises(KeyboardInterrupt):
            trainer_b.train()
    assert trainer_b.current_iter == steps  # stopped after the step, not inside it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    np.random.seed(999)
    _, trainer_c = _resumable(data, seed=123)
    trainer_c.load_checkpoint(path)
    assert trainer_c.current_iter == steps
    trainer_c.train()
    _assert_same_run(trainer_c, trainer_a)


def test_ctrl_c_without_a_checkpoint_path_stops_after_the_step(data, monkeypatch, sigint_at):
    _, trainer = _resumable(data, seed=7)
    sigint_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.current_iter == len(trainer.train_loss_list) == 2


def test_checkpoint_restores_the_seed_and_refuses_other_settings(tmp_path, data):
    path = tmp_path / "ck.npz"
    _, trainer = _resumable(data, seed=1, checkpoint=path, epochs=1)
    trainer.train()
    _, other_seed = _resumable(data, seed=5)
    other_seed.load_checkpoint(path)
    assert other_seed.seed == 1

    def trainer_with(**changes):
        net = MultiLayerNetExtend(8, [10, 6], 3, use_dropout=True, dropout_ration=0.2,
                                  use_batchnorm=True, seed=1, dtype=changes.pop("dtype", np.float64))
        kwargs = {"epochs": 1, "mini_batch_size": 40, "optimizer": "Adam",
                  "optimizer_param": {"lr": 0.01}, "verbose": False}
        return Trainer(net, *data, **{**kwargs, **changes})

    with pytest.raises(ValueError, match="optimizer lr=0.01, this trainer has lr=0.5"):
        trainer_with(optimizer_param={"lr": 0.5}).load_checkpoint(path)
    with pytest.raises(ValueError, match="evaluate_sample_num_per_epoch=None, this trainer has "
                                         "evaluate_sample_num_per_epoch=30"):
        trainer_with(evaluate_sample_num_per_epoch=30).load_checkpoint(path)
    sgd_path = tmp_path / "sgd.npz"
    sgd = trainer_with(optimizer="sgd", checkpoint=sgd_path)
    sgd.train()
    with pytest.raises(ValueError, match="'W1' was saved as float64, the network has float32"):
        trainer_with(optimizer="sgd", dtype=np.float32).load_checkpoint(sgd_path)  # no state to differ
