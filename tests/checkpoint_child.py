"""A small checkpointed training run, for test_checkpoint_faults.py to kill and resume.

``python checkpoint_child.py CHECKPOINT RESULT EPOCHS [--resume]`` trains a
MultiLayerNetExtend (batch norm and dropout, so running statistics and the
random state must survive a resume) with Adam on a fixed synthetic problem,
checkpointing to CHECKPOINT at the end of every epoch, and writes the final
network state and loss history to RESULT (``.npz``).

Fault hooks, set through the environment (the library is not modified):

``CKPT_PAUSE=fsync:K``
    At the K-th checkpoint write, once the temporary file is complete and
    fsync-ed but before it is renamed, create ``CKPT_SIGNAL`` and sleep.
``CKPT_PAUSE=member:K:M``
    At the K-th checkpoint write, after M archive members are written (the
    temporary file is a partial zip), create ``CKPT_SIGNAL`` and sleep.
``CKPT_SNAPSHOTS=1``
    After every completed checkpoint, copy it to ``CHECKPOINT.epoch<E>``.
``CKPT_SLOW=seconds``
    Sleep this long in every training step and in every fsync.
``CKPT_TRACE=directory`` (with ``CKPT_SLOW_WRITE=seconds``)
    Create ``entered.K`` in the directory as the K-th checkpoint write begins
    and ``left.K`` once it has returned (renamed, directory synced), and sleep
    this long before every archive member and in the file's fsync, so that a
    kill timed from ``entered.K`` lands inside the write.
``CKPT_BACKEND=numpy|numba``
    The backend (default numpy).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

import fastzero
from fastzero import params_io
from fastzero.nets import MultiLayerNetExtend
from fastzero.trainer import Trainer


def make_trainer(checkpoint, epochs: int) -> Trainer:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8))
    t = np.argmax(x[:, :3] + 0.3 * rng.standard_normal((60, 3)), axis=1)
    net = MultiLayerNetExtend(8, [10, 10], 3, use_dropout=True, dropout_ration=0.2,
                              use_batchnorm=True, seed=0)
    return Trainer(net, x, t, x[:20], t[:20], epochs=epochs, mini_batch_size=10,
                   optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False, seed=1,
                   checkpoint=checkpoint)


def _pause(signal_path: str) -> None:
    Path(signal_path).write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def install_hooks(checkpoint: str) -> None:
    pause = os.environ.get("CKPT_PAUSE", "")
    signal_path = os.environ.get("CKPT_SIGNAL", checkpoint + ".paused")
    slow = float(os.environ.get("CKPT_SLOW", "0"))
    slow_write = float(os.environ.get("CKPT_SLOW_WRITE", "0"))
    trace = os.environ.get("CKPT_TRACE")
    snapshots = os.environ.get("CKPT_SNAPSHOTS") == "1"
    state = {"writes": 0, "members": 0}
    real_fsync, real_replace, real_open = os.fsync, os.replace, zipfile.ZipFile.open

    def fsync(fd):
        real_fsync(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return  # the directory's fsync after the rename
        if slow or slow_write:
            time.sleep(slow + slow_write)
        if pause == f"fsync:{state['writes'] + 1}":
            _pause(signal_path)

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if os.fspath(dst) == checkpoint:
            state["writes"] += 1
            state["members"] = 0
            if snapshots:
                shutil.copyfile(checkpoint, f"{checkpoint}.epoch{state['writes']}")

    def zip_open(self, name, mode="r", *args, **kwargs):
        if mode == "w" and slow_write:
            time.sleep(slow_write)
        if mode == "w" and pause.startswith("member:"):
            _, k, m = pause.split(":")
            if state["writes"] + 1 == int(k) and state["members"] == int(m):
                self.fp.flush()
                _pause(signal_path)
            state["members"] += 1
        return real_open(self, name, mode, *args, **kwargs)

    real_atomic_write = params_io.atomic_write

    @contextlib.contextmanager
    def traced_atomic_write(path):
        if os.fspath(path) != checkpoint or not trace:
            with real_atomic_write(path) as f:
                yield f
            return
        state["entered"] = state.get("entered", 0) + 1
        k = state["entered"]
        Path(trace, f"entered.{k}").touch()
        with real_atomic_write(path) as f:
            yield f
        Path(trace, f"left.{k}").touch()

    os.fsync, os.replace = fsync, replace
    zipfile.ZipFile.open = zip_open
    params_io.atomic_write = traced_atomic_write
    if slow:
        step = Trainer.train_step

        def slow_step(self):
            time.sleep(slow)
            return step(self)

        Trainer.train_step = slow_step


def main(argv: list[str]) -> None:
    checkpoint, result, epochs = argv[0], argv[1], int(argv[2])
    fastzero.set_backend(os.environ.get("CKPT_BACKEND", "numpy"))
    install_hooks(checkpoint)
    trainer = make_trainer(checkpoint, epochs)
    if "--resume" in argv:
        trainer.load_checkpoint(checkpoint)
    trainer.train()
    np.savez(result + ".tmp.npz", loss=np.array(trainer.train_loss_list),
             epoch=np.array(trainer.current_epoch), **trainer.network.state())
    os.replace(result + ".tmp.npz", result)


if __name__ == "__main__":
    main(sys.argv[1:])
