"""Same seed, same thread count -> the same numbers, bit for bit (numba backend).

A small network (convolution, ReLU, max pooling, affine, batch norm,
softmax-with-loss) runs two training steps with Adam; every gradient, the
loss, the batch-norm running statistics and the updated parameters are
compared between runs.
"""
import numba
import numpy as np
import pytest

import fastzero
from fastzero.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Pooling,
    Relu,
    SoftmaxWithLoss,
)
from fastzero.optimizer import Adam

N, C, H, W = 16, 3, 12, 12
FILTERS, HIDDEN, CLASSES = 6, 150, 10  # HIDDEN spans several column blocks


@pytest.fixture(autouse=True)
def numba_backend_and_threads_restored():
    threads = fastzero.get_num_threads()
    with fastzero.use_backend("numba"):
        yield
    fastzero.set_num_threads(threads)


def train_two_steps(seed, dtype):
    """Everything the steps compute, by name."""
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
    for step in range(2):
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
        optimizer.update(params, grads)
    seen.update(params)
    seen.update(running_mean=norm.running_mean, running_var=norm.running_var)
    return seen


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_seed_same_threads_bitwise_equal(dtype):
    first = train_two_steps(7, dtype)
    second = train_two_steps(7, dtype)
    assert first.keys() == second.keys()
    for name in first:
        assert name.startswith("loss") or first[name].dtype == dtype, name
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    other_seed = train_two_steps(8, dtype)
    assert not np.array_equal(first["dW10"], other_seed["dW10"])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_and_two_threads_agree(dtype):
    fastzero.set_num_threads(1)
    one = train_two_steps(7, dtype)
    fastzero.set_num_threads(2)
    two = train_two_steps(7, dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for name in one:
        scale = float(np.max(np.abs(one[name])))
        np.testing.assert_allclose(two[name], one[name], rtol=tol, atol=tol * scale, err_msg=name)
