"""Python threads over slices of an axis, for the kernels that call BLAS.

The numba backend's products that call BLAS (the affine layers and the
convolutions on im2col + BLAS) run here; convolutions that call no BLAS
(vector tiles, few-tap loops) run their parts in one ``prange`` region
instead (``conv.py``). Here each of ``T`` threads takes a contiguous slice (of the batch, or of the
work of a layer) and does everything for it, serial numba kernels
(``nogil``) and *single-threaded* BLAS, from start to end. Two reasons,
both measured (docs/speed.md):

* A convolution alternates data movement (numba) with products (BLAS) on
  blocks of a few samples. As numba ``prange`` regions between
  multi-threaded BLAS calls, every block handed the cores from one thread
  pool to the other and back, 25 to 100 times per call, each hand-over a
  wait for the other pool's threads to wake.
* After a multi-threaded product, OpenBLAS's workers spin for about 0.1 s
  (``OPENBLAS_THREAD_TIMEOUT``, read only when numpy loads) and take a core
  from whatever runs next. With every product of a training step
  single-threaded, OpenBLAS's workers never wake.

The affine products of a network of dense layers only are the exception
(:func:`fastzero._threads.blas_threaded_products`): no parallel numba kernel
runs between them, and BLAS shares one of them between its threads for less
than a hand-off to a slice thread costs.

``T`` is :func:`fastzero.get_num_threads` of the calling thread, so
:func:`fastzero.set_num_threads` governs these kernels too. A call of fewer
than :data:`INLINE_OPS` operations (multiply-adds or element moves) runs in
one part on the calling thread: handing a part to another thread and waiting
for it costs tens of microseconds, more than such a call's work (a book-size
``TwoLayerNet`` on a batch of 3 is a few hundred thousand multiply-adds per
layer). Such a call leaves BLAS as the knob set it, as the book's code
does: OpenBLAS runs the products of fewer than 262,144 multiply-adds on one
thread by itself, and setting its thread count twice per call would cost
more than the call. While any call of more parts is in flight, BLAS is
limited to one thread (process-wide, through the BLAS libraries' own
``set_num_threads`` found by threadpoolctl) and restored when the last one
ends. The calling thread works on the first slice; a shared pool of
``max_threads() - 1`` workers takes the others. A process forked from this one starts with a fresh
pool.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numba

#: Calls of fewer operations than this run on the calling thread alone.
INLINE_OPS = 1 << 20

_lock = threading.Lock()
_active = 0
_blas: list[Any] | None = None  # threadpoolctl's controllers of the loaded BLAS libraries
_restore: list[tuple[Any, int]] = []
_pool: ThreadPoolExecutor | None = None


def _reset_after_fork() -> None:
    global _lock, _active, _restore, _pool
    _lock, _active, _restore, _pool = threading.Lock(), 0, [], None


os.register_at_fork(after_in_child=_reset_after_fork)


def _begin() -> None:
    """Limit BLAS to one thread (first caller in)."""
    global _active, _blas, _restore
    with _lock:
        if _active == 0:
            if _blas is None:
                from threadpoolctl import ThreadpoolController

                _blas = ThreadpoolController().select(user_api="blas").lib_controllers
            _restore = [(lib, n) for lib in _blas if (n := lib.get_num_threads()) != 1]
            for lib, _ in _restore:
                lib.set_num_threads(1)
        _active += 1


def _end() -> None:
    """Restore the BLAS threads (last caller out)."""
    global _active
    with _lock:
        _active -= 1
        if _active == 0:
            for lib, n in _restore:
                lib.set_num_threads(n)


def _worker_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1), "fastzero-slice")
        return _pool


def slices(size: int, ops: int = INLINE_OPS) -> list[tuple[int, int]]:
    """``range(size)`` cut into as many contiguous parts as threads: ``[(start, stop), ...]``.

    There are the calling thread's :func:`numba.get_num_threads` parts,
    fewer if the range is shorter, one if the call's ``ops`` (its
    multiply-adds or element moves) are fewer than :data:`INLINE_OPS`.
    """
    t = 1 if ops < INLINE_OPS else max(1, min(numba.get_num_threads(), size))
    return [(i * size // t, (i + 1) * size // t) for i in range(t)]


def map_slices(work: Callable[[int, int], Any], size: int, ops: int) -> list[Any]:
    """``[work(start, stop) for start, stop in slices(size, ops)]``, the parts run in parallel.

    ``ops`` is the whole call's work (multiply-adds or element moves): below
    :data:`INLINE_OPS` the call runs in one part on the calling thread, with
    BLAS as it is; parts in parallel run with single-threaded BLAS.
    Results come back in part order, so a caller that sums them gets the
    same bits for the same thread count and size. Every part has finished
    when this returns or raises (the first exception is re-raised).
    """
    parts = slices(size, ops)
    if len(parts) == 1:
        return [work(*parts[0])]
    _begin()
    try:
        futures = [_worker_pool().submit(work, *part) for part in parts[1:]]
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
