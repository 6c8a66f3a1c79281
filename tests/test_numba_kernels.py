"""The numba backend's dense, activation, loss, norm and dropout kernels: what the
registry's equivalence tests (test_kernel_cases.py) do not check.

Kernels compared with the reference here must agree (float64: within 1e-10
of the largest magnitude, float32: 1e-4), keep the input dtype, and leave
their inputs unchanged.
"""
import numba
import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher

import fastzero

from fastzero.kernels.cases import CASES
from fastzero.kernels.numba import (activation, augment, conv, conv_vector, dense, dropout, loss, norm,
                                    optim, pool)
from fastzero.kernels.numba._jit import FASTMATH, jit
from fastzero.kernels.numba._parallel import spans
from test_kernel_cases import DTYPES, FAST, REF, assert_close

#: also run by CI's bounds-checked job (NUMBA_BOUNDSCHECK=1)
pytestmark = pytest.mark.boundscheck


def compare(name, *args):
    """Run kernel ``name`` on both backends; check outputs agree and inputs are untouched.

    The tolerance follows the first float array argument's dtype.
    """
    dtype = next(a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    desired = getattr(REF, name)(*args)
    actual = getattr(FAST, name)(*args)
    for a, b in zip(args, before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} modified an input")
    if not isinstance(desired, tuple):
        actual, desired = (actual,), (desired,)
    assert len(actual) == len(desired)
    for a, d in zip(actual, desired):
        assert_close(a, d, dtype)
    return actual


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("threads", [1, 2, 3, 5, 40])
def test_affine_shares_every_row_out_once(rng, monkeypatch, sliced_products, threads, need_dx):
    """With any number of parts (2: dx | dW; 3 and 5: parts across both; 40: more
    parts than rows of dx) every row of dx and dW is computed by exactly one
    product: each ``np.dot(..., out=rows)`` the parts make is recorded by the rows
    it writes, and every row must be written once (a row computed twice or lost
    fails, whatever the values). Without dx (a network's first layer) the parts
    share out the rows of dW alone."""
    import threading

    from fastzero.kernels.numba import dense

    monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
    written, lock = [], threading.Lock()

    class RecordingNumpy:
        def __getattr__(self, name):
            return getattr(np, name)

        def dot(self, a, b, out=None):
            if out is not None:
                with lock:
                    written.append((out.__array_interface__["data"][0], out.shape[0], out.strides[0]))
            return np.dot(a, b, out=out)

    monkeypatch.setattr(dense, "np", RecordingNumpy())
    x, W, dout = rng.standard_normal((70, 1100)), rng.standard_normal((1100, 30)), rng.standard_normal((70, 30))
    assert 2 * dout.size * x.shape[1] >= dense.INLINE_OPS  # large enough to be shared out
    dx, dW, _ = FAST.affine_backward(dout, x, W, need_dx=need_dx)
    assert (dx is None) is not need_dx
    products = ((dx, dout @ W.T), (dW, x.T @ dout)) if need_dx else ((dW, x.T @ dout),)
    for result, expected in products:
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    if not need_dx:
        assert all(rows < len(dW) for _, rows, _ in written) or threads == 1  # dW itself shared out
    for array, _ in products:
        start, row = array.__array_interface__["data"][0], array.strides[0]
        counts = np.zeros(len(array), int)
        for address, rows, _ in written:
            first = (address - start) // row
            if 0 <= first < len(array):
                counts[first:first + rows] += 1
        np.testing.assert_array_equal(counts, 1)


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "sliced"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_backward_without_dx_gives_the_same_dW_and_db(rng, monkeypatch, sliced_products, threads, dtype,
                                                            inline, count):
    """``need_dx=False`` (a network's first layer) returns no dx and the very bits of dW and db,
    on both backends, inline or shared out in parts."""
    from fastzero.kernels.numba import _slices

    monkeypatch.setattr(_slices, "INLINE_OPS", 10**12 if inline else 0)
    monkeypatch.setattr(dense, "INLINE_OPS", 10**12 if inline else 0)
    x, W, dout = (rng.standard_normal(shape).astype(dtype) for shape in ((37, 91), (91, 13), (37, 13)))
    threads(count)
    for kernels in (FAST, REF):
        _, dW, db = kernels.affine_backward(dout, x, W)
        dx, dW_only, db_only = kernels.affine_backward(dout, x, W, need_dx=False)
        assert dx is None
        np.testing.assert_array_equal(dW_only, dW)
        np.testing.assert_array_equal(db_only, db)


#: Inputs where sigmoid is exactly 0 or 1 in each dtype, and inputs whose sigmoid is
#: a subnormal number: there ``1 / (1 + exp(-x))`` overflows ``exp`` and gives 0.
SIGMOID_ZERO = {np.float64: [-746.0, -1000.0, -1e4, -1e300, -np.inf],
                np.float32: [-104.0, -200.0, -1e4, -1e30, -np.inf]}
SIGMOID_ONE = {np.float64: [40.0, 710.0, 1e4, 1e300, np.inf],
               np.float32: [17.0, 89.0, 1e4, 1e30, np.inf]}
SIGMOID_TINY = {np.float64: [-709.0, -710.0, -720.0, -740.0, -745.0],
                np.float32: [-87.0, -89.0, -95.0, -100.0, -103.0]}


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_saturates_exactly_and_keeps_its_tail(dtype):
    """The numba kernel's values at the extremes (warning filters do not reach compiled
    code, so the values are what is checked): exactly 0 and 1 where sigmoid rounds to
    them, no inf or NaN, and ``exp(x)`` -- down to the subnormals -- for very negative x."""
    zero, one, tiny = (np.array(d[dtype], dtype=dtype) for d in (SIGMOID_ZERO, SIGMOID_ONE, SIGMOID_TINY))
    x = np.concatenate([zero, one, tiny, np.array([0.0], dtype)])
    out = FAST.sigmoid_forward(x)
    assert out.dtype == dtype and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:len(zero)], 0.0)
    np.testing.assert_array_equal(out[len(zero):len(zero) + len(one)], 1.0)
    assert out[-1] == 0.5
    tail = out[len(zero) + len(one):-1]
    expected = np.exp(tiny.astype(np.float64)).astype(dtype)  # sigmoid(x) = exp(x) here
    assert np.all(tail > 0)
    np.testing.assert_allclose(tail, expected, rtol=1e-5, atol=2 * np.finfo(dtype).smallest_subnormal)
    dx = FAST.sigmoid_backward(np.ones_like(out), out)
    assert np.all(np.isfinite(dx))
    np.testing.assert_array_equal(dx[:len(zero) + len(one)], 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 13), (130, 1), (3, 300), (257, 131)])
