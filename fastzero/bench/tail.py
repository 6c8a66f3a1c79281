"""Steadiness of one call repeated: ``fastzero bench --tail``.

A median hides what a training loop feels at two threads: a parallel region
whose worker is not running when the work is handed over waits for it (a
scheduler time slice on a shared machine, a wake-up after the workers went to
sleep). This times one case (default: SimpleConvNet's conv1 forward and
backward, batch 100, on the numba backend) call by call:

* back to back, ``samples`` calls: median, 90th percentile, maximum;
* after the threads sat idle for ``idle`` seconds before each call;
* the cost of one parallel region with no work in it, the same two ways,
  for the two kinds the numba kernels use: a ``prange`` kernel on numba's
  threads, and a hand-off of a part to fastzero's slice threads
  (:func:`~fastzero.kernels.numba._slices.map_slices`).

Wall time (``time.perf_counter``), on the calling thread; judge the tail on
an idle machine only (``uptime`` is printed with it).
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import pjit

#: The case timed when none is given.
DEFAULT_CASE = "layer.SimpleConvNet.conv1.b100"


def _stats(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    median = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"median": median, "p90": p90, "max": ordered[-1], "p90_over_median": p90 / median}


def _calls(work: Callable[[], Any], samples: int, idle: float) -> list[float]:
    times = []
    for _ in range(samples):
        if idle:
            time.sleep(idle)
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


@pjit
def _touch(a):
    """``a += 1`` in a ``prange`` loop: a parallel region with next to no work."""
    for i in prange(a.size):
        a[i] += 1.0


def _empty_regions() -> dict[str, Callable[[], Any]]:
    """A parallel region of each kind with (almost) no work: what entering one costs."""
    from fastzero.kernels.numba import _slices

    parts = np.zeros(64)
    return {
        "prange": lambda: _touch(parts),
        "slices": lambda: _slices.map_slices(lambda s0, s1: None, 64, _slices.INLINE_OPS),
    }


def tail(case_name: str = DEFAULT_CASE, dtype: str = "float32", samples: int = 40,
         idle: float = 0.01) -> dict:
    """Per-call wall times of ``case_name`` on the numba backend, as a JSON-ready dict."""
    import fastzero
    from fastzero._backend import use_backend

    from .cases import CASES_BY_NAME
    from .timing import prepare

    case = CASES_BY_NAME[case_name]
    work = prepare(case, "numba", dtype)
    with use_backend("numba"):
        for _ in range(5):
            work()
        report = {
            "case": case_name, "dtype": dtype, "threads": fastzero.get_num_threads(),
            "samples": samples, "idle_ms": idle * 1e3, "load": os.getloadavg()[0],
            "back_to_back": _stats(_calls(work, samples, 0.0)),
            "after_idle": _stats(_calls(work, samples, idle)),
            "empty_region": {},
        }
        for kind, region in _empty_regions().items():
            region()
            report["empty_region"][kind] = {
                "back_to_back": _stats(_calls(region, max(samples, 200), 0.0)),
                "after_idle": _stats(_calls(region, samples, idle)),
            }
    return report


def format_tail(report: dict) -> str:
    """The report of :func:`tail` as a short table (ms)."""
    def row(label: str, s: dict[str, float]) -> str:
        return (f"{label:<34} {s['median'] * 1e3:9.3f} {s['p90'] * 1e3:9.3f} {s['max'] * 1e3:9.3f}"
                f" {s['p90_over_median']:8.2f}")

    lines = [
        f"fastzero bench --tail: {report['case']} ({report['dtype']}), {report['threads']} thread(s), "
        f"{report['samples']} calls each, idle gaps {report['idle_ms']:.0f} ms, load {report['load']:.2f}",
        f"{'':<34} {'median':>9} {'p90':>9} {'max':>9} {'p90/med':>8}",
        row("back to back", report["back_to_back"]),
        row(f"after {report['idle_ms']:.0f} ms idle", report["after_idle"]),
    ]
    for kind, r in report["empty_region"].items():
        lines.append(row(f"empty {kind} region, back to back", r["back_to_back"]))
        lines.append(row(f"empty {kind} region, after idle", r["after_idle"]))
    return "\n".join(lines)
