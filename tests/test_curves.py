"""curves.png: the figure's title, smoothed loss, whole-epoch axes and accuracy limits."""
import types

import matplotlib
import numpy as np

from fastzero.curves import plot_training_curves, smooth, training_figure

matplotlib.use("Agg")


def test_smooth_is_a_trailing_mean():
    values = np.array([4.0, 2.0, 6.0, 0.0, 8.0])
    np.testing.assert_allclose(smooth(values, 2), [4, 3, 4, 3, 4])
    np.testing.assert_allclose(smooth(values, 3), [4, 3, 4, 8 / 3, 14 / 3])
    np.testing.assert_array_equal(smooth(values, 1), values)


def _history(epochs, steps_per_epoch=50, test=(0.966,), final=None, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(epochs * steps_per_epoch)
    loss = 2.3 * np.exp(-steps / 40) + 0.05 + 0.05 * rng.random(len(steps))
    test = list(test) * epochs if len(test) == 1 else list(test)
    return types.SimpleNamespace(
        train_loss_list=loss.tolist(), iter_per_epoch=steps_per_epoch,
        train_acc_list=[min(t + 0.004, 1.0) for t in test], test_acc_list=test,
        final_test_acc=test[-1] if final is None else final, x_test=np.zeros(10000))


def test_one_epoch_figure():
    fig = training_figure(_history(1), "SimpleConvNet (float64), final test accuracy 96.60%")
    ax_loss, ax_acc = fig.axes
    assert fig._suptitle.get_text() == "SimpleConvNet (float64), final test accuracy 96.60%"
    raw, smoothed = ax_loss.lines
    assert raw.get_alpha() < 0.5 and smoothed.get_alpha() is None  # raw faint behind the mean
    def roughness(line):
        return np.abs(np.diff(line.get_ydata(), 2)).sum()

    assert roughness(smoothed) < 0.5 * roughness(raw)
    assert list(ax_acc.get_xticks()) == [1]  # whole epochs only
    bottom, top = ax_acc.get_ylim()
    assert top - bottom >= 0.05  # a 0.4-point gap does not fill the panel
    assert bottom <= 0.966 and 0.970 <= top <= 1.0
    assert len(ax_acc.lines) == 2  # the epoch's test accuracy is the final one: no extra mark


def test_many_epochs_and_a_sampled_test_accuracy(tmp_path):
    history = _history(30, test=np.linspace(0.5, 0.98, 30), final=0.975)
    fig = training_figure(history, "t")
    ax_loss, ax_acc = fig.axes
    assert all(float(t).is_integer() for t in ax_acc.get_xticks())
    assert all(float(t).is_integer() for t in ax_loss.get_xticks())
    assert ax_loss.get_yscale() == "log"  # the loss spans more than a decade
    assert len(ax_acc.lines) == 3  # the final accuracy on every test sample is marked
    path = tmp_path / "curves.png"
    assert plot_training_curves(history, path, "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