def test_softmax_cross_entropy_backward_with_target_rows(rng, dtype, shape):
    """Target rows instead of labels (label smoothing, mixup, rows that are not
    distributions), serial and parallel shapes: ``(y - t) * dout / N`` as the reference."""
    y = rng.random(shape).astype(dtype)
    y /= y.sum(axis=1, keepdims=True)
    smooth = rng.random(shape).astype(dtype)
    smooth /= smooth.sum(axis=1, keepdims=True)
    for rows in (smooth, rng.standard_normal(shape).astype(dtype)):
        compare("softmax_cross_entropy_backward", 1.0, y, rows)
        compare("softmax_cross_entropy_backward", 0.37, y, rows)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_finite_at_huge_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    t = np.array([1, 0, 2])
    loss, y = compare("softmax_cross_entropy_forward", x, t)
    assert np.isfinite(loss) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    # y[n, t[n]] == 0 for rows 0 and 2: the loss is -log(1e-7) there
    np.testing.assert_allclose(loss, (2 * -np.log(1e-7) + np.log(3)) / 3, rtol=1e-4)
    dx = compare("softmax_cross_entropy_backward", 1.0, y, t)[0]
    assert np.all(np.isfinite(dx))


def test_batchnorm_backward_matches_numerical_gradient(rng):
    """An independent check of the formula: central differences of sum(out * dout)."""
    x = rng.standard_normal((5, 3))
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    dout = rng.standard_normal((5, 3))

    def f(x_):
        return np.sum(FAST.batchnorm_forward_train(x_, gamma, beta, np.zeros(3), np.ones(3),
                                                   0.9, 1e-6)[0] * dout)

    _, cache = FAST.batchnorm_forward_train(x, gamma, beta, np.zeros(3), np.ones(3), 0.9, 1e-6)
    dx, dgamma, dbeta = FAST.batchnorm_backward(dout, cache, gamma)
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = 1e-5
        num[idx] = (f(x + step) - f(x - step)) / 2e-5
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dbeta, dout.sum(axis=0), rtol=1e-12)


