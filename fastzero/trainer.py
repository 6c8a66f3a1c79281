"""The book's ``Trainer`` (``common/trainer.py``): mini-batch training with history.

Same constructor, attributes (``train_loss_list``, ``train_acc_list``,
``test_acc_list``, ``current_iter``, ``current_epoch``, ...) and methods
(``train_step``, ``train``) as the book, plus:

* epochs that visit every training sample once, in a fresh random order
  (the book samples each mini-batch with replacement: ``replacement=True``);
* one forward pass per step: the loss recorded is the one of the forward
  pass that computed the gradients (a fastzero network's ``last_loss``);
* a progress bar (tqdm) and one summary line per epoch when ``verbose``;
* :class:`TrainingDiverged` naming the step as soon as the loss is NaN or
  infinite, before the optimizer applies that step, with the layers' state
  (batch-norm running statistics) put back as it was before the step;
* ``lr_schedule='cosine'``: the learning rate falls from the optimizer's
  ``lr`` to zero along half a cosine over the run's steps (the book keeps it
  constant, the default);
* ``seed``: the same seed (and thread count) gives the same run;
* checkpoints: everything needed to continue (parameters, batch-norm
  statistics, optimizer state, random states, history) written atomically
  at the end of every epoch; a run resumed with :meth:`Trainer.load_checkpoint`
  ends bit for bit where the uninterrupted run ends.

Accuracies are measured at the end of each epoch (the book measures them at
the start), so ``train_acc_list[-1]`` belongs to the trained network.
"""
from __future__ import annotations

import math
import os
import sys  # noqa: F401  (exported, as the book's module's)
import time
from typing import Any, Mapping

import numpy as np

from fastzero import _validate, blocks, checkpoint
from fastzero import optimizer as _optimizers
from fastzero.optimizer import *  # noqa: F401,F403  (the book's trainer.py exports them too)
from fastzero.optimizer import __all__ as _optimizer_all

#: The book's module has no ``__all__``: a star import of it gives a script
#: the optimizers, ``np``, ``os`` and ``sys`` as well.
__all__ = ["Trainer", "TrainingDiverged", "OPTIMIZERS", "LR_SCHEDULES", *_optimizer_all,
           "os", "sys"]

#: Optimizer names accepted by ``Trainer(optimizer=...)`` (case-insensitive).
OPTIMIZERS: dict[str, type] = {
    "sgd": _optimizers.SGD,
    "momentum": _optimizers.Momentum,
    "nesterov": _optimizers.Nesterov,
    "adagrad": _optimizers.AdaGrad,
    "rmsprop": _optimizers.RMSprop,
    "adam": _optimizers.Adam,
}

class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


