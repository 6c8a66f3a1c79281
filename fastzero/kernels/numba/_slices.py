"""Python threads over slices of an axis, for the kernels that call BLAS.

Every matrix product of the numba backend (convolution and affine) runs
here: each of ``T`` threads takes a contiguous slice (of the batch, or of the
work of a layer) and does everything for it, serial numba kernels
(``nogil``) and *single-threaded* BLAS, from start to end. Two measured
reasons, 2 cores, float64, batch 100:

* A convolution alternates data movement (numba) with products (BLAS) on
  blocks of a few samples. As numba ``prange`` regions between
  multi-threaded BLAS calls, every block handed the cores from one thread
  pool to the other and back, 25 to 100 times per call: SimpleConvNet conv1
  forward plus backward took 19.8 ms that way, 11.2 ms this way.
* After a multi-threaded product, OpenBLAS's workers spin for about 0.1 s
  (``OPENBLAS_THREAD_TIMEOUT``, read only when numpy loads) and take a core
  from whatever runs next: conv1 right after a 2-thread GEMM took 22 ms
  instead of 11.7. With every product of a training step single-threaded,
  OpenBLAS's workers never wake.

``T`` is :func:`fastzero.get_num_threads` of the calling thread, so
:func:`fastzero.set_num_threads` governs these kernels too. While any
call is in flight, BLAS is limited to one thread (process-wide, through
threadpoolctl) and restored when the last one ends. The calling thread works
on the first slice; a shared pool of ``max_threads() - 1`` workers takes the
others. A process forked from this one starts with a fresh pool.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numba

_lock = threading.Lock()
_active = 0
_limiter: Any = None
_controller: Any = None
_pool: ThreadPoolExecutor | None = None


def _reset_after_fork() -> None:
    global _lock, _active, _limiter, _pool
    _lock, _active, _limiter, _pool = threading.Lock(), 0, None, None


os.register_at_fork(after_in_child=_reset_after_fork)


def _begin() -> ThreadPoolExecutor:
    """Limit BLAS to one thread (first caller in) and return the worker pool."""
    global _active, _limiter, _controller, _pool
    with _lock:
        if _active == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _active += 1
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1), "fastzero-slice")
        return _pool


def _end() -> None:
    """Restore the BLAS threads (last caller out)."""
    global _active, _limiter
    with _lock:
        _active -= 1
        if _active == 0:
            _limiter.restore_original_limits()
            _limiter = None


def slices(size: int) -> list[tuple[int, int]]:
    """``range(size)`` cut into as many contiguous parts as threads: ``[(start, stop), ...]``.

    There are the calling thread's :func:`numba.get_num_threads` parts,
    fewer if the range is shorter.
    """
    t = max(1, min(numba.get_num_threads(), size))
    return [(i * size // t, (i + 1) * size // t) for i in range(t)]


def map_slices(work: Callable[[int, int], Any], size: int) -> list[Any]:
    """``[work(start, stop) for start, stop in slices(size)]``, the parts run in parallel.

    Results come back in part order, so a caller that sums them gets the
    same bits for the same thread count. Every part has finished when this
    returns or raises (the first exception is re-raised).
    """
    parts = slices(size)
    if len(parts) == 1:
        return [work(*parts[0])]
    pool = _begin()
    try:
        futures = [pool.submit(work, *part) for part in parts[1:]]
        try:
            first = work(*parts[0])
        finally:
            rest = [f.exception() for f in futures]  # waits for every part
        for exc in rest:
            if exc is not None:
                raise exc
        return [first] + [f.result() for f in futures]
    finally:
        _end()
