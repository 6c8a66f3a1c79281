"""The Python threads that run the numba backend's BLAS kernels (fastzero/kernels/numba/_slices.py)."""
from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastzero
from fastzero import nets
from fastzero._threads import BLAS_THREADED_PRODUCTS, max_threads
from fastzero.kernels.numba import conv_forward
from fastzero.kernels.numba._slices import INLINE_OPS, map_slices, slices

TWO = min(2, max_threads())


@contextmanager
def products_on_blas_threads(on: bool):
    """Affine products whole on BLAS's threads (True) or in slices (False) inside."""
    token = BLAS_THREADED_PRODUCTS.set(on)
    try:
        yield
    finally:
        BLAS_THREADED_PRODUCTS.reset(token)


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


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


def _blas_products(monkeypatch, call):
    """Run ``call()`` with ``np.dot`` interposed; per product: (thread, BLAS threads inside)."""
    seen = []
    dot = np.dot

    def spy(a, b, out=None):
        seen.append((threading.get_ident(), tuple(blas_threads()), a.shape, b.shape))
        return dot(a, b, out=out)

    monkeypatch.setattr(np, "dot", spy)
    call()
    monkeypatch.setattr(np, "dot", dot)
    return seen


def _check_products(seen, where):
    assert seen, f"{where}: no BLAS product ran"
    assert all(set(inside) == {1} for _, inside, _, _ in seen), f"{where}: {seen}"
    if TWO == 2:
        assert len({thread for thread, _, _, _ in seen}) == 2, f"{where}: not on two threads"


def test_convolution_products_run_on_the_slice_threads_with_single_threaded_blas(
        threads, monkeypatch):
    """A 100-tap, stride-2 convolution (the BLAS path: above the direct loops' 75 taps,
    not stride 1 as the vector tiles) forward and backward."""
    threads(TWO)
    assert blas_threads() == [TWO] * len(blas_threads())  # the knob set BLAS to TWO outside
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((64, 4, 16, 16)), rng.standard_normal((8, 4, 5, 5)), np.zeros(8)
    from fastzero.kernels.numba import conv_backward

    out = []
    _check_products(_blas_products(monkeypatch, lambda: out.append(conv_forward(x, W, b, 2, 0))),
                    "conv forward")
    dout = rng.standard_normal(out[0][0].shape)
    _check_products(_blas_products(monkeypatch, lambda: conv_backward(dout, out[0][1], W, 2, 0)),
                    "conv backward")
    assert blas_threads() == [TWO] * len(blas_threads())


def test_both_affine_products_run_on_the_slice_threads_with_single_threaded_blas(
        threads, monkeypatch):
    threads(TWO)
    from fastzero.kernels.numba import affine_backward, affine_forward

    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((64, 256)), rng.standard_normal((256, 128)), np.zeros(128)
    dout = rng.standard_normal((64, 128))
    with products_on_blas_threads(False):
        _check_products(_blas_products(monkeypatch, lambda: affine_forward(x, W, b)), "affine forward")
        seen = _blas_products(monkeypatch, lambda: affine_backward(dout, x, W))
    _check_products(seen, "affine backward")
    # both products: dx = dout @ W.T (rows of 256) and dW = x.T @ dout (rows of 128)
    assert {b_shape[1] for _, _, _, b_shape in seen} == {256, 128}, seen


def _hand_offs(monkeypatch) -> list[int]:
    """A list that gets an entry each time work is handed to the slice threads' pool."""
    from fastzero.kernels.numba import _slices

    handed: list[int] = []
    pool = _slices._worker_pool
    monkeypatch.setattr(_slices, "_worker_pool", lambda: handed.append(1) or pool())
    return handed


@pytest.mark.parametrize("batch", [1, 3])
def test_book_size_networks_on_a_few_samples_never_hand_work_to_other_threads(
        threads, monkeypatch, batch):
    """The small-call path: TwoLayerNet(784, 50, 10) on 1 or 3 samples stays on the calling thread."""
    from fastzero.kernels.numba import affine_forward
    from fastzero.nets import TwoLayerNet

    threads(TWO)
    handed = _hand_offs(monkeypatch)
    net = TwoLayerNet(784, 50, 10, seed=0)
    rng = np.random.default_rng(0)
    x, t = rng.random((batch, 784)), rng.integers(0, 10, batch)
    with fastzero.use_backend("numba"):
        net.loss(x, t)
        net.gradient(x, t)
        assert handed == []
    if TWO == 2:  # and the first layer's product on a batch of 100 in slices does use the threads
        with products_on_blas_threads(False):
            affine_forward(rng.random((100, 784)), net.params["W1"], net.params["b1"])
        assert handed


