"""A training run's curves as a PNG (matplotlib): the loss per step and the accuracies per epoch."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["smooth", "plot_training_curves"]


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


def plot_training_curves(trainer: Any, path: str | os.PathLike, title: str) -> bool:
    """Write ``trainer``'s curves to ``path`` (PNG, atomically); False without matplotlib.

    Left: the training loss of every step (faint) and its moving average over
    a tenth of an epoch, against epochs. Right: the per-epoch train and test
    accuracies, and the final test accuracy on the whole test set.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator, PercentFormatter
    except ImportError:
        return False
    from fastzero.params_io import atomic_write

    losses = np.asarray(trainer.train_loss_list, dtype=np.float64)
    epochs = len(trainer.test_acc_list)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    fig.suptitle(title)

    steps = np.arange(1, len(losses) + 1) / trainer.iter_per_epoch
    window = max(1, trainer.iter_per_epoch // 10)
    ax_loss.plot(steps, losses, lw=0.5, alpha=0.25, color="C0", label="per step")
    ax_loss.plot(steps, smooth(losses, window), lw=1.5, color="C0",
                 label=f"mean of {window} steps" if window > 1 else None)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log",
                xlim=(0, max(steps[-1] if len(steps) else 1, 1)))
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    if window > 1:
        ax_loss.legend(loc="upper right")

    x = np.arange(1, epochs + 1)
    ax_acc.plot(x, trainer.train_acc_list, "o-", label="train")
    ax_acc.plot(x, trainer.test_acc_list, "s-", label="test")
    accuracies = [*trainer.train_acc_list, *trainer.test_acc_list]
    final = trainer.final_test_acc
    if final is not None and epochs:
        ax_acc.plot([epochs], [final], "*", ms=12, color="C2",
                    label=f"final test ({len(trainer.x_test)} samples)")
        accuracies.append(final)
    if accuracies:
        ax_acc.set_ylim(*_accuracy_limits(np.array(accuracies)))
    ax_acc.set(xlabel="epoch", ylabel="accuracy", xlim=(0.5, max(epochs, 1) + 0.5))
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(loc="lower right")
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return True
