"""One trial of a search: build the network, train it, return its record.

This is what runs on a Dask worker (or in-process): it imports nothing from
Dask. A trial's numbers depend on its seed, its parameters and the thread
count only, so every worker computes the same record for the same trial.
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fastzero._backend import DEFAULT_BACKEND

__all__ = ["NETS", "TrialConfig", "SearchData", "TrialState", "build_net", "final_accuracy",
           "run_trial", "split_validation"]

#: Networks a search can train, with the hyper-parameters each one takes.
NETS: dict[str, tuple[str, ...]] = {
    "multi_layer": ("lr", "batch_size", "hidden_size", "weight_decay", "dropout"),
    "multi_layer_bn": ("lr", "batch_size", "hidden_size", "weight_decay", "dropout"),
    "two_layer": ("lr", "batch_size", "hidden_size"),
    "simple": ("lr", "batch_size", "hidden_size"),
    "deep": ("lr", "batch_size"),
}
_FLAT_INPUT = {"multi_layer", "multi_layer_bn", "two_layer"}


@dataclass(frozen=True)
class TrialConfig:
    """What every trial of a search shares (the book's experiment by default).

    ``fixed`` holds the values of the hyper-parameters the search space does
    not draw (``lr``, ``batch_size``, ``hidden_size``, ``weight_decay``, ``dropout``).
    """

    net: str = "multi_layer"
    hidden_layers: int = 6
    optimizer: str = "sgd"
    dtype: str = "float64"
    backend: str = DEFAULT_BACKEND
    threads: int = 1
    sampling: str = "shuffle"
    fixed: dict[str, float] = field(default_factory=lambda: {
        "lr": 0.01, "batch_size": 100, "hidden_size": 100, "weight_decay": 0.0, "dropout": 0.0})

    def __post_init__(self) -> None:
        if self.net not in NETS:
            raise ValueError(f"unknown network {self.net!r}; choose one of {', '.join(NETS)}")
        if self.sampling not in ("shuffle", "book"):
            raise ValueError(f"sampling must be 'shuffle' or 'book', got {self.sampling!r}")
        if self.threads < 1 or self.hidden_layers < 1:
            raise ValueError("threads and hidden_layers must be at least 1")

    @property
    def flat_input(self) -> bool:
        return self.net in _FLAT_INPUT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchData:
    """Training and validation samples, in the networks' dtype (sent to the cluster once)."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray
    t_val: np.ndarray


def split_validation(x: np.ndarray, t: np.ndarray, rate: float, seed: int,
                     dtype: Any) -> SearchData:
    """The book's split: shuffle ``(x, t)``, the first ``int(len * rate)`` samples validate."""
    if not 0 < rate < 1:
        raise ValueError(f"the validation rate must be in (0, 1), got {rate}")
    n_val = int(len(x) * rate)
    if n_val < 1 or n_val >= len(x):
        raise ValueError(f"{len(x)} samples at validation rate {rate} leave an empty split")
    order = np.random.default_rng(seed).permutation(len(x))
    x, t = np.ascontiguousarray(x[order], dtype=dtype), t[order]
    return SearchData(x[n_val:], t[n_val:], x[:n_val], t[:n_val])


def build_net(config: TrialConfig, params: dict[str, Any], input_shape: tuple[int, ...],
              seed: int) -> Any:
    """The network of ``config.net`` with the trial's hyper-parameters ``params``."""
    from fastzero import nets

    dtype = np.dtype(config.dtype)
    hidden = int(params["hidden_size"])
    if config.net in ("multi_layer", "multi_layer_bn"):
        size = int(np.prod(input_shape))
        dropout = float(params["dropout"])
        return nets.MultiLayerNetExtend(
            size, [hidden] * config.hidden_layers, 10, weight_decay_lambda=params["weight_decay"],
            use_dropout=dropout > 0, dropout_ration=dropout,
            use_batchnorm=config.net == "multi_layer_bn", dtype=dtype, seed=seed)
    if config.net == "two_layer":
        return nets.TwoLayerNet(int(np.prod(input_shape)), hidden, 10, dtype=dtype, seed=seed)
    if config.net == "simple":
        return nets.SimpleConvNet(input_dim=input_shape, hidden_size=hidden, dtype=dtype, seed=seed)
    return nets.DeepConvNet(input_dim=input_shape, dtype=dtype, seed=seed)


@dataclass
class TrialState:
    """A trial's trainer between two rungs of successive halving, without its data."""

    trainer: Any
    np_random: tuple


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{socket.gethostname()}"


def _epoch_means(losses: list[float], steps: int) -> list[float]:
    """The mean training loss of every complete epoch."""
    return [float(np.mean(losses[i:i + steps])) for i in range(0, len(losses) - steps + 1, steps)]


def run_trial(config: TrialConfig, trial: int, params: dict[str, Any], seed: int,
              data: SearchData, epochs: int, state: TrialState | None = None,
              keep_state: bool = False) -> tuple[dict[str, Any], TrialState | None]:
    """Train trial ``trial`` up to ``epochs`` epochs; returns ``(record, state)``.

    ``state`` (from an earlier call with ``keep_state=True``) continues that
    run instead of starting afresh; training continued from ``k`` epochs
    gives the same numbers as training ``epochs`` epochs at once. A loss
    that becomes NaN or infinite ends the trial with status ``'diverged'``.
    """
    import fastzero
    from fastzero._threads import max_threads
    from fastzero.trainer import Trainer, TrainingDiverged

    start = time.perf_counter()
    fastzero.set_backend(config.backend)
    threads = min(config.threads, max_threads())
    fastzero.set_num_threads(threads)
    values = {**config.fixed, **params}
    if state is None:
        net_seed, train_seed = np.random.SeedSequence(seed).generate_state(2)
        net = build_net(config, values, data.x_train.shape[1:], int(net_seed))
        trainer = Trainer(net, data.x_train, data.t_train, data.x_val, data.t_val, epochs=epochs,
                          mini_batch_size=int(values["batch_size"]), optimizer=config.optimizer,
                          optimizer_param={"lr": float(values["lr"])}, verbose=False,
                          replacement=config.sampling == "book", seed=int(train_seed))
    else:
        trainer = state.trainer
        trainer.x_train, trainer.t_train = data.x_train, data.t_train
        trainer.x_test, trainer.t_test = data.x_val, data.t_val
        trainer.epochs, trainer.max_iter = epochs, epochs * trainer.iter_per_epoch
        np.random.set_state(state.np_random)
    status, error = "ok", None
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported below
            trainer.train()
    except TrainingDiverged as exc:
        status, error = "diverged", str(exc)
    record = {
        "trial": trial,
        "params": params,
        "seed": seed,
        "epochs": epochs,
        "status": status,
        "train_loss": _epoch_means(trainer.train_loss_list, trainer.iter_per_epoch),
        "train_acc": [float(a) for a in trainer.train_acc_list],
        "val_acc": [float(a) for a in trainer.test_acc_list],
        "time": time.perf_counter() - start,
        "worker": _worker_name(),
        "pid": os.getpid(),
        "threads": threads,
    }
    if error is not None:
        record["error"] = error
    if not (keep_state and status == "ok"):
        return record, None
    trainer.x_train = trainer.t_train = trainer.x_test = trainer.t_test = None
    return record, TrialState(trainer, np.random.get_state())


def final_accuracy(record: dict[str, Any]) -> float:
    """The record's last validation accuracy; -inf unless it finished ('ok')."""
    if record.get("status") != "ok" or not record.get("val_acc"):
        return -math.inf
    return record["val_acc"][-1]
