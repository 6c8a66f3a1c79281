"""A training run's output directory: checked up front, and locked for the run.

``fastzero train`` writes its parameters, checkpoint, history and plot into one
directory. :func:`open_run_dir` creates it (refusing a file, or a place that
cannot be written) and holds an exclusive ``flock`` on ``DIR/.lock`` for the
run, with the holder's pid written in it, so that a second run into the same
directory is refused instead of mixing its files with the first one's. The
operating system drops the lock when its process ends, however it ends: a
lock file left by a dead process does not block.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

try:  # POSIX only; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunDirInUse", "open_run_dir"]

LOCK_NAME = ".lock"


class RunDirInUse(OSError):
    """Another live process holds the output directory's lock."""


def _writable_dir(directory: Path, flag: str) -> None:
    """Create ``directory`` (and its parents); ValueError naming ``flag`` if it cannot be."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{flag} {directory} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{flag} {directory}: cannot create the directory ({exc.strerror})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {directory}: the directory is not writable")


def _holder(fd: int) -> str:
    """The pid written in the lock file (the holder writes it just after locking)."""
    deadline = time.monotonic() + 1.0
    while True:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid or time.monotonic() > deadline:
            return pid or "unknown"
        time.sleep(0.01)


@contextlib.contextmanager
def open_run_dir(directory: str | os.PathLike, flag: str = "--out") -> Iterator[Path]:
    """Create ``directory`` if needed and hold its lock while the block runs.

    Raises ValueError (naming ``flag``) if it is a file or cannot be written,
    and :class:`RunDirInUse` naming the holder's pid if another process holds it.
    """
    directory = Path(directory)
    _writable_dir(directory, flag)
    if fcntl is None:  # pragma: no cover
        yield directory
        return
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ValueError(f"{flag} {directory}: cannot write there ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUse(
                f"{directory} is in use by another run (pid {_holder(fd)}); wait for it to "
                f"finish or choose another {flag}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield directory
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the lock
