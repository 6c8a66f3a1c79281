"""The first call of a case in fresh interpreters, with an empty and a warm numba cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from fastzero._backend import kernels, use_backend

from .cases import CASES_BY_NAME, FAST

_CHILD = ("import sys; from fastzero.bench.coldstart import _first_call_child; "
          "_first_call_child(*sys.argv[1:])")


def _first_call_child(case_name: str, dtype: str, threads: str) -> None:
    """In a fresh interpreter: time the first and second call of a case (numba), print JSON."""
    import fastzero

    if int(threads):
        fastzero.set_num_threads(int(threads))
    case = CASES_BY_NAME[case_name]
    with use_backend(FAST):
        inputs = case.setup(np.dtype(dtype))
        times = []
        for _ in range(2):
            start = time.perf_counter()
            case.run(kernels(FAST), inputs)
            times.append(time.perf_counter() - start)
    print(json.dumps({"first": times[0], "second": times[1]}))


def first_call_times(case_name: str, dtype: str = "float64", threads: int = 0) -> dict[str, float]:
    """First-call seconds of a case (numba backend) in fresh interpreters.

    Runs the case in a subprocess whose ``NUMBA_CACHE_DIR`` is a new empty
    directory (``cold``: every kernel compiles), then again in another
    subprocess with the cache the first one left (``warm``: kernels load from
    disk). ``second`` is the call right after the warm run's first: one call,
    not a median, with first-touch allocations still in it. ``threads=0``
    keeps the default thread count.
    """
    with tempfile.TemporaryDirectory(prefix="fastzero-numba-cache-") as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        runs = []
        for _ in ("cold", "warm"):
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, case_name, str(dtype), str(threads)],
                env=env, capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"first-call run of {case_name} failed:\n{proc.stderr}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"cold": runs[0]["first"], "warm": runs[1]["first"], "second": runs[1]["second"]}
