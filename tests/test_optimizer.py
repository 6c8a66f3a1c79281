"""The book's optimizers: a few steps against their formulas, and the in-place contract."""
import math

import numpy as np
import pytest

from fastzero.layers import Affine
from fastzero.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

STEPS = 3
EPS = 1e-7


def reference_steps(name, p, grads, **hp):
    """The book's update rules written out by hand, on copies."""
    p = p.copy()
    s1 = np.zeros_like(p)
    s2 = np.zeros_like(p)
    for it, g in enumerate(grads, start=1):
        if name == "SGD":
            p = p - hp["lr"] * g
        elif name == "Momentum":
            s1 = hp["momentum"] * s1 - hp["lr"] * g
            p = p + s1
        elif name == "Nesterov":  # the step uses the velocity before its update
            p = p + hp["momentum"] ** 2 * s1 - (1 + hp["momentum"]) * hp["lr"] * g
            s1 = hp["momentum"] * s1 - hp["lr"] * g
        elif name == "AdaGrad":
            s1 = s1 + g * g
            p = p - hp["lr"] * g / (np.sqrt(s1) + EPS)
        elif name == "RMSprop":
            s1 = hp["decay_rate"] * s1 + (1 - hp["decay_rate"]) * g * g
            p = p - hp["lr"] * g / (np.sqrt(s1) + EPS)
        elif name == "Adam":
            b1, b2 = hp["beta1"], hp["beta2"]
            s1 = b1 * s1 + (1 - b1) * g
            s2 = b2 * s2 + (1 - b2) * g * g
            lr_t = hp["lr"] * math.sqrt(1 - b2 ** it) / (1 - b1 ** it)
            p = p - lr_t * s1 / (np.sqrt(s2) + EPS)
    return p


CASES = [
    (SGD, dict(lr=0.1)),
    (Momentum, dict(lr=0.1, momentum=0.8)),
    (Nesterov, dict(lr=0.1, momentum=0.7)),
    (AdaGrad, dict(lr=0.3)),
    (RMSprop, dict(lr=0.05, decay_rate=0.9)),
    (Adam, dict(lr=0.01, beta1=0.8, beta2=0.95)),
]


@pytest.mark.parametrize("cls, hp", CASES, ids=[c.__name__ for c, _ in CASES])
def test_steps_match_formula_and_update_in_place(backend, rng, cls, hp):
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    params = {"W": W, "b": b}
    W0, b0 = W.copy(), b.copy()
    gW = [rng.standard_normal(W.shape) for _ in range(STEPS)]
    gb = [rng.standard_normal(b.shape) for _ in range(STEPS)]
    opt = cls(**hp)
    for i in range(STEPS):
        opt.update(params, {"W": gW[i], "b": gb[i]})
    assert params["W"] is W and params["b"] is b
    np.testing.assert_allclose(W, reference_steps(cls.__name__, W0, gW, **hp), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b, reference_steps(cls.__name__, b0, gb, **hp), rtol=1e-12, atol=1e-14)
    assert not np.allclose(W, W0)


@pytest.mark.parametrize("cls", [c for c, _ in CASES], ids=[c.__name__ for c, _ in CASES])
def test_book_defaults(cls):
    defaults = {"SGD": dict(lr=0.01), "Momentum": dict(lr=0.01, momentum=0.9),
                "Nesterov": dict(lr=0.01, momentum=0.9), "AdaGrad": dict(lr=0.01),
                "RMSprop": dict(lr=0.01, decay_rate=0.99),
                "Adam": dict(lr=0.001, beta1=0.9, beta2=0.999)}[cls.__name__]
    opt = cls()
    assert {k: getattr(opt, k) for k in defaults} == defaults


def test_adam_iter_counts_steps(backend, rng):
    opt = Adam()
    p = {"w": np.zeros(3)}
    for _ in range(4):
        opt.update(p, {"w": np.ones(3)})
    assert opt.iter == 4
    # constant gradient: m and v bias-corrected exactly, so each step moves lr / (1 + eps*...) ~ lr
    np.testing.assert_allclose(p["w"], -4 * 0.001, rtol=1e-5)


@pytest.mark.parametrize("cls, hp", CASES, ids=[c.__name__ for c, _ in CASES])
def test_float32_params_and_state_stay_float32(backend, rng, cls, hp):
    W = rng.standard_normal((5, 2)).astype(np.float32)
    opt = cls(**hp)
    opt.update({"W": W}, {"W": rng.standard_normal((5, 2)).astype(np.float32)})
    assert W.dtype == np.float32
    for store in ("v", "h", "m"):
        for arr in getattr(opt, store, {}).values():
            assert arr.dtype == np.float32


