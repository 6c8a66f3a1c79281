"""A training run's output directory: checked up front, and locked for the run.

``fastzero train`` writes its parameters, checkpoint, history and plot into one
directory. :func:`open_run_dir` creates it (refusing a file, or a place that
cannot be written) and holds an exclusive ``flock`` on ``DIR/.lock`` for the
run, with the holder's pid written in it, so that a second run into the same
directory is refused instead of mixing its files with the first one's. The
operating system drops the lock when its process ends, however it ends: a
lock file left by a dead process does not block.

When the run ends, successfully or not, the lock file is removed, and so is
the directory if this run created it and left nothing in it (a run that
failed before writing anything). The lock file is unlinked while still
locked, and a run that locks a file checks that it is still the one at
``DIR/.lock``; one that locked an unlinked file tries again.
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


def _writable_dir(directory: Path, flag: str) -> list[Path]:
    """Create ``directory`` (and its parents); ValueError naming ``flag`` if it cannot be.

    Returns the directories it created, deepest first.
    """
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{flag} {directory} is a file, not a directory")
    created = [d for d in (directory, *directory.parents) if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{flag} {directory}: cannot create the directory ({exc.strerror})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {directory}: the directory is not writable")
    return created


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories a run created, deepest first, as long as they are empty."""
    for d in created:
        try:
            d.rmdir()
        except OSError:  # not empty (or already gone): keep it and its parents
            return


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
    created = _writable_dir(directory, flag)
    try:
        if fcntl is None:  # pragma: no cover
            yield directory
            return
        lock = directory / LOCK_NAME
        fd = _lock(lock, directory, flag)
        try:
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield directory
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # while still locked: see the module docstring
            os.close(fd)  # closing releases the lock
    finally:
        _remove_empty(created)


def _lock(lock: Path, directory: Path, flag: str) -> int:
    """Open and exclusively lock the file at ``lock``; its descriptor, truncated."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ValueError(f"{flag} {directory}: cannot write there ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirInUse(
                f"{directory} is in use by another run (pid {holder}); wait for it to "
                f"finish or choose another {flag}"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            return fd
        os.close(fd)  # the previous holder removed this file after we opened it
