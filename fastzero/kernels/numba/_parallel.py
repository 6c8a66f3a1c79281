"""How the numba kernels of this package split their work among threads.

A parallel region wakes numba's thread team and ends on a barrier: a few
microseconds on an idle machine, but hundreds when the machine is busy and
a worker waits to be scheduled. A kernel therefore runs on the calling
thread alone unless it has at least :data:`PARALLEL_MIN` element operations.
Larger work is cut into contiguous spans of items (elements, rows or
columns) of about :data:`SPAN_WORK` operations each, and ``prange`` hands
the spans to the threads.

Every kernel follows one pattern: the arithmetic lives once, in a serial
``@jit`` body over ``[lo, hi)``, and a ``@pjit`` driver either calls it on
the whole range or maps it over the spans::

    k = n_spans(n, cost)
    if k == 1:
        _body(..., 0, n)
    else:
        for s in prange(k):
            _body(..., *span(s, k, n))

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
