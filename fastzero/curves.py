"""A training run's curves as a PNG (matplotlib): the loss per step and the accuracies per epoch."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["smooth", "training_figure", "plot_training_curves"]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average of ``values`` (n,) over ``window`` steps (fewer at the
    start, where fewer steps exist): element i is the mean of ``values[max(0, i-window+1):i+1]``."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    i = np.arange(1, len(values) + 1)
    lo = np.maximum(i - window, 0)
    return (sums[i] - sums[lo]) / (i - lo)


def _accuracy_limits(values: np.ndarray) -> tuple[float, float]:
    """y limits that show at least 5 points of accuracy, so that a small gap looks small."""
    lo, hi = float(np.min(values)), float(np.max(values))
    bottom = max(0.0, min(lo - 0.02, hi - 0.05))
    top = min(1.0, max(hi + 0.01, bottom + 0.05))
    return bottom, top


def _integer_ticks(ax: Any, epochs: float, locator: Any) -> None:
    """Whole epochs on the x axis: each of them when there are few."""
    if epochs <= 10:
        ax.set_xticks(range(0 if ax.get_xlim()[0] < 0.5 else 1, int(np.ceil(epochs)) + 1))
    else:
        ax.xaxis.set_major_locator(locator(integer=True))


def plot_training_curves(trainer: Any, path: str | os.PathLike, title: str) -> bool:
    """Write :func:`training_figure` to ``path`` (PNG, atomically); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from fastzero.params_io import atomic_write

    fig = training_figure(trainer, title)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return True


def training_figure(trainer: Any, title: str) -> Any:
    """A matplotlib figure of ``trainer``'s history under ``title``.

    Left: the training loss of every step (faint) and its moving average over
    a tenth of an epoch, against epochs (log scale when it spans a decade).
    Right: the per-epoch train and test accuracies, and the final test accuracy
    on the whole test set when the epochs measured a sample.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator, PercentFormatter

    losses = np.asarray(trainer.train_loss_list, dtype=np.float64)
    epochs = len(trainer.test_acc_list)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    fig.suptitle(title)

    steps = np.arange(1, len(losses) + 1) / trainer.iter_per_epoch
    window = max(1, trainer.iter_per_epoch // 10)
    ax_loss.plot(steps, losses, lw=0.5, alpha=0.3, color="C0", label="per step")
    ax_loss.plot(steps, smooth(losses, window), lw=1.5, color="C0",
                 label=f"mean of {window} steps" if window > 1 else None)
    finite = losses[np.isfinite(losses) & (losses > 0)]
    if len(finite) and finite.max() > 10 * finite.min():  # spans a decade: log scale
        ax_loss.set_yscale("log")
        ax_loss.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    trained = len(losses) / trainer.iter_per_epoch
    ax_loss.set(xlabel="epoch", ylabel="training loss", xlim=(0, max(trained, 1)))
    _integer_ticks(ax_loss, trained, MaxNLocator)
    if window > 1:
        ax_loss.legend(loc="upper right")

    x = np.arange(1, epochs + 1)
    ax_acc.plot(x, trainer.train_acc_list, "o-", label="train")
    final = trainer.final_test_acc
    sampled = bool(epochs) and final is not None and final != trainer.test_acc_list[-1]
    ax_acc.plot(x, trainer.test_acc_list, "s-",
                label="test" if sampled else f"test ({len(trainer.x_test)} samples)")
    accuracies = [*trainer.train_acc_list, *trainer.test_acc_list]
    if sampled:  # the epoch lines measured a sample: the final figure is on every test sample
        ax_acc.plot([epochs], [final], "*", ms=12, color="C2",
                    label=f"final test ({len(trainer.x_test)} samples)")
        accuracies.append(final)
    if accuracies:
        ax_acc.set_ylim(*_accuracy_limits(np.array(accuracies)))
    ax_acc.set(xlabel="epoch", ylabel="accuracy", xlim=(0.5, max(epochs, 1) + 0.5))
    _integer_ticks(ax_acc, epochs, MaxNLocator)
    ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(loc="lower right")
    fig.tight_layout()
    return fig
