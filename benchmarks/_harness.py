"""Base classes of the asv suites.

The bases' names start with an underscore because asv collects every public
class of every module in ``benchmarks/`` (this one included): only their
subclasses, one per kernel family, are benchmarks. A subclass names its
family, ``class Conv(_harness._KernelTimes, family="conv")``, and gets the
family's cases as its first parameter.
"""
from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable

import fastzero
from fastzero import bench
from fastzero._backend import DEFAULT_BACKEND

BACKENDS = [bench.REFERENCE, bench.FAST]
DTYPES = list(bench.DTYPES)


def labels(family: str) -> list[str]:
    """The case labels of a family: the values of its suites' ``case`` parameter."""
    return [c.label for c in bench.cases_of(family)]


def get_case(family: str, label: str) -> bench.Case:
    """The registry case; raises NotImplementedError (asv: skipped) for a slow case
    when ``FASTZERO_BENCH_FAST=1``."""
    case = bench.CASES_BY_NAME[f"{family}.{label}"]
    if case.slow and os.environ.get("FASTZERO_BENCH_FAST") == "1":
        raise NotImplementedError(f"{case.name} is slow: skipped with FASTZERO_BENCH_FAST=1")
    return case


@functools.lru_cache(maxsize=4)
def prepared(family: str, label: str, backend: str, dtype: str) -> Callable[[], Any]:
    """:func:`fastzero.bench.prepare`, memoised: asv re-runs ``setup`` before every
    sample, and building inputs and warming the JIT each time would only waste time."""
    return bench.prepare(get_case(family, label), backend, dtype)


class _FamilySuite:
    """A suite over one family's cases; subclasses pass ``family=`` in the class line."""

    family: str
    params: list[list[str]]

    def __init_subclass__(cls, family: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if family is not None:
            cls.family = family
            cls.params = [labels(family), *cls.params[1:]]


class _KernelTimes(_FamilySuite):
    """``time_case``: one case's work under one backend and dtype."""

    params = [[], BACKENDS, DTYPES]
    param_names = ["case", "backend", "dtype"]
    timeout = 180
    #: wall-clock time (asv's default, stated): the numba kernels run on several
    #: threads, so process CPU time would overstate them
    timer = time.perf_counter

    def setup(self, case: str, backend: str, dtype: str) -> None:
        self.work = prepared(self.family, case, backend, dtype)
        fastzero.set_backend(backend)  # training steps run on the active backend

    def teardown(self, case: str, backend: str, dtype: str) -> None:
        fastzero.set_backend(DEFAULT_BACKEND)

    def time_case(self, case: str, backend: str, dtype: str) -> None:
        self.work()


class _Speedup(_FamilySuite):
    """``track_speedup``: numpy time / numba time of one case, measured in this process
    (medians of interleaved samples, :func:`fastzero.bench.measure`)."""

    params = [[], DTYPES]
    param_names = ["case", "dtype"]
    unit = "x"
    timeout = 300
    #: samples per backend, and the least seconds a sample lasts
    repeat_samples, min_sample = 5, 0.02

    def setup(self, case: str, dtype: str) -> None:
        self.works = {b: prepared(self.family, case, b, dtype) for b in BACKENDS}

    def track_speedup(self, case: str, dtype: str) -> float:
        t = bench.measure(self.works, self.repeat_samples, self.min_sample)
        return round(t[bench.REFERENCE] / t[bench.FAST], 3)
