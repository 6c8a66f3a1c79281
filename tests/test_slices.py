"""The Python threads that run the numba backend's BLAS kernels (fastzero/kernels/numba/_slices.py)."""
from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastzero
from fastzero._threads import max_threads
from fastzero.kernels.numba import conv_forward
from fastzero.kernels.numba._slices import INLINE_OPS, map_slices, slices

TWO = min(2, max_threads())


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def threads():
    """Set the thread count for a test, restore it after."""
    before = fastzero.get_num_threads()
    yield fastzero.set_num_threads
    fastzero.set_num_threads(before)


def test_slices_cut_each_range_into_one_part_per_thread(threads):
    threads(1)
    assert slices(10) == [(0, 10)]
    threads(TWO)
    if TWO == 2:
        assert slices(10) == [(0, 5), (5, 10)]
    assert slices(1) == [(0, 1)]  # never more parts than items
    assert slices(0) == [(0, 0)]
    assert slices(10, INLINE_OPS - 1) == [(0, 10)]  # too little work to share


def test_small_calls_run_inline_on_the_calling_thread(threads):
    threads(TWO)
    seen = []

    def work(lo, hi):
        seen.append((lo, hi, threading.get_ident()))

    map_slices(work, 10, INLINE_OPS - 1)
    assert seen == [(0, 10, threading.get_ident())]


def test_map_slices_returns_results_in_part_order_from_parallel_threads(threads):
    threads(TWO)
    seen = []

    def work(lo, hi):
        seen.append(threading.get_ident())
        time.sleep(0.05)  # both parts are in flight at once
        return lo, hi

    start = time.perf_counter()
    assert map_slices(work, 9, INLINE_OPS) == slices(9, INLINE_OPS)
    assert len(set(seen)) == TWO
    if TWO == 2:
        assert time.perf_counter() - start < 0.09


def test_blas_is_single_threaded_inside_and_restored_after_even_on_error(threads):
    threads(TWO)
    before = blas_threads()
    inside = []

    def work(lo, hi):
        inside.append(blas_threads())
        if lo == 0:
            raise ValueError("part 0 failed")

    with pytest.raises(ValueError, match="part 0 failed"):
        map_slices(work, 4, INLINE_OPS)
    if TWO == 2:
        assert all(n == [1] * len(before) for n in inside)
    assert blas_threads() == before


def test_an_error_is_raised_only_after_every_part_finished(threads):
    threads(TWO)
    finished = []

    def work(lo, hi):
        if lo == 0:
            raise RuntimeError("first part")
        time.sleep(0.1)
        finished.append(lo)

    with pytest.raises(RuntimeError, match="first part"):
        map_slices(work, 2, INLINE_OPS)
    assert finished == ([1] if TWO == 2 else [])


def _conv_inputs():
    rng = np.random.default_rng(0)
    # 16 * 16 * 15 * 15 outputs of 72 taps each: enough work for the threads.
    return rng.standard_normal((16, 8, 15, 15)), rng.standard_normal((16, 8, 3, 3)), rng.standard_normal(16)


def test_concurrent_callers_get_right_results_and_leave_blas_as_it_was(threads):
    threads(TWO)
    before = blas_threads()
    x, W, b = _conv_inputs()
    expected = conv_forward(x, W, b, 1, 1)[0]
    errors = []

    def caller():
        try:
            for _ in range(30):
                np.testing.assert_array_equal(conv_forward(x, W, b, 1, 1)[0], expected)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    callers = [threading.Thread(target=caller) for _ in range(3)]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    assert errors == []
    assert blas_threads() == before


def _convolve_in_child(queue):
    x, W, b = _conv_inputs()
    queue.put(conv_forward(x, W, b, 1, 1)[0])


def test_a_forked_child_starts_with_a_fresh_pool(threads):
    """The parent's pool threads do not exist in a forked child: it must not wait on them."""
    threads(TWO)
    x, W, b = _conv_inputs()
    expected = conv_forward(x, W, b, 1, 1)[0]  # the parent's pool is up
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_convolve_in_child, args=(queue,))
    child.start()
    try:
        result = queue.get(timeout=120)
        child.join(timeout=60)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    np.testing.assert_array_equal(result, expected)