def test_layer_sees_the_optimizer_update(backend, rng):
    W, b = rng.standard_normal((4, 2)), np.zeros(2)
    layer = Affine(W, b)
    x = rng.standard_normal((3, 4))
    layer.forward(x)
    layer.backward(np.ones((3, 2)))
    params, grads = {"W": W, "b": b}, {"W": layer.dW, "b": layer.db}
    expected = x @ (W - 0.5 * layer.dW) + (b - 0.5 * layer.db)
    SGD(lr=0.5).update(params, grads)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-13)


def test_hyperparameters_read_at_update(backend):
    opt = SGD(lr=1.0)
    p = {"w": np.ones(2)}
    opt.lr = np.float64(0.25)  # the book's hyper-parameter search sets numpy floats
    opt.update(p, {"w": np.ones(2)})
    np.testing.assert_array_equal(p["w"], [0.75, 0.75])


# ---------------------------------------------------------------- validation

def test_keys_must_match(backend):
    with pytest.raises(ValueError, match="SGD.update.*missing in grads: \\['b'\\]"):
        SGD().update({"W": np.ones(2), "b": np.ones(2)}, {"W": np.ones(2)})


def test_grad_shape_must_match_and_dtype_be_real(backend):
    with pytest.raises(ValueError, match=r"grads\['W'\] has shape \(3,\), params\['W'\] has \(2,\)"):
        Momentum().update({"W": np.ones(2)}, {"W": np.ones(3)})
    with pytest.raises(TypeError, match="complex"):
        Adam().update({"W": np.ones(2)}, {"W": np.ones(2, np.complex128)})


