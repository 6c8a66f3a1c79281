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
  infinite, before the optimizer applies that step;
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

import json
import math
import os
import time
from typing import Any, Mapping, NamedTuple

import numpy as np

from fastzero import _validate, params_io
from fastzero import optimizer as _optimizers

__all__ = ["Trainer", "TrainingDiverged", "OPTIMIZERS", "LR_SCHEDULES"]

#: Optimizer names accepted by ``Trainer(optimizer=...)`` (case-insensitive).
OPTIMIZERS: dict[str, type] = {
    "sgd": _optimizers.SGD,
    "momentum": _optimizers.Momentum,
    "nesterov": _optimizers.Nesterov,
    "adagrad": _optimizers.AdaGrad,
    "rmsprop": _optimizers.RMSprop,
    "adam": _optimizers.Adam,
}

_CHECKPOINT_FORMAT = 1


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
        Raises :class:`TrainingDiverged` (before updating) if the loss is not finite.
        """
        idx = self._batch_indices()
        x_batch, t_batch = self.x_train[idx], self.t_train[idx]
        grads = self.network.gradient(x_batch, t_batch)
        loss = getattr(self.network, "last_loss", None)
        loss = float(self.network.loss(x_batch, t_batch) if loss is None else loss)
        if not math.isfinite(loss):
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

    # -- checkpoints -------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write everything needed to continue this run to ``path`` (``.npz``), atomically."""
        arrays: dict[str, np.ndarray] = {}
        for name, value in self.network.params.items():
            arrays[f"param.{name}"] = value
        for name, value in getattr(self.network, "buffers", {}).items():
            arrays[f"buffer.{name}"] = value
        optimizer_scalars, optimizer_dicts = {}, []
        for attr, value in vars(self.optimizer).items():
            if isinstance(value, dict):
                optimizer_dicts.append(attr)
                for key, state in value.items():
                    arrays[f"optim.{attr}.{key}"] = state
            elif value is None or isinstance(value, (bool, int, float, str)):
                optimizer_scalars[attr] = value
        legacy = np.random.get_state()
        arrays["np_random.keys"] = legacy[1]
        if self._order is not None:
            arrays["order"] = self._order
        for name in ("train_loss_list", "train_acc_list", "test_acc_list"):
            arrays[f"history.{name}"] = np.asarray(getattr(self, name), dtype=np.float64)
        meta = {
            "format": _CHECKPOINT_FORMAT,
            "network": type(self.network).__name__,
            "optimizer": type(self.optimizer).__name__,
            "optimizer_scalars": optimizer_scalars,
            "optimizer_dicts": optimizer_dicts,
            "batch_size": self.batch_size,
            "train_size": self.train_size,
            "replacement": self.replacement,
            "lr_schedule": self.lr_schedule,
            "current_iter": self.current_iter,
            "current_epoch": self.current_epoch,
            "rng": self.rng.bit_generator.state,
            "np_random": [legacy[0], *map(_plain, legacy[2:])],
        }
        arrays["meta"] = np.array(json.dumps(meta))
        params_io.save_params(arrays, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue the run saved in ``path``: restores the network's parameters
        (in place), the optimizer, the random states, the history and the step counters.

        The trainer must be set up as the saved one (network class and
        parameter shapes, optimizer, batch size, training set size); ``epochs``
        may differ, e.g. to train for longer.

        The whole file is checked before anything changes: a truncated,
        corrupt or foreign file, or one saved by another setup, raises
        ``ValueError`` naming the file and leaves the network, the optimizer,
        the random states, the history and the counters as they were.
        """
        source = os.fspath(path)
        arrays = params_io.read_npz(path)
        try:
            saved = self._checked_checkpoint(arrays)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

        params_io.assign_params(self._network_state(), saved.state, source)
        for attr, value in saved.optimizer_scalars.items():
            setattr(self.optimizer, attr, value)
        for attr, value in saved.optimizer_dicts.items():
            setattr(self.optimizer, attr, value)
        self.rng.bit_generator.state = saved.rng
        np.random.set_state(saved.np_random)
        self._order = saved.order
        for name, values in saved.history.items():
            setattr(self, name, values)
        self.current_iter = saved.current_iter
        self.current_epoch = saved.current_epoch

    def _network_state(self) -> dict[str, np.ndarray]:
        """The network's parameters and buffers (batch-norm statistics), by name."""
        return {**self.network.params, **getattr(self.network, "buffers", {})}

    def _checked_checkpoint(self, arrays: dict[str, np.ndarray]) -> _SavedRun:
        """The checkpoint's content, every part checked against this trainer; ValueError if not."""
        meta = _checked_meta(arrays.get("meta"))
        expected = {
            "network": type(self.network).__name__,
            "optimizer": type(self.optimizer).__name__,
            "batch_size": self.batch_size,
            "train_size": self.train_size,
            "replacement": self.replacement,
            "lr_schedule": self.lr_schedule,
        }
        meta.setdefault("lr_schedule", "constant")  # written before schedules existed
        for key, value in expected.items():
            if meta[key] != value:
                raise ValueError(
                    f"checkpoint was written with {key}={meta[key]!r}, this trainer has {key}={value!r}"
                )
        current_iter, current_epoch = meta["current_iter"], meta["current_epoch"]
        for key, count in (("current_iter", current_iter), ("current_epoch", current_epoch)):
            if type(count) is not int or count < 0:
                raise ValueError(f"{key} must be a non-negative int, got {count!r}")
        if current_epoch != current_iter // self.iter_per_epoch:
            raise ValueError(
                f"current_epoch {current_epoch} does not match current_iter {current_iter} "
                f"at {self.iter_per_epoch} steps per epoch"
            )

        known = {"meta", "order", "np_random.keys", *(f"history.{name}" for name in _HISTORY)}
        groups: dict[str, dict[str, np.ndarray]] = {"param": {}, "buffer": {}, "optim": {}}
        for name, value in arrays.items():
            group, _, key = name.partition(".")
            if group in groups:
                groups[group][key] = value
            elif name not in known:
                raise ValueError(f"unexpected entry {name!r}: not a fastzero checkpoint")
        state = {**groups["param"], **groups["buffer"]}
        params_io.check_params(self._network_state(), state)

        order = arrays.get("order")
        if order is not None and not _is_permutation(order, self.train_size):
            raise ValueError(
                f"'order' ({order.shape} {order.dtype}) is not a permutation of the "
                f"{self.train_size} training samples"
            )
        if order is None and not self.replacement and current_iter % self.iter_per_epoch:
            raise ValueError("checkpoint taken inside an epoch has no batch 'order'")

        lengths = {"train_loss_list": current_iter, "train_acc_list": current_epoch,
                   "test_acc_list": current_epoch}
        history = {}
        for name, length in lengths.items():
            values = arrays.get(f"history.{name}")
            if values is None or values.dtype.kind != "f" or values.shape != (length,):
                got = "nothing" if values is None else f"{values.shape} {values.dtype}"
                raise ValueError(f"'history.{name}' must hold {length} floats, got {got}")
            history[name] = values.tolist()

        return _SavedRun(
            state=state,
            optimizer_scalars=self._checked_optimizer_scalars(meta["optimizer_scalars"]),
            optimizer_dicts=self._checked_optimizer_dicts(meta["optimizer_dicts"], groups["optim"]),
            rng=_checked_generator_state(self.rng, meta["rng"]),
            np_random=_checked_legacy_state(meta["np_random"], arrays.get("np_random.keys")),
            order=order,
            history=history,
            current_iter=current_iter,
            current_epoch=current_epoch,
        )

    def _checked_optimizer_scalars(self, scalars: Any) -> dict[str, Any]:
        """Saved optimizer hyper-parameters and counters, each of its attribute's kind."""
        current = vars(self.optimizer)
        if not isinstance(scalars, dict):
            raise ValueError(f"optimizer_scalars must be a dict, got {scalars!r}")
        for attr, value in scalars.items():
            if attr not in current or not _scalar_fits(current[attr], value):
                raise ValueError(
                    f"optimizer {type(self.optimizer).__name__} cannot take {attr}={value!r} "
                    f"(it has {attr}={current.get(attr, 'no such attribute')!r})"
                )
        return scalars

    def _checked_optimizer_dicts(self, names: Any,
                                 saved: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        """The optimizer's state dicts (``optim.<attr>.<key>`` arrays), each array
        of the shape and dtype of the parameter ``key``."""
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                and set(names) <= set(vars(self.optimizer))):
            raise ValueError(
                f"optimizer_dicts {names!r} are not attributes of {type(self.optimizer).__name__}"
            )
        dicts: dict[str, dict[str, np.ndarray]] = {attr: {} for attr in names}
        params = self.network.params
        for name, value in saved.items():
            attr, _, key = name.partition(".")
            param = params.get(key)
            if attr not in dicts or param is None:
                raise ValueError(f"optimizer state 'optim.{name}' is not one of this optimizer")
            if value.shape != param.shape or value.dtype != param.dtype:
                raise ValueError(
                    f"optimizer state 'optim.{name}' is {value.shape} {value.dtype}, "
                    f"params[{key!r}] is {param.shape} {param.dtype}"
                )
            dicts[attr][key] = value.copy()
        return dicts


class _SavedRun(NamedTuple):
    """A checkpoint's content, checked, ready to be assigned to a trainer."""

    state: dict[str, np.ndarray]
    optimizer_scalars: dict[str, Any]
    optimizer_dicts: dict[str, dict[str, np.ndarray]]
    rng: dict
    np_random: tuple
    order: np.ndarray | None
    history: dict[str, list[float]]
    current_iter: int
    current_epoch: int


_HISTORY = ("train_loss_list", "train_acc_list", "test_acc_list")
_META_KEYS = ("format", "network", "optimizer", "optimizer_scalars", "optimizer_dicts",
              "batch_size", "train_size", "replacement", "current_iter", "current_epoch",
              "rng", "np_random")


def _checked_meta(value: np.ndarray | None) -> dict[str, Any]:
    """The ``meta`` entry: a JSON object of the current format holding every key."""
    if value is None:
        raise ValueError("not a fastzero checkpoint (no 'meta' entry; a parameter file?)")
    if value.shape != () or value.dtype.kind != "U":
        raise ValueError(f"not a fastzero checkpoint ('meta' is {value.shape} {value.dtype})")
    try:
        meta = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt checkpoint: 'meta' is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"corrupt checkpoint: 'meta' is a {type(meta).__name__}, not an object")
    if meta.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"not a fastzero checkpoint (format {meta.get('format')!r})")
    missing = [key for key in _META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"corrupt checkpoint: 'meta' lacks {', '.join(missing)}")
    return meta


