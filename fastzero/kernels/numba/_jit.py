"""The one place the numba backend's compile options are set.

``jit`` compiles a serial kernel, ``pjit`` a ``parallel=True`` one; both cache
to disk (``cache=True``) so a second process starts warm. fastmath lets LLVM
reassociate and vectorise reductions but keeps ``nnan``/``ninf`` off: max
pooling starts from ``-inf`` and NaN must propagate to the layers' checks.

The on-disk cache is guarded (:class:`_GuardedCache`). numba's cache keeps one
index file per function mapping signatures to numbered data files, and
rewrites it without a lock, so two processes compiling different signatures
of one kernel at once can pair an index entry with the other's machine code
(numba#4807, #10128). Here every cache read takes a shared and every write an
exclusive ``flock`` on a per-function lock file, and a cache entry that cannot
be read (truncated, corrupted, foreign) is a cache miss: the kernel is
recompiled and the entry rewritten, with a warning, never a crash.

Where numba can write no cache at all (a read-only install, with
``NUMBA_CACHE_DIR`` and the home directory unwritable too) the kernels are
compiled without a cache, in every process, after one :class:`CacheWarning`.
An unwritable ``NUMBA_CACHE_DIR`` alone is reported too (one warning naming
the directory numba uses instead), never silently replaced.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Iterator

import numba
from numba.core.caching import Cache, UserProvidedCacheLocator

try:  # POSIX only; elsewhere the cache runs unguarded, as numba ships it.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

_OPTIONS = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")


class CacheWarning(UserWarning):
    """A numba cache entry could not be read or written; the kernel still runs."""


class _GuardedCache:
    """Wraps a dispatcher's numba cache: file-locked I/O, corrupt entries recompiled."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        path = os.path.join(self._cache.cache_path, self._cache._cache_file._index_name + ".lock")
        try:
            os.makedirs(self._cache.cache_path, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # unwritable cache dir: numba falls back or skips saving
            yield
            return
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def load_overload(self, sig, target_context):
        try:
            with self._locked(fcntl.LOCK_SH):
                return self._cache.load_overload(sig, target_context)
        except Exception as exc:  # a corrupt entry is a miss, not a failure
            warnings.warn(
                f"fastzero: unreadable numba cache entry for {self._cache._name} "
                f"in {self._cache.cache_path} ({type(exc).__name__}: {exc}); recompiling",
                CacheWarning,
                stacklevel=2,
            )
            return None

    def save_overload(self, sig, data):
        try:
            with self._locked(fcntl.LOCK_EX):
                try:
                    self._cache.save_overload(sig, data)
                except Exception:
                    # A corrupt index cannot be extended: start it afresh once.
                    self._cache.flush()
                    self._cache.save_overload(sig, data)
        except Exception as exc:
            warnings.warn(
                f"fastzero: could not write the numba cache for {self._cache._name} "
                f"in {self._cache.cache_path} ({type(exc).__name__}: {exc})",
                CacheWarning,
                stacklevel=2,
            )


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, CacheWarning, stacklevel=4)


def _guard(dispatcher):
    # With NUMBA_DISABLE_JIT=1 numba hands back the plain Python function, and
    # without a cache directory the dispatcher has a NullCache: nothing to guard.
    cache = getattr(dispatcher, "_cache", None)
    if fcntl is not None and isinstance(cache, Cache):
        dispatcher._cache = _GuardedCache(cache)
    return dispatcher


def _check_cache_dir(dispatcher) -> None:
    """Warn (once) when numba passed over an unwritable ``NUMBA_CACHE_DIR``."""
    cache = getattr(dispatcher, "_cache", None)
    wanted = numba.config.CACHE_DIR
    if wanted and isinstance(cache, Cache) and not isinstance(
        cache._impl.locator, UserProvidedCacheLocator
    ):
        _warn_once(
            "cache dir",
            f"fastzero: NUMBA_CACHE_DIR={wanted!r} is not writable; numba caches the "
            f"kernels in {cache.cache_path} instead",
        )


def _compile(func, **options):
    try:
        dispatcher = numba.njit(**_OPTIONS, **options)(func)
    except RuntimeError as exc:
        if "no locator available" not in str(exc):
            raise
        _warn_once(
            "no cache",
            "fastzero: numba has no writable cache directory (NUMBA_CACHE_DIR, the "
            "package's __pycache__, the user's cache directory); the kernels are compiled "
            "without a cache, in every process",
        )
        dispatcher = numba.njit(**{**_OPTIONS, "cache": False}, **options)(func)
    _check_cache_dir(dispatcher)
    return _guard(dispatcher)


def jit(func):
    """``@jit``: a serial, cached, no-python kernel."""
    return _compile(func)


def pjit(func):
    """``@pjit``: a ``parallel=True`` cached kernel; its ``prange`` loops run on numba's threads."""
    return _compile(func, parallel=True)
