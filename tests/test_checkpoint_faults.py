"""Checkpoints under faults: SIGKILL mid-write, a full disk, truncated and corrupt files.

A real training process (tests/checkpoint_child.py: batch norm, dropout,
Adam, a checkpoint every epoch), on each backend, is killed with SIGKILL at
chosen moments -- after the temporary file is complete but before the rename,
in the middle of writing the archive -- and at random moments inside
checkpoint writes (counted). Every time, the file under the
checkpoint's final name is a complete checkpoint identical (array for array)
to one the uninterrupted run wrote, and resuming from it ends exactly where the
uninterrupted run ends. A write that fails (disk full) keeps the previous
checkpoint. A truncated, corrupt or incomplete checkpoint is refused with a
ValueError naming the file, and a refused load changes nothing.

``FASTZERO_KILL_ROUNDS`` sets the number of random kills (default 5).
"""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastzero
from fastzero._backend import available_backends
from checkpoint_child import make_trainer

TESTS = Path(__file__).parent
CHILD = TESTS / "checkpoint_child.py"
EPOCHS = 10


@pytest.fixture(autouse=True)
def same_backend_as_the_children(request):
    """In-process trainers use the backend of the test's child processes (numpy if none)."""
    backend = "numpy"
    if "uninterrupted" in request.fixturenames:
        backend = request.getfixturevalue("uninterrupted")["backend"]
    with fastzero.use_backend(backend):
        yield


def spawn(checkpoint: Path, result: Path, *, resume: bool = False, backend: str = "numpy",
          **env: str) -> subprocess.Popen:
    args = [sys.executable, str(CHILD), str(checkpoint), str(result), str(EPOCHS)]
    return subprocess.Popen(
        args + (["--resume"] if resume else []),
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
             "CKPT_BACKEND": backend, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err[-3000:]}"


