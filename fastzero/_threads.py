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

#: Where the affine kernels of the numba backend run a large product: True, whole
#: on BLAS's own threads, as the book's code; False, cut into slices for fastzero's
#: threads with single-threaded BLAS (:mod:`fastzero.kernels.numba._slices`); None
#: (the default), see :func:`blas_threaded_products`. A fastzero network sets it
#: while it computes: True when made of dense layers only, False otherwise
#: (``fastzero.nets._base.DENSE_LAYERS``). Slices are for steps that mix products
#: with numba's parallel kernels (convolutions, pooling): after a multi-threaded
#: product OpenBLAS's workers spin for a while and take the cores those kernels
#: need. A dense step runs no such kernels at the book's sizes, and BLAS shares one
#: product between its threads at less cost than a hand-off to another Python thread.
BLAS_THREADED_PRODUCTS: ContextVar[bool | None] = ContextVar("fastzero_blas_threaded_products",
                                                             default=None)
_convolved = False


def note_convolution() -> None:
    """Record that a convolution or pooling kernel ran in this process (their numba kernels
    call this)."""
    global _convolved
    _convolved = True


def blas_threaded_products() -> bool:
    """Whether a large affine product runs whole on BLAS's threads (see
    :data:`BLAS_THREADED_PRODUCTS`): as a network set it, else until the first
    convolution or pooling of the process, so that the book's own network
    classes built from :mod:`fastzero.layers` get what fastzero's get."""
    chosen = BLAS_THREADED_PRODUCTS.get()
    return not _convolved if chosen is None else chosen


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
