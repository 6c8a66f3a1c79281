"""How the numba kernels of this package split their work among threads.

A parallel region wakes numba's thread team and ends on a barrier: a few
microseconds on an idle machine, but a scheduler time slice when the cores
are shared and a worker waits to be scheduled. A kernel therefore runs on
the calling thread alone unless it has at least :data:`PARALLEL_MIN` element
operations. Larger work is cut into contiguous spans of items (elements,
rows or columns) of about :data:`SPAN_WORK` operations each, and ``prange``
hands the spans to the threads.

Every kernel follows one pattern: the arithmetic lives once, in a serial
``@jit`` body, and a ``@pjit`` driver either calls it on the whole arrays or
maps it over the spans, handing each span to the body as *views*
(``x[lo:hi]``)::

    k = n_spans(n, cost)
    if k == 1:
        _body(x, out)
    else:
        for s in prange(k):
            lo, hi = span(s, k, n)
            _body(x[lo:hi], out[lo:hi])

Bodies loop ``for i in range(x.shape[0])``, from zero. That is what makes
them fast: with ``range(lo, hi)`` over runtime bounds numba cannot prove an
index non-negative, wraps every access for negative indexing, and LLVM no
longer vectorises the loop (a ReLU over 1.7M float64 took 13 ms instead of
1.8 ms). A leading-axis slice of a C-contiguous array is C-contiguous, so
both calls compile to the same signature. Bodies over column spans (the
reductions down the rows of an ``(N, D)`` matrix) take the bounds and slice
each row, ``a[i, lo:hi]``, before their inner loop.

Reductions never cross a span (each span owns whole rows or whole columns
and sums them in a fixed order), so results do not depend on the partition
or on the thread count.
"""
from __future__ import annotations

from fastzero.kernels.numba._jit import jit

#: Fewer element operations than this run serially on the calling thread.
PARALLEL_MIN = 1 << 15
#: Element operations per parallel span.
SPAN_WORK = 1 << 13


@jit
def n_spans(n, cost):
    """Spans for ``n`` items of ``cost`` operations each; 1 means run serially."""
    work = n * cost
    if work < PARALLEL_MIN:
        return 1
    return min(n, work // SPAN_WORK)


@jit
def span(s, k, n):
    """Bounds ``(lo, hi)`` of span ``s`` of ``k`` over ``n`` items."""
    return s * n // k, (s + 1) * n // k
