"""How the numba kernels of this package split their work among threads.

A parallel region wakes numba's thread team and ends on a barrier: a few
microseconds on an idle machine, but a scheduler time slice when the cores
are shared and a worker waits to be scheduled. A kernel therefore runs on
the calling thread alone unless it has at least :data:`PARALLEL_MIN` element
operations. Larger work is cut into contiguous spans of items (elements,
rows or columns) of about :data:`SPAN_WORK` operations each, and ``prange``
hands the spans to the threads.

Every kernel follows one pattern: the arithmetic lives once, in a serial
``@jit`` body ``body(lo, hi, *args)`` that works on items ``lo:hi``, and
:func:`spans` makes the one ``@pjit`` driver that either calls it on all
items or maps it over the spans::

    @jit
    def _scale_body(lo, hi, x, factor, out):
        x, out = x[lo:hi], out[lo:hi]
        for i in range(x.shape[0]):
            out[i] = factor * x[i]

    _scale = spans(_scale_body)
    _scale(x.size, 1, x, factor, out)      # n items, cost operations per item

Bodies slice their arrays first and then loop ``for i in range(x.shape[0])``,
from zero. That is what makes them fast: with ``range(lo, hi)`` over runtime
bounds numba cannot prove an index non-negative, wraps every access for
negative indexing, and LLVM does not vectorise the loop, which then runs
several times slower. A leading-axis slice of a
C-contiguous array is C-contiguous, so the views have the arguments' types.
Bodies over column spans (the reductions down the rows of an ``(N, D)``
matrix) slice each row, ``a[i, lo:hi]``, before their inner loop.

Reductions never cross a span (each span owns whole rows or whole columns
and sums them in a fixed order), so results do not depend on the partition
or on the thread count.
"""
from __future__ import annotations

import inspect

from numba import prange

from fastzero.kernels.numba._jit import jit, pjit

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


#: The driver's source; its own names start with ``_`` so as not to meet the body's.
_DRIVER = """
def {name}({params}):
    _n = {n}
    _k = n_spans(_n, {cost})
    if _k == 1:
        _body(0, _n, {params})
    else:
        for _s in prange(_k):
            _lo, _hi = span(_s, _k, _n)
            _body(_lo, _hi, {params})
"""


def spans(body, n: str, cost: str = "1"):
    """The ``@pjit`` driver of ``body(lo, hi, *args)``: called as ``driver(*args)``.

    ``n`` (the number of items) and ``cost`` (operations per item) are
    expressions over ``body``'s parameters and its module's globals, such as
    ``"x.shape[0]"`` and ``"SOFTMAX_COST * x.shape[1]"``. The driver runs
    ``body`` on all items at once when :func:`n_spans` finds the work too
    small to share, else on every span, in ``prange``.

    The driver is compiled from :data:`_DRIVER`, written out with ``body``'s
    parameters: it takes the arguments the kernel takes, so a call costs what
    a hand-written driver's does; a generic ``driver(n, cost, *args)`` would
    add two arguments and a star-argument tuple to every call, which shows
    on the small calls of a book-size network. Its code is attributed to
    ``body``'s source file, at ``body``'s line, so that numba caches it beside
    the body and the entry goes stale when that file changes. A closure over
    ``body`` would not do: numba's cache key hashes a closure's cells, and a
    dispatcher hashes differently in every process.
    """
    func = getattr(body, "py_func", body)  # a plain function under NUMBA_DISABLE_JIT
    params = list(inspect.signature(func).parameters)
    if params[:2] != ["lo", "hi"] or any(p.startswith("_") for p in params):
        raise TypeError(f"{func.__name__}: a span body takes (lo, hi, *args), "
                        "none of them named with a leading underscore")
    name = f"{func.__name__}_spans"
    source = _DRIVER.format(name=name, params=", ".join(params[2:]), n=n, cost=cost)
    line = func.__code__.co_firstlineno
    code = compile("\n" * (line - 2) + source, func.__code__.co_filename, "exec")
    namespace = {**func.__globals__, "n_spans": n_spans, "span": span, "prange": prange,
                 "_body": body}
    exec(code, namespace)
    driver = namespace[name]
    driver.__module__ = func.__module__
    return pjit(driver)