class Trainer:
    """Train ``network`` on ``(x_train, t_train)`` with mini-batches, tracking the history.

    Parameters
    ----------
    network
        A network with ``params``, ``gradient(x, t)``, ``loss(x, t)`` and
        ``accuracy(x, t)`` (any of :mod:`fastzero.nets`, or the book's).
    x_train, t_train, x_test, t_test : ndarray
        Samples along axis 0; labels (N,) or one-hot (N, K).
    epochs : int
    mini_batch_size : int
    optimizer : str or optimizer object
        'SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop' or 'Adam', built
        with ``optimizer_param`` (default ``{'lr': 0.01}``); or an object with
        ``update(params, grads)``.
    evaluate_sample_num_per_epoch : int or None
        Measure the per-epoch accuracies on the first this-many samples only.
    verbose : bool
        Progress bar (on a terminal) and per-epoch summaries.
    replacement : bool
        Sample every mini-batch with replacement, as the book, instead of
        shuffled epochs.
    lr_schedule : 'constant' or 'cosine'
        'constant' (the book) leaves the optimizer's ``lr`` alone; 'cosine'
        sets it before step ``i`` (counted from 0) to
        ``lr * (1 + cos(pi * i / max_iter)) / 2`` (0 from ``max_iter`` on),
        where ``lr`` is the optimizer's at construction. Resuming with other
        ``epochs`` changes ``max_iter`` and so the rest of the schedule.
    seed : int or None
        Seeds the mini-batch order (a ``np.random.Generator``) and
        ``np.random`` (which dropout draws from).
    checkpoint : path or None
        Where to write a checkpoint at the end of every epoch.

    Training runs ``max_iter = epochs * iter_per_epoch`` steps with
    ``iter_per_epoch = ceil(train_size / mini_batch_size)``; the last batch
    of a shuffled epoch holds the remaining samples.
    """

    def __init__(self, network: Any, x_train: np.ndarray, t_train: np.ndarray,
                 x_test: np.ndarray, t_test: np.ndarray, epochs: int = 20,
                 mini_batch_size: int = 100, optimizer: str | Any = "SGD",
                 optimizer_param: Mapping[str, Any] | None = None,
                 evaluate_sample_num_per_epoch: int | None = None, verbose: bool = True, *,
                 replacement: bool = False, lr_schedule: str = "constant",
                 seed: int | None = None, checkpoint: str | os.PathLike | None = None) -> None:
        if len(x_train) != len(t_train) or len(x_test) != len(t_test):
            raise ValueError(
                f"Trainer: {len(x_train)} training samples but {len(t_train)} labels, "
                f"{len(x_test)} test samples but {len(t_test)} labels"
            )
        if len(x_train) == 0 or len(x_test) == 0:
            raise ValueError("Trainer: the training and test sets must not be empty")
        epochs = _validate.integer(epochs, "Trainer", "epochs", 0)
        mini_batch_size = _validate.integer(mini_batch_size, "Trainer", "mini_batch_size", 1)
        if evaluate_sample_num_per_epoch is not None:
            _validate.integer(evaluate_sample_num_per_epoch, "Trainer",
                              "evaluate_sample_num_per_epoch", 1)
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.replacement = replacement
        self.checkpoint = checkpoint
        self.optimizer = _make_optimizer(optimizer, optimizer_param)
        self.lr_schedule = lr_schedule
        self.base_lr = _base_lr(self.optimizer, lr_schedule)

        self.train_size = len(x_train)
        self.iter_per_epoch = max(math.ceil(self.train_size / mini_batch_size), 1)
        self.max_iter = epochs * self.iter_per_epoch
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []

        self.rng = np.random.default_rng(seed)
        if seed is not None:
            np.random.seed(seed)
        self.final_test_acc: float | None = None
        self._order: np.ndarray | None = None
        self._epoch_start = time.perf_counter()

    # -- one step ----------------------------------------------------------

    def _batch_indices(self) -> np.ndarray:
        if self.replacement:
            return self.rng.integers(0, self.train_size, self.batch_size)
        step = self.current_iter % self.iter_per_epoch
        if step == 0 or self._order is None:
            self._order = self.rng.permutation(self.train_size)
        return self._order[step * self.batch_size:(step + 1) * self.batch_size]

    def train_step(self) -> float:
        """One mini-batch: gradients, loss check, optimizer update; returns the loss.

        At the end of an epoch also measures the accuracies and writes the checkpoint.
        Raises :class:`TrainingDiverged` (before updating) if the loss is not
        finite, with the network's buffers restored to their values before
        the step: its training forward has already updated them.
        """
        idx = self._batch_indices()
        x_batch, t_batch = self.x_train[idx], self.t_train[idx]
        buffers = {name: value.copy()
                   for name, value in blocks.network_buffers(self.network).items()}
        grads = self.network.gradient(x_batch, t_batch)
        loss = getattr(self.network, "last_loss", None)
        loss = float(self.network.loss(x_batch, t_batch) if loss is None else loss)
        if not math.isfinite(loss):
            # Looked up again: a book layer replaces its statistics' arrays at every forward.
            for name, value in blocks.network_buffers(self.network).items():
                np.copyto(value, buffers[name])
            raise TrainingDiverged(
                f"training loss is {loss} at step {self.current_iter + 1} of {self.max_iter} "
                f"(epoch {self.current_epoch + 1}, step "
                f"{self.current_iter % self.iter_per_epoch + 1} of {self.iter_per_epoch}); "
                "a smaller learning rate may help"
            )
        if self.base_lr is not None:  # a schedule
            self.optimizer.lr = self.learning_rate(self.current_iter)
        self.optimizer.update(self.network.params, grads)
        self.train_loss_list.append(loss)
        self.current_iter += 1
        if self.current_iter % self.iter_per_epoch == 0:
            self._end_epoch()
        return loss

    def learning_rate(self, step: int) -> float | None:
        """The learning rate of step ``step`` (counted from 0): the schedule's, or
        under 'constant' the optimizer's own ``lr`` (None if it has none)."""
        if self.base_lr is None:
            return getattr(self.optimizer, "lr", None)
        end = max(self.max_iter, 1)
        return self.base_lr * (1 + math.cos(math.pi * min(step, end) / end)) / 2  # 0 past the end

    def _end_epoch(self) -> None:
        self.current_epoch += 1
        n = self.evaluate_sample_num_per_epoch
        train_acc = self.network.accuracy(self.x_train[:n], self.t_train[:n])
        test_acc = self.network.accuracy(self.x_test[:n], self.t_test[:n])
        self.train_acc_list.append(train_acc)
        self.test_acc_list.append(test_acc)
        if self.checkpoint is not None:
            self.save_checkpoint(self.checkpoint)
        if self.verbose:
            from tqdm.auto import tqdm

            losses = self.train_loss_list[-self.iter_per_epoch:]
            elapsed = time.perf_counter() - self._epoch_start
            lr = "" if self.base_lr is None else f", lr {self.optimizer.lr:.3g}"
            tqdm.write(
                f"epoch {self.current_epoch}/{self.epochs}: train loss {np.mean(losses):.4f}, "
                f"train acc {train_acc:.4f}, test acc {test_acc:.4f}{lr} ({elapsed:.1f} s)"
            )
        self._epoch_start = time.perf_counter()

    # -- the whole run -----------------------------------------------------

    def train(self) -> float:
        """Run the remaining steps up to ``max_iter``; returns the final test accuracy.

        The final accuracy is measured on the whole test set (also kept as
        ``final_test_acc``).
        """
        from tqdm.auto import tqdm

        self._epoch_start = time.perf_counter()
        with tqdm(total=self.max_iter, initial=self.current_iter, unit="step",
                  disable=None if self.verbose else True, dynamic_ncols=True) as bar:
            while self.current_iter < self.max_iter:
                loss = self.train_step()
                postfix = {"loss": f"{loss:.4f}"}
                if self.test_acc_list:
                    postfix["test_acc"] = f"{self.test_acc_list[-1]:.4f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
        n = self.evaluate_sample_num_per_epoch
        if self.test_acc_list and (n is None or n >= len(self.x_test)):
            self.final_test_acc = self.test_acc_list[-1]  # measured just now, on every sample
        else:
            self.final_test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print(f"test acc:{self.final_test_acc}")
        return self.final_test_acc

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write everything needed to continue this run to ``path`` (``.npz``), atomically
        (see :mod:`fastzero.checkpoint`)."""
        checkpoint.save_checkpoint(self, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue the run saved in ``path`` (see :func:`fastzero.checkpoint.load_checkpoint`)."""
        checkpoint.load_checkpoint(self, path)


#: ``Trainer(lr_schedule=...)`` choices.
LR_SCHEDULES = ("constant", "cosine")


def _base_lr(optimizer: Any, lr_schedule: str) -> float | None:
    """The optimizer's learning rate the schedule starts from (None for 'constant')."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"Trainer: unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"
        )
    if lr_schedule == "constant":
        return None
    lr = getattr(optimizer, "lr", None)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(
            f"Trainer: lr_schedule={lr_schedule!r} needs an optimizer with a positive learning "
            f"rate attribute 'lr', got {lr!r}"
        )
    return float(lr)


def _make_optimizer(optimizer: str | Any, optimizer_param: Mapping[str, Any] | None) -> Any:
    if not isinstance(optimizer, str):
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError("Trainer: optimizer must be a name or an object with update(params, grads)")
        return optimizer
    cls = OPTIMIZERS.get(optimizer.lower())
    if cls is None:
        raise ValueError(
            f"Trainer: unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    return cls(**({"lr": 0.01} if optimizer_param is None else optimizer_param))
