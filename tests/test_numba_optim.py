"""The numba optimizer kernels vs the NumPy reference, over many steps, in place."""
import math

import numpy as np
import pytest

from fastzero import _backend

REF = _backend.kernels("numpy")
FAST = _backend.kernels("numba")


def adam_hyper(step, lr=0.01, beta1=0.9, beta2=0.999):
    """Adam's bias-corrected learning rate for step ``step`` (1-based), as the book's Adam."""
    return lr * math.sqrt(1 - beta2**step) / (1 - beta1**step), beta1, beta2


#: kernel -> (number of state arrays, hyper-parameters of step ``s``)
OPTIMIZERS = {
    "sgd_update": (0, lambda s: (0.01,)),
    "momentum_update": (1, lambda s: (0.01, 0.9)),
    "nesterov_update": (1, lambda s: (0.01, 0.9)),
    "adagrad_update": (1, lambda s: (0.01,)),
    "rmsprop_update": (1, lambda s: (0.01, 0.99)),
    "adam_update": (2, adam_hyper),
}
STEPS = 100


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(37,), (4, 3, 5, 5), (40000,)])  # the last: parallel
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_reference_over_steps(rng, name, shape, dtype):
    n_states, hyper = OPTIMIZERS[name]
    param = rng.standard_normal(shape).astype(dtype)
    states = [np.zeros(shape, dtype) for _ in range(n_states)]
    param_ref, states_ref = param.copy(), [s.copy() for s in states]
    ids = [id(a) for a in [param, *states]]
    tol = 1e-10 if dtype == np.float64 else 1e-4

    for step in range(1, STEPS + 1):
        grad = (rng.standard_normal(shape) * (1 + param_ref)).astype(dtype)  # depends on param
        grad_before = grad.copy()
        assert getattr(FAST, name)(param, grad, *states, *hyper(step)) is None
        getattr(REF, name)(param_ref, grad, *states_ref, *hyper(step))
        np.testing.assert_array_equal(grad, grad_before)

    assert [id(a) for a in [param, *states]] == ids
    for actual, desired in zip([param, *states], [param_ref, *states_ref]):
        assert actual.dtype == dtype
        scale = float(np.max(np.abs(desired)))
        np.testing.assert_allclose(actual, desired, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_updates_views_of_the_caller_arrays(rng, name):
    """In-place means the caller's arrays change, whatever their shape."""
    n_states, hyper = OPTIMIZERS[name]
    param = rng.standard_normal((2, 3, 4))
    states = [np.full_like(param, 0.5) for _ in range(n_states)]
    before = [a.copy() for a in [param, *states]]
    getattr(FAST, name)(param, np.ones_like(param), *states, *hyper(1))
    for after, old in zip([param, *states], before):
        assert not np.array_equal(after, old)


def test_adam_one_step_by_hand():
    """One Adam step from zero state: m = 0.1 g, v = 0.001 g^2, param -= lr_t * m / (sqrt(v) + eps)."""
    param = np.array([1.0, -2.0, 0.0])
    grad = np.array([0.5, -4.0, 0.0])
    m, v = np.zeros(3), np.zeros(3)
    FAST.adam_update(param, grad, m, v, 0.01, 0.9, 0.999)
    np.testing.assert_allclose(m, 0.1 * grad, rtol=1e-15)
    np.testing.assert_allclose(v, 0.001 * grad**2, rtol=1e-15)
    expected = np.array([1.0, -2.0, 0.0]) - 0.01 * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(param, expected, rtol=1e-15)
