"""The book's ``Trainer`` (``common/trainer.py``): mini-batch training with history.

Same constructor, attributes (``train_loss_list``, ``train_acc_list``,
``test_acc_list``, ``current_iter``, ``current_epoch``, ...) and methods
(``train_step``, ``train``) as the book, plus:

* epochs that visit every training sample once, in a fresh random order
  (the book samples each mini-batch with replacement: ``replacement=True``);
* one forward pass per step: the loss recorded is the one of the forward
  pass that computed the gradients (a fastzero network's ``last_loss``);
* a progress bar (tqdm) showing each step's loss on a terminal (elsewhere the
  book's ``train loss:`` line per step), and one summary line per epoch,
  when ``verbose``;
* :class:`TrainingDiverged` naming the step as soon as the loss is NaN or
  infinite, before the optimizer applies that step, with the layers' state
  (batch-norm running statistics) put back as it was before the step;
* ``lr_schedule='cosine'``: the learning rate falls from the optimizer's
  ``lr`` to zero along half a cosine over the run's steps (the book keeps it
  constant, the default);
* ``augment``: each mini-batch's images randomly shifted, rotated, scaled or
  elastically distorted (:mod:`fastzero.augment`; a preset name or an
  ``Augment``), drawn from the run's generator;
* ``seed``: the same seed (and thread count) gives the same run; without
  one, ``np.random.seed(...)`` alone does, as in the book;
* Ctrl-C stops the run after the current step and, with a ``checkpoint``
  path, writes the checkpoint first (resuming from it is bit-exact);
* checkpoints: everything needed to continue (parameters, batch-norm
  statistics, optimizer state, random states, history) written atomically
  at the end of every epoch; a run resumed with :meth:`Trainer.load_checkpoint`
  ends bit for bit where the uninterrupted run ends.

Accuracies are measured at the end of each epoch (the book measures them at
the start), so ``train_acc_list[-1]`` belongs to the trained network.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys  # noqa: F401  (exported, as the book's module's)
import threading
import time
from typing import Any, Mapping

import numpy as np

from fastzero import _validate, blocks, checkpoint
from fastzero.augment import Augment
from fastzero.optimizer import OPTIMIZERS
from fastzero.optimizer import *  # noqa: F401,F403  (the book's trainer.py exports them too)
from fastzero.optimizer import __all__ as _optimizer_all

#: The book's module has no ``__all__``: a star import of it gives a script
#: the optimizers, ``np``, ``os`` and ``sys`` as well.
__all__ = ["Trainer", "TrainingDiverged", "OPTIMIZERS", "LR_SCHEDULES", "REPORTS", *_optimizer_all,
           "os", "sys"]


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
        Progress (see ``report``) and per-epoch summaries.
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
        ``np.random`` (which dropout draws from). Without it the generator
        is seeded from ``np.random``, so ``np.random.seed(...)`` before
        constructing the trainer makes the run reproducible, as in the book.
    checkpoint : path or None
        Where to write a checkpoint at the end of every epoch (and when the
        run is interrupted with Ctrl-C).
    report : 'book' or 'epochs'
        With ``verbose``: 'book' shows every step's loss (in the progress bar
        on a terminal, else as the book's ``train loss:...`` lines), the epoch
        lines and the book's final-accuracy banner; 'epochs' shows the progress
        bar (on a terminal) and the epoch lines only.
    run_info : mapping or None
        JSON-serialisable description of the run (e.g. a command line's
        settings), saved in every checkpoint.
    augment : preset name, :class:`fastzero.augment.Augment` or None
        Transform every mini-batch's images before the step (rows of a
        square image's pixels, as the book's MLPs take them, are transformed
        as images); the random draws come from the batch-order generator.

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
                 seed: int | None = None, checkpoint: str | os.PathLike | None = None,
                 report: str = "book", run_info: Mapping[str, Any] | None = None,
                 augment: str | Augment | None = None) -> None:
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
        if report not in REPORTS:
            raise ValueError(f"Trainer: unknown report {report!r}; choose one of {', '.join(REPORTS)}")
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.replacement = replacement
        self.checkpoint = checkpoint
        self.report = report
        self.run_info = dict(run_info or {})
        self.optimizer = _make_optimizer(optimizer, optimizer_param)
        self.optimizer_settings = _scalars(self.optimizer)
        self.lr_schedule = lr_schedule
        self.base_lr = _base_lr(self.optimizer, lr_schedule)
        self.augment = _make_augment(augment)

        self.train_size = len(x_train)
        self.iter_per_epoch = max(math.ceil(self.train_size / mini_batch_size), 1)
        self.max_iter = epochs * self.iter_per_epoch
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []

        self.seed = seed
        if seed is None:  # np.random.seed(...) before the trainer fixes the run, as in the book
            self.rng = np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))
        else:
            self.rng = np.random.default_rng(seed)
            np.random.seed(seed)
        self.final_test_acc: float | None = None
        self._order: np.ndarray | None = None
        self._epoch_start = time.perf_counter()
        self._stop_requested = False

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
        if self.augment is not None:
            x_batch = _augmented(self.augment, x_batch, self.rng)
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
                f"train acc {train_acc:.4f}{self._sample_note(len(self.x_train))}, "
                f"test acc {test_acc:.4f}{self._sample_note(len(self.x_test))}{lr} ({elapsed:.1f} s)"
            )
        self._epoch_start = time.perf_counter()

    def _sample_note(self, size: int) -> str:
        """Says when an epoch line's accuracy was measured on part of a set of ``size``."""
        n = self.evaluate_sample_num_per_epoch
        return "" if n is None or n >= size else f" (first {n} of {size})"

    # -- the whole run -----------------------------------------------------

    def train(self) -> float:
        """Run the remaining steps up to ``max_iter``; returns the final test accuracy.

        The final accuracy is measured on the whole test set (also kept as
        ``final_test_acc``).

        Ctrl-C (SIGINT, in the main thread) stops the run after the current
        step; with a ``checkpoint`` path the checkpoint is written there
        first, then ``KeyboardInterrupt`` is raised. A second Ctrl-C
        interrupts at once.
        """
        from tqdm.auto import tqdm

        self._epoch_start = time.perf_counter()
        self._stop_requested = False
        with self._stop_on_interrupt(), tqdm(
                total=self.max_iter, initial=self.current_iter, unit="step",
                disable=None if self.verbose else True, dynamic_ncols=True) as bar:
            step_lines = self.verbose and self.report == "book" and bar.disable
            while self.current_iter < self.max_iter and not self._stop_requested:
                loss = self.train_step()
                if step_lines:
                    print(f"train loss:{loss}")
                postfix = {"loss": f"{loss:.4f}"}
                if self.test_acc_list:
                    postfix["test_acc"] = f"{self.test_acc_list[-1]:.4f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
        if self._stop_requested:
            if self.checkpoint is not None and self.current_iter > 0:
                self.save_checkpoint(self.checkpoint)
            raise KeyboardInterrupt
        n = self.evaluate_sample_num_per_epoch
        if self.test_acc_list and (n is None or n >= len(self.x_test)):
            self.final_test_acc = self.test_acc_list[-1]  # measured just now, on every sample
        else:
            self.final_test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose and self.report == "book":
            print("=============== Final Test Accuracy ===============")
            print(f"test acc:{self.final_test_acc}")
        return self.final_test_acc

    @contextlib.contextmanager
    def _stop_on_interrupt(self):
        """Within: the first SIGINT asks the loop to stop after the current step.

        Only where Python's own SIGINT handler is installed, in the main thread.
        """
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return

        def request_stop(signum, frame):
            self._stop_requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one interrupts

        signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def settings(self) -> dict[str, Any]:
        """The run's settings as JSON values (saved in checkpoints)."""
        return {
            "epochs": self.epochs,
            "mini_batch_size": self.batch_size,
            "optimizer": type(self.optimizer).__name__,
            "optimizer_settings": self.optimizer_settings,
            "lr_schedule": self.lr_schedule,
            "replacement": self.replacement,
            "evaluate_sample_num_per_epoch": self.evaluate_sample_num_per_epoch,
            "train_size": self.train_size,
            "seed": self.seed,
            "augment": None if self.augment is None else dataclasses.asdict(self.augment),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write everything needed to continue this run to ``path`` (``.npz``), atomically
        (see :mod:`fastzero.checkpoint`)."""
        checkpoint.save_checkpoint(self, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue the run saved in ``path`` (see :func:`fastzero.checkpoint.load_checkpoint`)."""
        checkpoint.load_checkpoint(self, path)


#: ``Trainer(lr_schedule=...)`` choices.
LR_SCHEDULES = ("constant", "cosine")

#: ``Trainer(report=...)`` choices.
REPORTS = ("book", "epochs")


def _scalars(optimizer: Any) -> dict[str, Any]:
    """The optimizer's scalar attributes (hyper-parameters such as ``lr``, counters)."""
    return {attr: value for attr, value in vars(optimizer).items()
            if value is None or isinstance(value, (bool, int, float, str))}


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


def _make_augment(augment: str | Augment | None) -> Augment | None:
    if augment is None or isinstance(augment, Augment):
        return augment
    if isinstance(augment, str):
        return Augment.preset(augment)
    raise TypeError(f"Trainer: augment must be a preset name, an Augment or None, got {augment!r}")


def _augmented(augment: Augment, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` transformed by ``augment``: images (N, C, H, W), or square images
    flattened to rows (N, H*W) as the book's MLPs take them."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"Trainer: augment needs images; rows of {x.shape[1]} values are "
                             "not square images")
        return augment(x.reshape(len(x), 1, side, side), rng).reshape(x.shape)
    return augment(x, rng)


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