def kill_when(proc: subprocess.Popen, signal_file: Path, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as it creates ``signal_file`` (it then sleeps at the fault point)."""
    deadline = time.monotonic() + timeout
    while not signal_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited before the fault point:\n{proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "child never reached the fault point"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def contents(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz (zip timestamps differ between runs; the arrays must not)."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def assert_same_arrays(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b), what
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{what}: {name}")


def temp_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module", params=available_backends())
def uninterrupted(request, tmp_path_factory):
    """The reference run on one backend: final state and every per-epoch checkpoint's arrays."""
    backend = request.param
    directory = tmp_path_factory.mktemp(f"uninterrupted-{backend}")
    checkpoint, result = directory / "ckpt.npz", directory / "result.npz"
    finish(spawn(checkpoint, result, backend=backend, CKPT_SNAPSHOTS="1"))
    snapshots = {e: contents(Path(f"{checkpoint}.epoch{e}")) for e in range(1, EPOCHS + 1)}
    return {"final": contents(result), "snapshots": snapshots, "backend": backend}


def assert_resumes_to_the_uninterrupted_end(checkpoint: Path, uninterrupted) -> None:
    result = checkpoint.with_name("resumed.npz")
    finish(spawn(checkpoint, result, resume=checkpoint.exists(), backend=uninterrupted["backend"]))
    assert_same_arrays(contents(result), uninterrupted["final"], "resumed run vs uninterrupted run")


@pytest.mark.parametrize("fault", ["fsync:4", "member:4:5", "member:1:3"],
                         ids=["temp-file-complete-not-renamed", "half-written-archive",
                              "first-checkpoint-half-written"])
def test_sigkill_during_a_checkpoint_write_keeps_the_last_complete_one(tmp_path, uninterrupted, fault):
    checkpoint, signal_file = tmp_path / "ckpt.npz", tmp_path / "paused"
    proc = spawn(checkpoint, tmp_path / "never.npz", backend=uninterrupted["backend"],
                 CKPT_PAUSE=fault, CKPT_SIGNAL=str(signal_file))
    kill_when(proc, signal_file)
    writing = int(fault.split(":")[1])

    # the killed write left its temporary file, never a file under the final name
    (tmp,) = temp_files(tmp_path)
    if fault.startswith("member"):
        with pytest.raises(zipfile.BadZipFile):
            contents(tmp)  # really a partial archive: the kill hit mid-write
    else:
        assert_same_arrays(contents(tmp), uninterrupted["snapshots"][writing], "complete temp file")
    if writing == 1:
        assert not checkpoint.exists()
    else:
        assert_same_arrays(contents(checkpoint), uninterrupted["snapshots"][writing - 1],
                           "checkpoint after the kill")
        trainer = make_trainer(checkpoint, EPOCHS)
        trainer.load_checkpoint(checkpoint)
        assert trainer.current_epoch == writing - 1
    assert_resumes_to_the_uninterrupted_end(checkpoint, uninterrupted)


def _which_snapshot(saved: dict, snapshots: dict) -> int | None:
    """The epoch of the uninterrupted run's checkpoint equal to ``saved``, if any."""
    for epoch, reference in snapshots.items():
        if set(saved) == set(reference) and all(np.array_equal(saved[k], reference[k])
                                                 for k in reference):
            return epoch
    return None


def test_sigkill_at_random_moments_never_breaks_the_checkpoint(tmp_path, uninterrupted):
    """Kills at random moments inside checkpoint writes (each round: the K-th write of a
    child resuming from the last checkpoint, at a random time within it). After every
    kill the checkpoint is the last completed one (or the one being written, if the kill
    came after its rename), and it loads; one that existed before is never lost."""
    rounds = int(os.environ.get("FASTZERO_KILL_ROUNDS", "5"))
    rng = np.random.default_rng(int(os.environ.get("FASTZERO_KILL_SEED", "7")))
    checkpoint, trace = tmp_path / "ckpt.npz", tmp_path / "trace"
    snapshots = uninterrupted["snapshots"]
    epoch, inside_writes, history = 0, 0, []
    for round_ in range(rounds):
        trace.mkdir()
        k = int(rng.integers(1, 3))  # the child's first or second checkpoint write
        # 20 ms before each of the ~40 archive members and in the fsync: a write takes > 0.8 s
        proc = spawn(checkpoint, tmp_path / "never.npz", resume=checkpoint.exists(),
                     backend=uninterrupted["backend"], CKPT_TRACE=str(trace),
                     CKPT_SLOW_WRITE="0.02")
        deadline = time.monotonic() + 120
        while not (trace / f"entered.{k}").exists():
            assert proc.poll() is None, f"child exited early:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, f"child never started checkpoint write {k}"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        inside = not (trace / f"left.{k}").exists()
        inside_writes += inside
        completed = epoch + (k - 1) + (not inside)  # the epoch of the last write that returned
        if not checkpoint.exists():
            assert completed == 0, f"round {round_}: the kill destroyed the checkpoint of epoch {completed}"
            history.append((k, inside, None))
            shutil.rmtree(trace)
            continue
        saved_epoch = _which_snapshot(contents(checkpoint), snapshots)
        assert saved_epoch is not None, "the checkpoint is none of the uninterrupted run's"
        assert saved_epoch in (completed, completed + 1), (
            f"round {round_}: epoch {saved_epoch} on disk, {completed} writes had completed")
        trainer = make_trainer(checkpoint, EPOCHS)
        trainer.load_checkpoint(checkpoint)
        assert trainer.current_epoch == saved_epoch
        epoch = saved_epoch
        history.append((k, inside, epoch))
        shutil.rmtree(trace)
    print(f"\nSIGKILLs (write, inside it, epoch on disk after): {history}; "
          f"{len(temp_files(tmp_path))} interrupted writes left temporary files")
    assert inside_writes >= rounds - 1, f"only {inside_writes} of {rounds} kills landed inside a write"
    assert_resumes_to_the_uninterrupted_end(checkpoint, uninterrupted)


def test_full_disk_during_a_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, uninterrupted):
    """ENOSPC half-way through the third checkpoint: the second stays, no temp file is left,
    and training resumed from it ends where the uninterrupted run ends."""
    checkpoint = tmp_path / "ckpt.npz"
    trainer = make_trainer(checkpoint, EPOCHS)
    trainer.max_iter = 2 * trainer.iter_per_epoch  # stop after two epochs of the ten
    trainer.train()

    real_write_array = np.lib.format.write_array
    calls = []

    def failing_write_array(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            fp.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    trainer.max_iter = EPOCHS * trainer.iter_per_epoch
    with pytest.raises(OSError, match="No space left"):
        trainer.train()
    monkeypatch.undo()
    assert temp_files(tmp_path) == []
    assert_same_arrays(contents(checkpoint), uninterrupted["snapshots"][2], "checkpoint after ENOSPC")
    assert_resumes_to_the_uninterrupted_end(checkpoint, uninterrupted)


# ------------------------------------------------------------------ corrupt checkpoints

def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _with_meta(arrays: dict, **changes) -> bytes:
    meta = json.loads(str(arrays["meta"]))
    meta.update(changes)
    return _npz_bytes({**arrays, "meta": np.array(json.dumps(meta))})


def _flip_in_member_data(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo("param.W1.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    flipped = bytearray(data)
    flipped[start + info.compress_size - 1] ^= 0x01
    return bytes(flipped)


def _without(arrays: dict, *names: str) -> bytes:
    return _npz_bytes({k: v for k, v in arrays.items() if not k.startswith(names)})


def _with_settings(arrays: dict, **changes) -> bytes:
    meta = json.loads(str(arrays["meta"]))
    return _with_meta(arrays, settings={**meta["settings"], **changes})


def _with_legacy_pos(arrays: dict, pos: int) -> bytes:
    meta = json.loads(str(arrays["meta"]))
    return _with_meta(arrays, np_random=[meta["np_random"][0], pos, *meta["np_random"][2:]])


# name -> corrupted file from the valid checkpoint's bytes and arrays
CORRUPTIONS = {
    "truncated-half": lambda data, arrays: data[: len(data) // 2],
    "truncated-last-byte": lambda data, arrays: data[:-1],
    "empty": lambda data, arrays: b"",
    "random-bytes": lambda data, arrays: np.random.default_rng(0).bytes(4000),
    "crc-mismatch": lambda data, arrays: _flip_in_member_data(data),
    "no-meta": lambda data, arrays: _without(arrays, "meta"),
    "meta-not-json": lambda data, arrays: _npz_bytes({**arrays, "meta": np.array("{oops")}),
    "meta-not-a-dict": lambda data, arrays: _npz_bytes({**arrays, "meta": np.array("[1, 2]")}),
    "meta-incomplete": lambda data, arrays: _npz_bytes({**arrays, "meta": np.array('{"format": 1}')}),
    "no-history": lambda data, arrays: _without(arrays, "history."),
    "history-too-short": lambda data, arrays: _npz_bytes(
        {**arrays, "history.train_loss_list": arrays["history.train_loss_list"][:-1]}),
    "no-random-state": lambda data, arrays: _without(arrays, "np_random.keys"),
    "legacy-random-position-out-of-range": lambda data, arrays: _with_legacy_pos(arrays, 10**6),
    "generator-state-foreign": lambda data, arrays: _with_meta(arrays, rng={"bit_generator": "MT19937"}),
    "optimizer-state-wrong-shape": lambda data, arrays: _npz_bytes({**arrays, "optim.m.W1": np.zeros(3)}),
    "optimizer-state-wrong-dtype": lambda data, arrays: _npz_bytes(
        {**arrays, "optim.m.W1": arrays["optim.m.W1"].astype(np.float32)}),
    "optimizer-unknown-state": lambda data, arrays: _npz_bytes({**arrays, "optim.zzz.W1": np.zeros(3)}),
    "optimizer-counter-not-an-int": lambda data, arrays: _with_meta(
        arrays, optimizer_scalars={"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "iter": "12"}),
    "parameter-not-numeric": lambda data, arrays: _npz_bytes(
        {**arrays, "param.W1": np.full(arrays["param.W1"].shape, "x")}),
    "unexpected-entry": lambda data, arrays: _npz_bytes({**arrays, "evil": np.zeros(3)}),
    "order-not-a-permutation": lambda data, arrays: _npz_bytes(
        {**arrays, "order": np.zeros_like(arrays["order"])}),
    "step-counter-not-an-int": lambda data, arrays: _with_meta(arrays, current_iter="12"),
    "step-counter-negative": lambda data, arrays: _with_meta(arrays, current_iter=-6),
    "epoch-counter-inconsistent": lambda data, arrays: _with_meta(arrays, current_epoch=5),
    "a-parameter-file": lambda data, arrays: _npz_bytes(
        {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("param.")}),
    "another-network-shape": lambda data, arrays: _npz_bytes({**arrays, "param.W1": np.zeros((8, 7))}),
    "another-batch-size": lambda data, arrays: _with_meta(arrays, batch_size=7),
    "another-lr-schedule": lambda data, arrays: _with_meta(arrays, lr_schedule="cosine"),
    "another-format": lambda data, arrays: _with_meta(arrays, format=99),
    "another-dtype": lambda data, arrays: _npz_bytes(
        {**arrays, "param.W1": arrays["param.W1"].astype(np.float32)}),
    "settings-not-an-object": lambda data, arrays: _with_meta(arrays, settings=[1]),
    "seed-not-an-int": lambda data, arrays: _with_settings(arrays, seed="1"),
    "another-learning-rate": lambda data, arrays: _with_settings(
        arrays, optimizer_settings={"lr": 0.5, "beta1": 0.9, "beta2": 0.999, "iter": 0}),
    "another-evaluation-sample-count": lambda data, arrays: _with_settings(
        arrays, evaluate_sample_num_per_epoch=7),
}


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("valid") / "ckpt.npz"
    with fastzero.use_backend("numpy"):
        trainer = make_trainer(path, 2)
        trainer.train()
    return path.read_bytes(), contents(path)


def _trainer_state(trainer) -> dict:
    opt = trainer.optimizer
    return {
        "state": {k: v.copy() for k, v in trainer.network.state().items()},
        "optimizer": (opt.iter, {k: v.copy() for k, v in opt.m.items()}, {k: v.copy() for k, v in opt.v.items()}),
        "counters": (trainer.current_iter, trainer.current_epoch, list(trainer.train_loss_list)),
        "rng": (json.dumps(trainer.rng.bit_generator.state), np.random.get_state()[1].copy()),
    }


def _assert_same_state(a: dict, b: dict) -> None:
    assert_same_arrays(a["state"], b["state"], "network")
    assert a["optimizer"][0] == b["optimizer"][0]
    for i in (1, 2):
        assert_same_arrays(a["optimizer"][i], b["optimizer"][i], "optimizer state")
    assert a["counters"] == b["counters"]
    assert a["rng"][0] == b["rng"][0]
    np.testing.assert_array_equal(a["rng"][1], b["rng"][1])


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_checkpoint_is_refused_naming_the_file_and_changes_nothing(tmp_path, valid_checkpoint, name):
    data, arrays = valid_checkpoint
    path = tmp_path / "ckpt.npz"
    path.write_bytes(CORRUPTIONS[name](data, arrays))
    trainer = make_trainer(None, EPOCHS)
    trainer.train_step()  # some state of its own, which a refused load must keep
    before = _trainer_state(trainer)
    with pytest.raises(ValueError, match=str(path)):
        trainer.load_checkpoint(path)
    _assert_same_state(_trainer_state(trainer), before)


def test_valid_checkpoint_loads_in_a_fresh_trainer(valid_checkpoint, tmp_path):
    """The control for the corruption cases: the unmodified bytes load."""
    data, arrays = valid_checkpoint
    path = tmp_path / "ckpt.npz"
    path.write_bytes(data)
    trainer = make_trainer(None, EPOCHS)
    trainer.load_checkpoint(path)
    assert trainer.current_epoch == 2
    for key, value in trainer.network.params.items():
        np.testing.assert_array_equal(value, arrays[f"param.{key}"])


def test_checkpoint_from_before_lr_schedules_loads(valid_checkpoint, tmp_path):
    """Checkpoints written before ``lr_schedule`` existed have no such key: constant."""
    data, arrays = valid_checkpoint
    meta = json.loads(str(arrays["meta"]))
    assert meta.pop("lr_schedule") == "constant"
    path = tmp_path / "ckpt.npz"
    path.write_bytes(_npz_bytes({**arrays, "meta": np.array(json.dumps(meta))}))
    trainer = make_trainer(None, EPOCHS)
    trainer.load_checkpoint(path)
    assert trainer.current_epoch == 2
