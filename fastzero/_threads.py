"""One knob for the number of threads: numba's parallel kernels and BLAS.

numba and threadpoolctl are imported on first use, so ``import fastzero``
stays cheap.

Scope of the knob, which follows from the two libraries:

* numba's thread count is **per calling thread**: :func:`set_num_threads`
  governs the numba kernels launched from the thread that called it (the
  training loop); kernels launched from other Python threads keep numba's
  default (``NUMBA_NUM_THREADS``, the usable cores).
* the BLAS limit (numpy's matrix products) is **process-wide**, applied with
  threadpoolctl to every BLAS library loaded at the time of the call.

numba cannot start threads beyond those it launched with, so ``n`` is capped
at ``numba.config.NUMBA_NUM_THREADS`` (set the ``NUMBA_NUM_THREADS``
environment variable before starting Python to change the cap).
"""
from __future__ import annotations

import operator
from contextvars import ContextVar

#: True while a network made of dense layers only computes (see
#: :meth:`fastzero.nets._base.Network.predict`): its matrix products then run on
#: BLAS's own threads, as the book's, instead of in slices on fastzero's threads
#: with single-threaded BLAS (:mod:`fastzero.kernels.numba._slices`). Slices are
#: for steps that mix products with numba's parallel kernels (convolutions,
#: pooling): after a multi-threaded product OpenBLAS's workers spin for a while
#: and take the cores those kernels need. A dense network runs no such kernels
#: at the book's sizes, and BLAS shares one product between its threads at less
#: cost than a hand-off to another Python thread.
BLAS_THREADED_PRODUCTS: ContextVar[bool] = ContextVar("fastzero_blas_threaded_products",
                                                      default=False)


def max_threads() -> int:
    """The largest valid ``n``: the threads numba launches with."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in numba kernels (from this thread) and in BLAS.

    Raises
    ------
    TypeError
        If ``n`` is not an integer (bools are rejected too).
    ValueError
        Unless ``1 <= n <= max_threads()``.
    """
    import numba
    from threadpoolctl import threadpool_limits

    if isinstance(n, bool):
        raise TypeError("set_num_threads: n must be an int, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}") from None
    limit = max_threads()
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads: n must be in [1, {limit}] (the usable cores), got {n}")
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")


def get_num_threads() -> int:
    """Threads the numba kernels launched from this thread use."""
    import numba

    return numba.get_num_threads()