def test_read_only_param_rejected(backend):
    p = np.ones(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        RMSprop().update({"w": p}, {"w": np.ones(3)})


def test_nothing_updated_when_one_key_is_bad(backend):
    good = np.ones(3)
    adam = Adam()
    with pytest.raises(ValueError):
        adam.update({"a": good, "b": np.ones(2)}, {"a": np.ones(3), "b": np.ones(5)})
    np.testing.assert_array_equal(good, 1.0)
    assert adam.iter == 0


def test_state_shape_change_is_an_error(backend):
    opt = Momentum()
    opt.update({"w": np.ones(3)}, {"w": np.ones(3)})
    with pytest.raises(ValueError, match="state was created for"):
        opt.update({"w": np.ones(4)}, {"w": np.ones(4)})


@pytest.mark.parametrize("make", [
    lambda: SGD(lr=-1), lambda: Momentum(momentum=1.5), lambda: Adam(beta1=1.0),
    lambda: RMSprop(decay_rate=float("nan")), lambda: AdaGrad(lr="0.1"),
])
def test_bad_hyperparameters(make):
    with pytest.raises((ValueError, TypeError)):
        make()


def test_nesterov_is_the_books_current_update(backend, rng):
    """The book's ``Nesterov.update`` (``common/optimizer.py``), step by step: the
    parameter moves by ``momentum**2 * v - (1 + momentum) * lr * grad`` with the
    velocity ``v`` of the previous step, and only then is ``v`` updated."""
    lr, mu = 0.05, 0.9
    w = rng.standard_normal(6)
    book_w, book_v = w.copy(), np.zeros(6)
    opt = Nesterov(lr=lr, momentum=mu)
    for _ in range(5):
        g = rng.standard_normal(6)
        book_w += mu * mu * book_v
        book_w -= (1 + mu) * lr * g
        book_v *= mu
        book_v -= lr * g
        opt.update({"w": w}, {"w": g})
        np.testing.assert_allclose(w, book_w, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(opt.v["w"], book_v, rtol=1e-14, atol=1e-15)


# ------------------------------------------- what the book's optimizers take

@pytest.mark.parametrize("cls, hp", CASES, ids=[c.__name__ for c, _ in CASES])
def test_python_floats_in_params_follow_the_books_formulas(backend, cls, hp):
    """``ch06/optimizer_compare_naive.py``: params and grads are Python floats; the
    dict entries are replaced by the stepped values, as the book's ``-=`` on a float does."""
    params = {"x": -7.0, "y": 2.0}
    xs, ys, gx, gy = [], [], [], []
    opt = cls(**hp)
    for _ in range(STEPS):
        xs.append(params["x"])
        ys.append(params["y"])
        grads = {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}
        gx.append(grads["x"])
        gy.append(grads["y"])
        opt.update(params, grads)
    for key, start, gs in (("x", -7.0, gx), ("y", 2.0, gy)):
        value = params[key]
        assert isinstance(value, np.float64) and np.ndim(value) == 0
        expected = reference_steps(cls.__name__, np.array(start), [np.array(g) for g in gs], **hp)
        np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls, hp", CASES, ids=[c.__name__ for c, _ in CASES])
def test_scalars_lists_and_int_arrays_are_stepped_like_floats(backend, rng, cls, hp):
    """NumPy scalars keep their float dtype; int arrays and lists (which cannot hold
    the step) are replaced by float64 arrays holding the book's values."""
    g = [rng.standard_normal(3) for _ in range(STEPS)]
    given = {"f32": np.float32(1.5), "i64": np.int64(2), "ints": np.arange(3),
             "list": [1.0, 2.0, 3.0], "bools": np.array([True, False, True])}
    start = {k: np.array(val, dtype=np.float32 if k == "f32" else np.float64)
             for k, val in given.items()}
    grads = [{k: (gi[0] if start[k].ndim == 0 else gi) for k in given} for gi in g]
    params = dict(given)
    opt = cls(**hp)
    for step in grads:
        opt.update(params, step)
    assert isinstance(params["f32"], np.float32) and isinstance(params["i64"], np.float64)
    for k in ("ints", "list", "bools"):
        assert type(params[k]) is np.ndarray and params[k].dtype == np.float64
    for k in given:
        expected = reference_steps(cls.__name__, start[k], [s[k] for s in grads], **hp)
        rtol = 1e-6 if k == "f32" else 1e-12
        np.testing.assert_allclose(params[k], expected, rtol=rtol, atol=rtol * 1e-2)


def test_gradient_of_another_dtype_is_computed_in_the_params_dtype(backend, rng):
    W = rng.standard_normal(4)
    W0 = W.copy()
    g = rng.standard_normal(4).astype(np.float32)
    params = {"W": W}
    SGD(lr=0.5).update(params, {"W": g})
    assert params["W"] is W
    np.testing.assert_array_equal(W, W0 - 0.5 * g.astype(np.float64))
    b = np.zeros(3, np.float32)
    SGD(lr=0.5).update({"b": b}, {"b": np.arange(3)})
    np.testing.assert_array_equal(b, [0.0, -0.5, -1.0])


@pytest.mark.parametrize("cls, hp", CASES, ids=[c.__name__ for c, _ in CASES])
def test_contiguous_float_arrays_go_to_the_kernel_without_a_copy(backend, rng, monkeypatch, cls, hp):
    """float32/float64 C-contiguous parameters are stepped in place by the kernel itself:
    the copy-and-write-back path is never taken for them."""
    from fastzero import _validate

    def no_write_back(*args):
        raise AssertionError("a C-contiguous float parameter went through a copy")

    monkeypatch.setattr(_validate, "store_update", no_write_back)
    params = {"W": rng.standard_normal((3, 4)), "b": np.zeros(4, np.float32)}
    ids = {k: id(a) for k, a in params.items()}
    opt = cls(**hp)
    opt.update(params, {"W": np.ones((3, 4)), "b": np.ones(4, np.float32)})
    assert {k: id(a) for k, a in params.items()} == ids
    assert not np.all(params["b"] == 0)


def test_gradient_broadcasts_to_the_param_as_in_the_book(backend):
    """A (1, M) bias gets the layer's (M,) ``db``: ``params[key] -= lr * grads[key]``."""
    b = np.ones((1, 3))
    params = {"b": b}
    Momentum(lr=0.5, momentum=0.9).update(params, {"b": np.array([1.0, 2.0, 3.0])})
    assert params["b"] is b
    np.testing.assert_array_equal(b, [[0.5, 0.0, -0.5]])
    with pytest.raises(ValueError, match=r"grads\['b'\] has shape \(2,\)"):
        SGD().update(params, {"b": np.ones(2)})


def test_float16_param_is_stepped_in_float32_and_written_back_in_place(backend, rng):
    """ch08/half_float_network.py casts parameters to float16: such an array keeps its
    identity and dtype; the step is computed in float32 and rounded back."""
    p = rng.standard_normal(5).astype(np.float16)
    start = p.astype(np.float32)
    g = rng.standard_normal(5).astype(np.float16)
    params = {"w": p}
    Momentum(lr=0.1, momentum=0.9).update(params, {"w": g})
    assert params["w"] is p and p.dtype == np.float16
    expected = reference_steps("Momentum", start, [g.astype(np.float32)], lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(p, expected.astype(np.float16))
