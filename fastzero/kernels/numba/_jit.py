"""The one place the numba backend's compile options are set.

``jit`` compiles a serial kernel, ``pjit`` a ``parallel=True`` one; both cache
to disk (``cache=True``) so a second process starts warm. fastmath lets LLVM
reassociate and vectorise reductions but keeps ``nnan``/``ninf`` off: max
pooling starts from ``-inf`` and NaN must propagate to the layers' checks.
"""
from __future__ import annotations

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

_OPTIONS = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")


def jit(func):
    """``@jit``: a serial, cached, no-python kernel."""
    return numba.njit(**_OPTIONS)(func)


def pjit(func):
    """``@pjit``: a ``parallel=True`` cached kernel; its ``prange`` loops run on numba's threads."""
    return numba.njit(parallel=True, **_OPTIONS)(func)
