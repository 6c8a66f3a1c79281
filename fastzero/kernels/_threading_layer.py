"""numba's threading layer: TBB, the one that is both thread-safe and fork-safe.

numba picks its threading layer once, when it first launches its threads, in
the order TBB, OpenMP, workqueue. Of the three only TBB is safe both for
kernels launched from several Python threads at once and in a process forked
after a parallel kernel ran: GNU OpenMP kills a forked child that enters a
parallel region ("fork() called from a process already using GNU OpenMP"),
so a ``multiprocessing`` pool with Linux's default start method never
returns; workqueue aborts when two threads launch kernels at once.

PyPI's ``tbb`` package (a dependency of fastzero on Linux x86-64) installs
``libtbb.so.12`` into the environment's ``lib`` directory, outside the
dynamic loader's search path, so numba would not find it and would settle on
OpenMP. :func:`load_tbb` loads it from where pip puts it (the environment's
or the user's ``lib``); numba then finds it already loaded. It must run
before numba launches its threads, so ``import fastzero`` calls it: it
imports nothing and costs one ``dlopen``.

An explicit choice is kept (``NUMBA_THREADING_LAYER``, or
``numba.config.THREADING_LAYER`` assigned before the first kernel): loading
the library only makes TBB available, as it would be in a conda environment.
Without the ``tbb`` package (other platforms) numba's own choice stands;
:func:`layer` tells which layer runs.
"""
from __future__ import annotations

import ctypes
import os
import site
import sys

_LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib"}


def _tbb_path() -> str | None:
    """Where pip installed the ``tbb`` package's runtime library, if it did."""
    name = _LIBRARY.get(sys.platform)
    if name is None:
        return None
    for prefix in (sys.prefix, site.getuserbase()):
        path = os.path.join(prefix, "lib", name)
        if os.path.exists(path):
            return path
    return None


def load_tbb() -> None:
    """Make TBB loadable for numba's threading layer, unless numba's threads run already."""
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is not None and parallel._is_initialized:
        return
    path = _tbb_path()
    if path is not None:
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:  # a broken install: numba falls back to its next layer
            pass


def layer() -> str:
    """The threading layer numba runs its parallel kernels on (launches the threads)."""
    import numba

    numba.get_num_threads()
    return numba.threading_layer()
