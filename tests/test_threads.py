"""fastzero.set_num_threads: one knob for numba's threads and the BLAS threads."""
import os
import platform
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastzero
from fastzero._threads import max_threads


def blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture(autouse=True)
def restore_threads():
    numba_before, blas_before = numba.get_num_threads(), blas_threads()
    yield
    numba.set_num_threads(numba_before)
    threadpool_limits(limits=max(blas_before), user_api="blas")


@numba.njit(parallel=True)
def _thread_ids(n):
    ids = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):
        ids[i] = numba.get_thread_id()
    return ids


def test_set_num_threads_limits_numba_and_blas():
    assert blas_threads(), "numpy's BLAS should be visible to threadpoolctl"
    fastzero.set_num_threads(1)
    assert numba.get_num_threads() == 1
    assert fastzero.get_num_threads() == 1
    assert blas_threads() == [1] * len(blas_threads())
    assert set(_thread_ids(10_000)) == {0}  # the kernel really runs on one thread

    top = max_threads()
    fastzero.set_num_threads(top)
    assert numba.get_num_threads() == top == fastzero.get_num_threads()
    assert blas_threads() == [top] * len(blas_threads())


def test_numpy_integers_are_accepted():
    fastzero.set_num_threads(np.int64(1))
    assert fastzero.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, max_threads() + 1])
def test_out_of_range_raises_value_error(bad):
    with pytest.raises(ValueError, match=r"\[1, \d+\]"):
        fastzero.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.0, "2", None, True])
def test_non_integer_raises_type_error(bad):
    with pytest.raises(TypeError, match="must be an int"):
        fastzero.set_num_threads(bad)


def test_failed_call_changes_nothing():
    fastzero.set_num_threads(1)
    with pytest.raises(ValueError):
        fastzero.set_num_threads(0)
    assert fastzero.get_num_threads() == 1
    assert blas_threads() == [1] * len(blas_threads())


def test_numba_limit_applies_to_the_calling_thread_only():
    """The documented scope: numba's count is per thread, the BLAS limit process-wide."""
    fastzero.set_num_threads(1)
    seen = {}

    def worker():
        seen["numba"] = fastzero.get_num_threads()
        seen["blas"] = blas_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["numba"] == max_threads()
    assert seen["blas"] == [1] * len(seen["blas"])


def test_import_makes_idle_openmp_workers_sleep_unless_the_user_chose():
    """numba's spinning OpenMP workers starve OpenBLAS (see fastzero/__init__.py)."""
    code = "import os, fastzero; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def policy(env):
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert policy(env) == "PASSIVE"
    assert policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                    reason="fastzero depends on PyPI's tbb on Linux x86-64 only")
def test_numba_runs_on_tbb_even_when_numba_starts_its_threads_first():
    """TBB (thread- and fork-safe) is numba's layer once fastzero is imported, unless chosen."""
    code = "import fastzero, numba; numba.get_num_threads(); print(numba.threading_layer())"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}

    def layer(env):
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert layer(env) == "tbb"
    assert layer({**env, "NUMBA_THREADING_LAYER": "omp"}) == "omp"  # the user's choice stands
