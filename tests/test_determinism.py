"""Same seed, same thread count -> the same numbers, bit for bit (numba backend).

A small network (convolution, ReLU, max pooling, affine, batch norm,
softmax-with-loss) runs training steps with Adam; every gradient, the loss,
the batch-norm running statistics and the updated parameters are compared
between runs. Across thread counts the first step's loss and gradients must
agree within tolerance (not after Adam updates: Adam's first steps are
``lr * sign(grad)``-like, so gradients that are rounding noise, such as the
bias before batch norm, turn into parameter differences of order ``lr``).
"""
import numba
import numpy as np
import pytest

import fastzero
from fastzero import _backend
from fastzero.kernels import KERNEL_NAMES
from fastzero.kernels.cases import CASES, cases_of
from fastzero.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Pooling,
    Relu,
    SoftmaxWithLoss,
)
from fastzero.optimizer import Adam

# Large enough that ReLU, batch norm and the optimizer take their parallel paths.
N, C, H, W = 32, 3, 16, 16
FILTERS, HIDDEN, CLASSES = 8, 300, 10


@pytest.fixture(autouse=True)
def numba_backend_and_threads_restored():
    threads = fastzero.get_num_threads()
    with fastzero.use_backend("numba"):
        yield
    fastzero.set_num_threads(threads)


def train(seed, dtype, steps=2):
    """Everything the steps compute, by name (suffix: the step)."""
    rng = np.random.default_rng(seed)
    params = {
        "W1": 0.3 * rng.standard_normal((FILTERS, C, 3, 3)),
        "b1": 0.1 * rng.standard_normal(FILTERS),
        "W2": 0.1 * rng.standard_normal((FILTERS * (H // 2) * (W // 2), HIDDEN)),
        "b2": 0.1 * rng.standard_normal(HIDDEN),
        "gamma": np.ones(HIDDEN),
        "beta": np.zeros(HIDDEN),
        "W3": 0.1 * rng.standard_normal((HIDDEN, CLASSES)),
        "b3": np.zeros(CLASSES),
    }
    params = {k: p.astype(dtype) for k, p in params.items()}
    conv = Convolution(params["W1"], params["b1"], stride=1, pad=1)
    affine1, affine2 = Affine(params["W2"], params["b2"]), Affine(params["W3"], params["b3"])
    norm = BatchNormalization(params["gamma"], params["beta"])
    layers = [conv, Relu(), Pooling(2, 2, stride=2), affine1, norm, Relu(), affine2]
    last = SoftmaxWithLoss()
    optimizer = Adam(lr=0.01)

    seen = {}
    for step in range(steps):
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        t = rng.integers(0, CLASSES, size=N)
        for layer in layers:
            x = layer.forward(x)
        seen[f"loss{step}"] = np.array(last.forward(x, t))
        dout = last.backward(1)
        for layer in reversed(layers):
            dout = layer.backward(dout)
        grads = {
            "W1": conv.dW, "b1": conv.db, "W2": affine1.dW, "b2": affine1.db,
            "gamma": norm.dgamma, "beta": norm.dbeta, "W3": affine2.dW, "b3": affine2.db,
        }
        seen.update({f"d{k}{step}": g.copy() for k, g in grads.items()})
        seen[f"dx{step}"] = dout
        seen[f"running_mean{step}"] = norm.running_mean.copy()
        seen[f"running_var{step}"] = norm.running_var.copy()
        optimizer.update(params, grads)
    seen.update(params)
    return seen


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_seed_same_threads_bitwise_equal(dtype):
    first = train(7, dtype)
    second = train(7, dtype)
    assert first.keys() == second.keys()
    for name in first:
        assert name.startswith("loss") or first[name].dtype == dtype, name
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    other_seed = train(8, dtype)
    assert not np.array_equal(first["dW10"], other_seed["dW10"])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_and_two_threads_agree(dtype):
    fastzero.set_num_threads(1)
    one = train(7, dtype, steps=1)
    fastzero.set_num_threads(2)
    two = train(7, dtype, steps=1)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for name in (k for k in one if k.endswith("0")):  # the step's outputs, not the update
        # Floor on the scale: the bias gradient of the affine layer before batch
        # norm is zero in exact arithmetic, pure rounding noise (~1e-18) here.
        scale = max(float(np.max(np.abs(one[name]))), 1e-3)
        np.testing.assert_allclose(two[name], one[name], rtol=tol, atol=tol * scale, err_msg=name)


def shifted(a, offset):
    """A C-contiguous copy of ``a`` starting ``offset`` elements into a fresh buffer."""
    buf = np.empty(a.size + 8, dtype=a.dtype)
    view = buf[offset:offset + a.size].reshape(a.shape)
    view[...] = a
    return view


def flat_arrays(result):
    if isinstance(result, tuple):
        return [a for r in result for a in flat_arrays(r)]
    return [np.asarray(result)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_do_not_depend_on_array_alignment(dtype):
    """Every kernel at its "parallel" sizes, inputs placed at 8-byte offsets: bitwise-equal
    outputs and in-place updates (vectorised loops must not take alignment-dependent paths)."""
    fast = _backend.kernels("numba")
    assert set(CASES) == set(KERNEL_NAMES)
    for name, case in CASES.items():
        for label, dims in case.shapes("parallel").items():
            args = case.arguments(fast, dims, dtype)
            runs = []
            for offset in range(4):
                moved = [shifted(a, offset) if isinstance(a, np.ndarray) and a.dtype == dtype
                         else a for a in args]
                result = getattr(fast, name)(*moved)
                runs.append(flat_arrays(result) + [a for a in moved if isinstance(a, np.ndarray)])
            for offset, run in enumerate(runs[1:], 1):
                for a, b in zip(runs[0], run):
                    np.testing.assert_array_equal(a, b, err_msg=f"{name} {label}, offset {offset}")


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_kernels_give_the_same_bits_on_one_and_two_threads(dtype):
    """Each thread owns whole columns or channels and sums them in a fixed order, so the
    batch norm kernels' parallel paths give the serial results bit for bit."""
    fast = _backend.kernels("numba")
    for case in cases_of("norm"):
        for label, dims in case.shapes("parallel").items():
            runs = []
            for threads in (1, 2, 2):
                fastzero.set_num_threads(threads)
                args = case.arguments(fast, dims, dtype)
                runs.append(flat_arrays(case.call(fast, args)) + [args[i] for i in case.updates])
            for threads, run in zip((2, 2), runs[1:]):
                for a, b in zip(runs[0], run, strict=True):
                    np.testing.assert_array_equal(b, a, err_msg=f"{case.kernel} {label}, {threads} threads")
