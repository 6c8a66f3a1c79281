"""Timing prepared work: interleaved samples, medians, compile time kept out."""
from __future__ import annotations

import math
import statistics
import time
from functools import partial
from typing import Any, Callable

import numpy as np

from fastzero._backend import available_backends, kernels, use_backend

from .cases import Case

def prepare(case: Case, backend: str, dtype: str | np.dtype) -> Callable[[], Any]:
    """Build ``case``'s inputs under ``backend`` and return the work as a 0-argument callable.

    The callable is run twice here, so JIT compilation (or loading from the
    numba cache) and first-touch allocation stay out of later timings. Call it
    with ``backend`` active: training steps go through the active backend.
    """
    with use_backend(backend):
        k = kernels(backend)
        inputs = case.setup(np.dtype(dtype))
        work = partial(case.run, k, inputs)
        work()
        work()
    return work


#: A clock: seconds as a float. :data:`WALL` is the default; :data:`CPU`, the
#: calling thread's CPU time, leaves out the time other processes take the core
#: (1 thread on a shared machine).
Clock = Callable[[], float]
WALL: Clock = time.perf_counter
CPU: Clock = time.thread_time


def _seconds_per_call(work: Callable[[], Any], number: int, clock: Clock = WALL) -> float:
    start = clock()
    for _ in range(number):
        work()
    return (clock() - start) / number


#: Seconds of untimed calls before each sample. A training run uses one
#: backend; here the two alternate, and the reference's multi-threaded BLAS
#: products leave OpenBLAS's workers spinning for about 0.1 s afterwards
#: (:mod:`fastzero.kernels.numba._slices`), which would take a core from the
#: next numba sample.
SETTLE = 0.15


def _settle(work: Callable[[], Any], seconds: float) -> None:
    start = time.perf_counter()
    work()
    while time.perf_counter() - start < seconds:
        work()


def measure(
    works: dict[str, Callable[[], Any]], repeat: int = 7, min_sample: float = 0.05,
    backends: dict[str, str] | None = None, settle: float | None = None, clock: Clock = WALL,
) -> dict[str, float]:
    """Median seconds per call of each prepared work.

    ``works`` maps a label to a work prepared by :func:`prepare`, and runs it
    under the backend ``backends[label]`` (default: the label is the backend).
    Samples of the works are interleaved, so that load from other processes
    hits them alike; each follows ``settle`` seconds (default :data:`SETTLE`)
    of untimed calls of its own work and loops long enough to last
    ``min_sample`` seconds (at least one call), read on ``clock``.
    """
    settle = SETTLE if settle is None else settle
    backend_of = backends or {label: label for label in works}
    numbers = {}
    for label, work in works.items():
        with use_backend(backend_of[label]):
            once = _seconds_per_call(work, 1, clock)
        numbers[label] = max(1, math.ceil(min_sample / max(once, 1e-9)))
    samples: dict[str, list[float]] = {label: [] for label in works}
    for _ in range(repeat):
        for label, work in works.items():
            with use_backend(backend_of[label]):
                _settle(work, settle)
                samples[label].append(_seconds_per_call(work, numbers[label], clock))
    return {label: statistics.median(s) for label, s in samples.items()}


def compare(
    case: Case, dtype: str, repeat: int = 7, min_sample: float = 0.05, clock: Clock = WALL
) -> dict[str, float]:
    """Median seconds per call of ``case`` under every backend, measured in this process."""
    works = {b: prepare(case, b, dtype) for b in available_backends()}
    return measure(works, repeat, min_sample, clock=clock)