DENSE_NETS = {
    "TwoLayerNet": lambda: nets.TwoLayerNet(784, 50, 10, seed=0),
    "MultiLayerNet": lambda: nets.MultiLayerNet(784, [100] * 4, 10, seed=0),
    "MultiLayerNetExtend": lambda: nets.MultiLayerNetExtend(
        784, [100] * 5, 10, use_batchnorm=True, use_dropout=True, seed=0),
}


@pytest.mark.parametrize("net", sorted(DENSE_NETS))
def test_a_dense_networks_products_run_on_blas_threads_not_the_slice_threads(
        threads, monkeypatch, net):
    """Affine, ReLU, sigmoid, dropout and batch-norm layers only: every product of a training
    step at batch 128 runs on the calling thread with BLAS at the knob's threads, as the book's."""
    threads(TWO)
    handed = _hand_offs(monkeypatch)
    network = DENSE_NETS[net]()
    rng = np.random.default_rng(0)
    x, t = rng.random((128, 784)), rng.integers(0, 10, 128)
    with fastzero.use_backend("numba"):
        seen = _blas_products(monkeypatch, lambda: (network.gradient(x, t), network.predict(x)))
    assert handed == []
    assert {thread for thread, _, _, _ in seen} == {threading.get_ident()}
    assert all(set(inside) == {TWO} for _, inside, _, _ in seen), seen
    affine_layers = sum(name.startswith("W") for name in network.params)
    # forward, dx, dW and predict's forward of each; no dx for the first layer (nobody reads it)
    assert len(seen) == 4 * affine_layers - 1


def test_a_network_with_convolutions_keeps_its_products_on_the_slice_threads(threads, monkeypatch):
    """SimpleConvNet: its affine products still run in slices with single-threaded BLAS."""
    threads(TWO)
    network = nets.SimpleConvNet(seed=0)
    rng = np.random.default_rng(0)
    x, t = rng.random((64, 1, 28, 28)), rng.integers(0, 10, 64)
    with fastzero.use_backend("numba"):
        seen = _blas_products(monkeypatch, lambda: network.gradient(x, t))
    # its first affine layer (4320 -> 100): the forward x @ W and the backward dout @ W.T
    affine = [s for s in seen if s[3] in ((4320, 100), (100, 4320))]
    _check_products(affine, "SimpleConvNet's first affine layer")


BOOK_STYLE_NET = """
import numpy as np
import fastzero
from fastzero.layers import Affine, Convolution, Relu
from fastzero.kernels.numba import _slices

fastzero.set_num_threads(2)
handed = []
pool = _slices._worker_pool
_slices._worker_pool = lambda: handed.append(1) or pool()
rng = np.random.default_rng(0)
# the book's TwoLayerNet, written with fastzero's layers in place of common.layers
layers = [Affine(0.01 * rng.standard_normal((784, 100)), np.zeros(100)), Relu(),
          Affine(0.01 * rng.standard_normal((100, 10)), np.zeros(10))]

def step(x):
    for layer in layers:
        x = layer.forward(x)
    dout = np.ones_like(x)
    for layer in reversed(layers):
        dout = layer.backward(dout)

step(rng.random((128, 784)))
before = len(handed)
Convolution(rng.standard_normal((4, 1, 3, 3)), np.zeros(4)).forward(rng.random((8, 1, 10, 10)))
step(rng.random((128, 784)))
print(before, len(handed) > 0)
"""


@pytest.mark.skipif(TWO < 2, reason="needs 2 threads")
def test_layers_outside_a_network_use_blas_threads_until_the_first_convolution():
    """A book network class built from fastzero's layers gets what a fastzero network gets: an MLP
    hands no product to the slice threads; once a convolution has run, products go in slices."""
    done = subprocess.run([sys.executable, "-c", BOOK_STYLE_NET], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True"]
