"""Checkpoints of a training run: everything :class:`fastzero.trainer.Trainer`
needs to continue a run bit for bit, in one ``.npz`` written atomically.

Entries: ``param.<name>`` and ``buffer.<name>`` (the network's parameters and
the state of its layers, :func:`fastzero.blocks.network_buffers`: batch-norm
statistics, also those of the book's own networks), ``optim.<attr>.<key>`` (the optimizer's state dicts),
``order`` (the epoch's batch order), ``np_random.keys``, ``history.<list>``,
and ``meta``, a JSON object with the run's counters, settings (``settings``:
the trainer's; ``run``: the caller's ``run_info``, e.g. the command line's) and
random states. Reading checks the whole file against the trainer before
anything changes; :func:`read_settings` reads the settings alone, so that a
caller can rebuild the run before loading it.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from fastzero import blocks, params_io

__all__ = ["save_checkpoint", "load_checkpoint", "read_settings"]

_CHECKPOINT_FORMAT = 1


def save_checkpoint(trainer: Any, path: str | os.PathLike) -> None:
    """Write everything needed to continue this run to ``path`` (``.npz``), atomically."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in trainer.network.params.items():
        arrays[f"param.{name}"] = value
    for name, value in blocks.network_buffers(trainer.network).items():
        arrays[f"buffer.{name}"] = value
    optimizer_scalars, optimizer_dicts = {}, []
    for attr, value in vars(trainer.optimizer).items():
        if isinstance(value, dict):
            optimizer_dicts.append(attr)
            for key, state in value.items():
                arrays[f"optim.{attr}.{key}"] = state
        elif value is None or isinstance(value, (bool, int, float, str)):
            optimizer_scalars[attr] = value
    legacy = np.random.get_state()
    arrays["np_random.keys"] = legacy[1]
    if trainer._order is not None:
        arrays["order"] = trainer._order
    for name in ("train_loss_list", "train_acc_list", "test_acc_list"):
        arrays[f"history.{name}"] = np.asarray(getattr(trainer, name), dtype=np.float64)
    meta = {
        "format": _CHECKPOINT_FORMAT,
        "network": type(trainer.network).__name__,
        "optimizer": type(trainer.optimizer).__name__,
        "optimizer_scalars": optimizer_scalars,
        "optimizer_dicts": optimizer_dicts,
        "batch_size": trainer.batch_size,
        "train_size": trainer.train_size,
        "replacement": trainer.replacement,
        "lr_schedule": trainer.lr_schedule,
        "current_iter": trainer.current_iter,
        "current_epoch": trainer.current_epoch,
        "rng": trainer.rng.bit_generator.state,
        "np_random": [legacy[0], *map(_plain, legacy[2:])],
        "settings": trainer.settings(),
        "run": trainer.run_info,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    params_io.save_npz(arrays, path)


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings a checkpoint was written with: ``{"settings": the trainer's,
    "run": the caller's run_info, "current_iter": ..., "current_epoch": ...}``;
    ``settings`` and ``run`` are ``{}`` in checkpoints written before they were saved.

    ValueError naming the file if it is not a checkpoint.
    """
    try:
        meta = _checked_meta(params_io.read_npz(path, only={"meta"}).get("meta"))
        settings, run = meta.get("settings", {}), meta.get("run", {})
        if not (isinstance(settings, dict) and isinstance(run, dict)):
            raise ValueError("corrupt checkpoint: 'settings' and 'run' must be objects")
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None
    return {"settings": settings, "run": run, "current_iter": meta["current_iter"],
            "current_epoch": meta["current_epoch"]}

def load_checkpoint(trainer: Any, path: str | os.PathLike) -> None:
    """Continue the run saved in ``path``: restores the network's parameters
    (in place), the optimizer, the random states, the history and the step counters.

    The trainer must be set up as the saved one (network class, parameter
    shapes and dtypes, optimizer and its hyper-parameters, batch size,
    sampling, schedule, training set size, evaluation sample count);
    ``epochs`` may differ, e.g. to train for longer, and the seed is the
    checkpoint's (its random states are restored).

    The whole file is checked before anything changes: a truncated,
    corrupt or foreign file, or one saved by another setup, raises
    ``ValueError`` naming the file and leaves the network, the optimizer,
    the random states, the history and the counters as they were.
    """
    source = os.fspath(path)
    arrays = params_io.read_npz(path, check=_entry_sizes(trainer))
    try:
        saved = _checked_checkpoint(trainer, arrays)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None

    params_io.assign_params(_network_state(trainer.network), saved.state, source)
    for attr, value in saved.optimizer_scalars.items():
        setattr(trainer.optimizer, attr, value)
    for attr, value in saved.optimizer_dicts.items():
        setattr(trainer.optimizer, attr, value)
    trainer.rng.bit_generator.state = saved.rng
    np.random.set_state(saved.np_random)
    trainer._order = saved.order
    for name, values in saved.history.items():
        setattr(trainer, name, values)
    trainer.current_iter = saved.current_iter
    trainer.current_epoch = saved.current_epoch
    trainer.seed = saved.seed

def _entry_sizes(trainer: Any) -> Callable[[Mapping[str, params_io.Declared]], None]:
    """A check of a checkpoint's entries by the sizes their headers declare, run before
    any entry is read: none larger than this trainer's run writes there."""
    state = _network_state(trainer.network)
    largest = max((value.size for value in state.values()), default=0)
    fixed = {"order": 8 * trainer.train_size, "np_random.keys": 4 * 624, "meta": _MAX_META_BYTES,
             **{f"history.{name}": 8 * _MAX_HISTORY for name in _HISTORY}}

    def check(declared: Mapping[str, params_io.Declared]) -> None:
        for name, entry in declared.items():
            group, _, key = name.partition(".")
            if group in ("param", "buffer", "optim"):
                key = key.partition(".")[2] if group == "optim" else key
                most = 8 * (state[key].size if key in state else largest)
            elif name in fixed:
                most = fixed[name]
            else:
                raise ValueError(f"unexpected entry {name!r}: not a fastzero checkpoint")
            if entry.nbytes > most:
                raise ValueError(f"entry {name!r} declares {entry.shape} {entry.dtype} "
                                 f"({entry.nbytes} bytes); this trainer's checkpoint holds at "
                                 f"most {most} bytes there")

    return check

def _network_state(network: Any) -> dict[str, np.ndarray]:
    """The network's parameters and buffers (its layers' state), by name."""
    return {**network.params, **blocks.network_buffers(network)}

def _checked_checkpoint(trainer: Any, arrays: dict[str, np.ndarray]) -> _SavedRun:
    """The checkpoint's content, every part checked against this trainer; ValueError if not."""
    meta = _checked_meta(arrays.get("meta"))
    expected = {
        "network": type(trainer.network).__name__,
        "optimizer": type(trainer.optimizer).__name__,
        "batch_size": trainer.batch_size,
        "train_size": trainer.train_size,
        "replacement": trainer.replacement,
        "lr_schedule": trainer.lr_schedule,
    }
    meta.setdefault("lr_schedule", "constant")  # written before schedules existed
    settings = meta.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"corrupt checkpoint: 'settings' is {settings!r}")
    if "evaluate_sample_num_per_epoch" in settings:
        expected["evaluate_sample_num_per_epoch"] = trainer.evaluate_sample_num_per_epoch
        meta["evaluate_sample_num_per_epoch"] = settings["evaluate_sample_num_per_epoch"]
    for key, value in expected.items():
        if meta[key] != value:
            raise ValueError(
                f"checkpoint was written with {key}={meta[key]!r}, this trainer has {key}={value!r}"
            )
    initial = settings.get("optimizer_settings", trainer.optimizer_settings)
    for key, value in trainer.optimizer_settings.items():
        if isinstance(initial, dict) and key in initial and initial[key] != value:
            raise ValueError(
                f"checkpoint was written with optimizer {key}={initial[key]!r}, "
                f"this trainer has {key}={value!r}"
            )
    seed = settings.get("seed", trainer.seed)
    if seed is not None and type(seed) is not int:
        raise ValueError(f"corrupt checkpoint: seed {seed!r} is not an int")
    current_iter, current_epoch = meta["current_iter"], meta["current_epoch"]
    for key, count in (("current_iter", current_iter), ("current_epoch", current_epoch)):
        if type(count) is not int or count < 0:
            raise ValueError(f"{key} must be a non-negative int, got {count!r}")
    if current_epoch != current_iter // trainer.iter_per_epoch:
        raise ValueError(
            f"current_epoch {current_epoch} does not match current_iter {current_iter} "
            f"at {trainer.iter_per_epoch} steps per epoch"
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
    network_state = _network_state(trainer.network)
    params_io.check_params(network_state, state)
    for name, value in network_state.items():
        if state[name].dtype != value.dtype:
            raise ValueError(
                f"{name!r} was saved as {state[name].dtype}, the network has {value.dtype}: "
                "a run continues in its own dtype"
            )

    order = arrays.get("order")
    if order is not None and not _is_permutation(order, trainer.train_size):
        raise ValueError(
            f"'order' ({order.shape} {order.dtype}) is not a permutation of the "
            f"{trainer.train_size} training samples"
        )
    if order is None and not trainer.replacement and current_iter % trainer.iter_per_epoch:
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
        optimizer_scalars=_checked_optimizer_scalars(trainer.optimizer, meta["optimizer_scalars"]),
        optimizer_dicts=_checked_optimizer_dicts(trainer, meta["optimizer_dicts"], groups["optim"]),
        rng=_checked_generator_state(trainer.rng, meta["rng"]),
        np_random=_checked_legacy_state(meta["np_random"], arrays.get("np_random.keys")),
        order=order,
        history=history,
        current_iter=current_iter,
        current_epoch=current_epoch,
        seed=seed,
    )

def _checked_optimizer_scalars(optimizer: Any, scalars: Any) -> dict[str, Any]:
    """Saved optimizer hyper-parameters and counters, each of its attribute's kind."""
    current = vars(optimizer)
    if not isinstance(scalars, dict):
        raise ValueError(f"optimizer_scalars must be a dict, got {scalars!r}")
    for attr, value in scalars.items():
        if attr not in current or not _scalar_fits(current[attr], value):
            raise ValueError(
                f"optimizer {type(optimizer).__name__} cannot take {attr}={value!r} "
                f"(it has {attr}={current.get(attr, 'no such attribute')!r})"
            )
    return scalars

def _checked_optimizer_dicts(trainer: Any, names: Any,
                             saved: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The optimizer's state dicts (``optim.<attr>.<key>`` arrays), each array
    of the shape and dtype of the parameter ``key``."""
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
            and set(names) <= set(vars(trainer.optimizer))):
        raise ValueError(
            f"optimizer_dicts {names!r} are not attributes of {type(trainer.optimizer).__name__}"
        )
    dicts: dict[str, dict[str, np.ndarray]] = {attr: {} for attr in names}
    params = trainer.network.params
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
    seed: int | None


_HISTORY = ("train_loss_list", "train_acc_list", "test_acc_list")
_MAX_HISTORY = 1 << 22  # training steps a checkpoint's loss history may hold
_MAX_META_BYTES = 1 << 22  # the 'meta' JSON: 1 Mi characters
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
        meta = params_io.parse_json(str(value))
    except ValueError as exc:
        raise ValueError(f"corrupt checkpoint: 'meta' is not readable JSON ({exc})") from None
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