def run_every_kernel_in_float32():
    """One float32 call of every kernel in the modules under test (fills their signatures),
    every call of more than one sample shared out among all the threads (the parallel
    drivers), whatever thread count an earlier test left behind."""
    from fastzero._threads import max_threads
    from fastzero.kernels.numba import _slices

    saved, _slices.INLINE_OPS = _slices.INLINE_OPS, 0
    threads = fastzero.get_num_threads()
    fastzero.set_num_threads(max_threads())
    try:
        for case in CASES.values():  # every shape: the convolutions' paths depend on it
            for size in ("tiny", "book"):
                for dims in case.shapes(size).values():
                    case.call(FAST, case.arguments(FAST, dims, np.float32))
    finally:
        _slices.INLINE_OPS = saved
        fastzero.set_num_threads(threads)


def native_bodies(llvm_ir):
    """The compiled kernels' LLVM function bodies, without the CPython/cfunc wrappers
    (which widen a float32 return value to box it as a Python float)."""
    for chunk in llvm_ir.split("\ndefine ")[1:]:
        name = chunk.split("@", 1)[1].split("(", 1)[0].strip('"')
        if not name.startswith(("_ZN7cpython", "cfunc.")):
            yield chunk


def test_float32_kernels_never_widen_to_float64():
    """No ``fpext`` (float -> double) in any float32 kernel: literals and
    hyper-parameters are cast to the array dtype, so float32 math stays float32.

    Cached machine code cannot be inspected, so each kernel's Python source is
    recompiled (serially: same typing, quicker) for its float32 signatures.
    Recompiling a driver gives the serial bodies it calls their signatures, so
    the loop runs until no new (kernel, signature) pair turns up.
    """
    run_every_kernel_in_float32()
    kernels = [
        (name, kernel)
        for module in (activation, augment, conv, conv_vector, dense, dropout, loss, norm, optim,
                       pool)
        for name, kernel in vars(module).items()
        if isinstance(kernel, Dispatcher) and kernel.py_func.__module__ == module.__name__
    ]
    checked = set()
    while True:
        todo = [(name, kernel, sig) for name, kernel in kernels for sig in kernel.signatures
                if (name, sig) not in checked
                and any(numba.float32 in (a, getattr(a, "dtype", None)) for a in sig)]
        if not todo:
            break
        for name, kernel, sig in todo:
            fresh = numba.njit(sig, fastmath=FASTMATH, error_model="numpy")(kernel.py_func)
            bodies = list(native_bodies(fresh.inspect_llvm(sig)))
            assert bodies and not any("fpext" in body for body in bodies), f"{name}{sig}"
            checked.add((name, sig))
    integer_only = {name for name, kernel in kernels if kernel.signatures and not any(
        numba.float32 in (a, getattr(a, "dtype", None)) or numba.float64 in (a, getattr(a, "dtype", None))
        for sig in kernel.signatures for a in sig)}
    assert {name for name, _ in checked} == {name for name, _ in kernels} - integer_only


@jit
def _count_body(lo, hi, counts):
    counts = counts[lo:hi]
    for i in range(counts.size):
        counts[i] += 1


_count_light = spans(_count_body, "counts.size")
_count_heavy = spans(_count_body, "counts.size", "1 << 12")


@pytest.mark.parametrize("n", [1, 7, 1 << 12, 100_003])
def test_a_span_driver_runs_its_body_once_on_every_item(n):
    """Serially (light work) and over prange spans (heavy work), each item exactly once."""
    for driver in (_count_light, _count_heavy):
        counts = np.zeros(n, np.int64)
        driver(counts)
        assert (counts == 1).all()


def test_a_span_body_takes_lo_and_hi_first():
    def body(x, out):
        pass

    with pytest.raises(TypeError, match=r"takes \(lo, hi, \*args\)"):
        spans(body, "x.size")
    with pytest.raises(TypeError, match="leading underscore"):
        spans(lambda lo, hi, _n: None, "_n.size")
