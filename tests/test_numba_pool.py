"""numba max-pooling kernels against the NumPy reference backend (and the definition)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastzero
from fastzero.kernels.cases import POOL
from fastzero.kernels.numba import pool as fast
from fastzero.kernels.numpy import pool as ref

#: also run by CI's bounds-checked job (NUMBA_BOUNDSCHECK=1)
pytestmark = pytest.mark.boundscheck

# The registry's tiny geometries (N, C, H, W, pool_h, pool_w, stride, pad): square
# and non-square windows, stride equal to, below (overlapping windows) and above
# the window, pads 0-2.
SHAPES = list(POOL.tiny)
IDS = ["N{}C{}H{}W{}-P{}x{}-s{}p{}".format(*s) for s in SHAPES]


def out_shape(N, C, H, W, ph, pw, stride, pad):
    return (N, C, (H + 2 * pad - ph) // stride + 1, (W + 2 * pad - pw) // stride + 1)


def check_pool(x, ph, pw, stride, pad, dout):
    out, argmax = fast.maxpool_forward(x, ph, pw, stride, pad)
    out_ref, argmax_ref = ref.maxpool_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert out.dtype == x.dtype
    assert np.issubdtype(argmax.dtype, np.integer) and argmax.itemsize == 1
    dx = fast.maxpool_backward(dout, argmax, x.shape, ph, pw, stride, pad)
    dx_ref = ref.maxpool_backward(dout, argmax_ref, x.shape, ph, pw, stride, pad)
    assert dx.dtype == x.dtype
    # overlapping windows sum (up to ph*pw terms) in a different order than the
    # reference's col2im: a few ulps of the largest sum
    scale = float(np.max(np.abs(dx_ref), initial=1.0))
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=ph * pw * np.finfo(x.dtype).eps * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_maxpool_matches_reference(rng, shape, dtype):
    x = rng.standard_normal(shape[:4]).astype(dtype)
    dout = rng.standard_normal(out_shape(*shape)).astype(dtype)
    check_pool(x, *shape[4:], dout)


def test_maxpool_ties_pick_first_maximum():
    """Integer-valued inputs have many ties; the first in row-major window order wins."""
    x = np.random.default_rng(3).integers(0, 3, (2, 3, 8, 9)).astype(np.float64)
    dout = np.ones(out_shape(2, 3, 8, 9, 3, 3, 2, 1))
    check_pool(x, 3, 3, 2, 1, dout)


def test_maxpool_nan_wins_like_argmax():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 0, 0] = 5.0
    out, argmax = fast.maxpool_forward(x, 2, 2, 2, 0)
    assert np.isnan(out[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 3
    _, argmax_ref = ref.maxpool_forward(x, 2, 2, 2, 0)
    np.testing.assert_array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("h, w", [(8, 8), (7, 9)])
def test_book_pooling_ties_nan_and_infinities(h, w):
    """The 2x2 / stride 2 fast path: ties, NaNs anywhere in a window, +-inf, odd sizes."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (2, 3, h, w)).astype(np.float64)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 12, replace=False)] = np.nan
    flat[rng.choice(flat.size, 6, replace=False)] = np.inf
    flat[rng.choice(flat.size, 6, replace=False)] = -np.inf
    x[0, 0, :2, :2] = [[np.inf, -np.inf], [1.0, np.nan]]  # inf - inf, then a NaN
    x[0, 1, :2, :2] = [[-np.inf, -np.inf], [-np.inf, -np.inf]]
    out, argmax = fast.maxpool_forward(x, 2, 2, 2, 0)
    out_ref, argmax_ref = ref.maxpool_forward(x, 2, 2, 2, 0)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(
        fast.maxpool_backward(dout, argmax, x.shape, 2, 2, 2, 0),
        ref.maxpool_backward(dout, argmax_ref, x.shape, 2, 2, 2, 0),
    )


def test_maxpool_backward_overlapping_windows_by_hand():
    """3x3 windows at stride 1 over a 3x4 plane: both windows pick the shared maximum."""
    x = np.array([[[[0.0, 1.0, 0.0, 0.0], [0.0, 9.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    out, argmax = fast.maxpool_forward(x, 3, 3, 1, 0)
    np.testing.assert_array_equal(out, [[[[9.0, 9.0]]]])
    np.testing.assert_array_equal(argmax, [[[[4, 3]]]])
    dx = fast.maxpool_backward(np.array([[[[2.0, 3.0]]]]), argmax, x.shape, 3, 3, 1, 0)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 1] = 5.0
    np.testing.assert_array_equal(dx, expected)


def test_argmax_dtype_grows_with_window():
    x = np.random.default_rng(0).standard_normal((1, 1, 12, 12))
    _, argmax = fast.maxpool_forward(x, 12, 12, 1, 0)
    assert argmax.dtype == np.int16
    assert argmax[0, 0, 0, 0] == np.argmax(x)


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 4),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    ph=st.integers(1, 4),
    pw=st.integers(1, 4),
    stride=st.integers(1, 4),
    pad=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_maxpool_random_shapes_match_reference(n, c, h, w, ph, pw, stride, pad, seed):
    assume(h + 2 * pad >= ph and w + 2 * pad >= pw)  # else no output pixel: rejected by the layer
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    dout = rng.standard_normal(out_shape(n, c, h, w, ph, pw, stride, pad))
    check_pool(x, ph, pw, stride, pad, dout)


def test_maxpool_is_deterministic_and_thread_count_independent(rng):
    x = rng.standard_normal((5, 7, 10, 11))
    dout = rng.standard_normal(out_shape(5, 7, 10, 11, 3, 3, 1, 1))

    def step():
        out, argmax = fast.maxpool_forward(x, 3, 3, 1, 1)
        return out, argmax, fast.maxpool_backward(dout, argmax, x.shape, 3, 3, 1, 1)

    first = step()
    threads = fastzero.get_num_threads()
    try:
        fastzero.set_num_threads(1)
        serial = step()
    finally:
        fastzero.set_num_threads(threads)
    for a, b, c in zip(first, step(), serial):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