def _scalar_fits(current: Any, value: Any) -> bool:
    """Whether a saved optimizer scalar may replace ``current``: numbers stay finite
    numbers, ints stay ints (non-negative counters stay non-negative), others keep their type."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if current is None:
        return True
    if number(current):
        if not (number(value) and math.isfinite(value)):
            return False
        return not isinstance(current, int) or (isinstance(value, int) and (current < 0 or value >= 0))
    return type(value) is type(current)


def _checked_generator_state(rng: np.random.Generator, state: Any) -> dict:
    """``state`` if a bit generator like ``rng``'s accepts it (tried on a scratch one)."""
    try:
        type(rng.bit_generator)(0).state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"invalid random generator state 'rng' ({exc!r})") from None
    return state


def _checked_legacy_state(saved: Any, keys: np.ndarray | None) -> tuple:
    """The ``np.random`` (MT19937) state tuple from ``meta['np_random']`` and its keys.

    ``pos`` is range-checked here: numpy accepts any value and would then
    read the key array out of bounds.
    """
    if keys is None or keys.dtype != np.uint32 or keys.shape != (624,):
        got = "nothing" if keys is None else f"{keys.shape} {keys.dtype}"
        raise ValueError(f"'np_random.keys' must be 624 uint32 MT19937 keys, got {got}")
    if not (isinstance(saved, list) and len(saved) == 4):
        raise ValueError(f"invalid np.random state {saved!r}")
    kind, pos, has_gauss, cached = saved
    if (kind != "MT19937" or type(pos) is not int or not 0 <= pos <= 624
            or has_gauss not in (0, 1) or isinstance(has_gauss, bool)
            or not isinstance(cached, (int, float))):
        raise ValueError(f"invalid np.random state {saved!r}")
    return kind, keys, pos, has_gauss, float(cached)


def _is_permutation(order: np.ndarray, n: int) -> bool:
    return (order.dtype.kind in "iu" and order.shape == (n,)
            and np.array_equal(np.sort(order), np.arange(n)))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


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
