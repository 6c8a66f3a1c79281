"""A search's outcome from its records: the table of the best trials and the book's figure.

The figure is the one of ``ch06/hyperparameter_optimization.py``: a grid of
the best trials, each with its validation (solid) and training (dashed)
accuracy per epoch, here titled with its rank, accuracy and parameters.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from fastzero.search.results import latest_records
from fastzero.search.trial import final_accuracy

__all__ = ["FIGURE", "ranked", "summary", "table", "plot_best"]

FIGURE = "best_trials.png"


def ranked(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each trial's longest finished record: the trials trained longest first (successive
    halving), then by final validation accuracy; diverged trials last; ties by index."""
    latest = latest_records(list(records))
    return sorted(latest.values(), key=lambda r: (r["status"] != "ok", -r["epochs"],
                                                  -final_accuracy(r), r["trial"]))


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())


def summary(records: list[dict[str, Any]]) -> str:
    """One line: trials finished and diverged, trial time, best validation accuracy."""
    latest = latest_records(records)
    diverged = sum(r["status"] == "diverged" for r in latest.values())
    errors = len({r["trial"] for r in records if r["status"] == "error"} - set(latest))
    seconds = sum(r.get("time", 0.0) for r in records)
    best = max((final_accuracy(r) for r in latest.values()), default=-math.inf)
    line = (f"{len(latest)} trials finished ({diverged} diverged), {seconds / 60:.1f} trial-minutes"
            f", best validation accuracy {best:.4f}" if best > -math.inf else "no trial finished")
    return line + (f"; {errors} trials failed (see their 'error')" if errors else "")


def table(records: list[dict[str, Any]], top: int = 20) -> str:
    """The ``top`` best trials as text: rank, trial, epochs, accuracies, parameters."""
    rows = [f"{'rank':>4}  {'trial':>5}  {'epochs':>6}  {'val acc':>7}  {'train acc':>9}  params"]
    for rank, r in enumerate(ranked(records)[:top], 1):
        if r["status"] == "ok":
            val, train = f"{r['val_acc'][-1]:.4f}", f"{r['train_acc'][-1]:.4f}"
        else:
            val, train = r["status"], ""
        rows.append(f"{rank:>4}  {r['trial']:>5}  {r['epochs']:>6}  {val:>7}  {train:>9}  "
                    f"{_params_text(r['params'])}")
    return "\n".join(rows)


def plot_best(records: list[dict[str, Any]], path: str | Path, top: int = 20,
              columns: int = 5) -> bool:
    """The book's grid of the ``top`` best trials' curves as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from fastzero.params_io import atomic_write

    best = [r for r in ranked(records) if r["status"] == "ok"][:top]
    rows = max(1, math.ceil(len(best) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[len(best):]:
        ax.axis("off")
    for rank, (ax, r) in enumerate(zip(axes.flat, best), 1):
        epochs = range(1, len(r["val_acc"]) + 1)
        ax.plot(epochs, r["val_acc"], label="validation")
        ax.plot(epochs, r["train_acc"], "--", label="train")
        ax.set_ylim(0.0, 1.0)
        ax.set_title(f"Best-{rank}: val {r['val_acc'][-1]:.3f}\n{_params_text(r['params'])}",
                     fontsize=7)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("accuracy", fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return True
