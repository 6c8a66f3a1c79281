"""numba convolution kernels against the NumPy reference backend (and the definition)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastzero
from fastzero.kernels.cases import CONV
from fastzero.kernels.numba import conv as fast
from fastzero.kernels.numba import conv_vector
from fastzero.kernels.numpy import conv as ref

#: also run by CI's bounds-checked job (NUMBA_BOUNDSCHECK=1)
pytestmark = pytest.mark.boundscheck

RTOL = {np.float64: 1e-10, np.float32: 1e-4}

# The registry's tiny geometries (N, C, H, W, FN, FH, FW, stride, pad): batch 1
# and odd batches, odd sizes, 1/3/16 channels, 1x1 / 3x3 / 5x5 / 7x3 filters,
# strides 1-3, pads 0-2.
SHAPES = list(CONV.tiny)
IDS = ["N{}C{}H{}W{}-F{}x{}x{}-s{}p{}".format(*s) for s in SHAPES]


def assert_close(actual, expected, rtol):
    """``|actual - expected| <= rtol * max|expected|`` elementwise, and same shape and dtype."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    scale = max(float(np.max(np.abs(expected), initial=0.0)), np.finfo(expected.dtype).tiny)
    err = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
    assert err <= rtol * scale, f"max abs error {err:.3g} > {rtol} * {scale:.3g}"


def make_conv(rng, shape, dtype):
    N, C, H, W, FN, FH, FW, stride, pad = shape
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    Wt = rng.standard_normal((FN, C, FH, FW)).astype(dtype)
    b = rng.standard_normal(FN).astype(dtype)
    OH, OW = (H + 2 * pad - FH) // stride + 1, (W + 2 * pad - FW) // stride + 1
    dout = rng.standard_normal((N, FN, OH, OW)).astype(dtype)
    return x, Wt, b, dout, stride, pad


#: ``(DIRECT_MAX_TAPS, VECTOR_MIN_TAPS)`` that send every filter to one way of
#: multiplying (the vector tiles take the stride-1 filters with ``pad < FH, FW``).
PRODUCTS = {"blas": (0, 10**9), "loops": (10**9, 10**9), "vector": (0, 0)}


def use_products(name):
    """Set the module's choice to ``PRODUCTS[name]``; returns the previous values."""
    saved = fast.DIRECT_MAX_TAPS, fast.VECTOR_MIN_TAPS
    fast.DIRECT_MAX_TAPS, fast.VECTOR_MIN_TAPS = PRODUCTS[name]
    return saved


@pytest.fixture(params=list(PRODUCTS))
def products(request):
    """Every filter multiplied by BLAS, by the numba loops, or by the vector tiles."""
    saved = use_products(request.param)
    yield request.param
    fast.DIRECT_MAX_TAPS, fast.VECTOR_MIN_TAPS = saved


def check_conv(x, Wt, b, dout, stride, pad):
    rtol = RTOL[x.dtype.type]
    out, cache = fast.conv_forward(x, Wt, b, stride, pad)
    out_ref, cache_ref = ref.conv_forward(x, Wt, b, stride, pad)
    assert_close(out, out_ref, rtol)
    grads = fast.conv_backward(dout, cache, Wt, stride, pad)
    grads_ref = ref.conv_backward(dout, cache_ref, Wt, stride, pad)
    for g, g_ref in zip(grads, grads_ref):
        assert_close(g, g_ref, rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_im2col_col2im_match_reference(rng, shape, dtype):
    x, Wt, _, _, stride, pad = make_conv(rng, shape, dtype)
    FH, FW = Wt.shape[2:]
    col = fast.im2col(x, FH, FW, stride, pad)
    np.testing.assert_array_equal(col, ref.im2col(x, FH, FW, stride, pad))
    assert col.dtype == x.dtype and col.flags.c_contiguous
    dcol = rng.standard_normal(col.shape).astype(dtype)
    assert_close(
        fast.col2im(dcol, x.shape, FH, FW, stride, pad),
        ref.col2im(dcol, x.shape, FH, FW, stride, pad),
        RTOL[dtype],
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_conv_forward_backward_match_reference(rng, shape, dtype, products):
    check_conv(*make_conv(rng, shape, dtype))


def test_conv_forward_matches_definition(rng, products):
    """out[n, f, y, x] = b[f] + sum_{c,i,j} W[f, c, i, j] * x_pad[n, c, y*s + i, x*s + j]."""
    x, Wt, b, _, stride, pad = make_conv(rng, (2, 3, 8, 7, 4, 3, 2, 2, 1), np.float64)
    FH, FW = Wt.shape[2:]
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    out, _ = fast.conv_forward(x, Wt, b, stride, pad)
    OH, OW = out.shape[2:]
    expected = np.empty_like(out)
    for y in range(OH):
        for z in range(OW):
            window = xp[:, :, y * stride:y * stride + FH, z * stride:z * stride + FW]
            expected[:, :, y, z] = np.einsum("ncij,fcij->nf", window, Wt) + b
    assert_close(out, expected, 1e-12)


def test_col2im_is_adjoint_of_im2col(rng):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    x = rng.standard_normal((3, 2, 7, 8))
    col = fast.im2col(x, 3, 2, 2, 1)
    c = rng.standard_normal(col.shape)
    lhs = np.vdot(col, c)
    rhs = np.vdot(x, fast.col2im(c, x.shape, 3, 2, 2, 1))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@given(
    n=st.integers(1, 4),
    c=st.integers(1, 5),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    fn=st.integers(1, 6),
    fh=st.integers(1, 5),
    fw=st.integers(1, 5),
    stride=st.integers(1, 3),
    pad=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
    products=st.sampled_from(list(PRODUCTS)),
)
def test_conv_random_shapes_match_reference(n, c, h, w, fn, fh, fw, stride, pad, seed, products):
    assume(h + 2 * pad >= fh and w + 2 * pad >= fw)  # else no output pixel: rejected by the layer
    rng = np.random.default_rng(seed)
    saved = use_products(products)
    try:
        check_conv(*make_conv(rng, (n, c, h, w, fn, fh, fw, stride, pad), np.float64))
    finally:
        fast.DIRECT_MAX_TAPS, fast.VECTOR_MIN_TAPS = saved


def conv_step(x, Wt, b, dout, stride, pad):
    out, cache = fast.conv_forward(x, Wt, b, stride, pad)
    return (out,) + fast.conv_backward(dout, cache, Wt, stride, pad)


#: One geometry per way the numba backward runs (see CHANNEL_SHAPES below for the channel tiles).
NO_DX_SHAPES = [*SHAPES, (7, 64, 5, 5, 64, 3, 3, 1, 1), (7, 24, 5, 5, 64, 3, 3, 1, 0), (7, 64, 5, 5, 24, 3, 3, 1, 1)]


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", NO_DX_SHAPES, ids=lambda s: "N{}C{}H{}W{}-F{}x{}x{}-s{}p{}".format(*s))
def test_conv_backward_without_dx_gives_the_same_dW_and_db(rng, monkeypatch, threads, shape, dtype, count,
                                                           products):
    """``need_dx=False`` (a network's first layer) returns no dx and the very bits of dW and
    db, on both backends, in one part or shared out on two threads."""
    from fastzero.kernels.numba import _slices

    monkeypatch.setattr(_slices, "INLINE_OPS", 0)
    x, Wt, b, dout, stride, pad = make_conv(rng, shape, dtype)
    threads(count)
    for kernels in (fast, ref):
        _, cache = kernels.conv_forward(x, Wt, b, stride, pad)
        _, dW, db = kernels.conv_backward(dout, cache, Wt, stride, pad)
        dx, dW_only, db_only = kernels.conv_backward(dout, cache, Wt, stride, pad, need_dx=False)
        assert dx is None
        np.testing.assert_array_equal(dW_only, dW)
        np.testing.assert_array_equal(db_only, db)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_is_deterministic_and_thread_count_independent(rng, dtype, products):
    args = make_conv(rng, (9, 16, 10, 10, 8, 3, 3, 1, 1), dtype)
    first, again = conv_step(*args), conv_step(*args)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    threads = fastzero.get_num_threads()
    try:
        fastzero.set_num_threads(1)
        serial = conv_step(*args)
    finally:
        fastzero.set_num_threads(threads)
    for a, b in zip(serial, first):
        assert_close(a, b, RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("samples_per_block", [1, 2, 5])
def test_conv_in_blocks_of_samples_matches_reference(rng, monkeypatch, samples_per_block, dtype):
    """BLAS's blocks of 1, 2 (with a remainder of 1) and all 5 samples."""
    monkeypatch.setattr(fast, "DIRECT_MAX_TAPS", 0)
    monkeypatch.setattr(fast, "VECTOR_MIN_TAPS", 10**9)
    shape = (5, 3, 11, 10, 4, 7, 3, 2, 2)
    x, Wt, b, dout, stride, pad = make_conv(rng, shape, dtype)
    per_sample = x.shape[1] * Wt.shape[2] * Wt.shape[3] * dout.shape[2] * dout.shape[3]
    monkeypatch.setattr(fast, "BLOCK_BYTES", samples_per_block * per_sample * x.itemsize)
    assert fast._block_size(x.shape[0], per_sample, x.itemsize) == samples_per_block
    check_conv(x, Wt, b, dout, stride, pad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("samples_per_block", [1, 2, 3, 7])
@pytest.mark.parametrize("shape", [(7, 5, 6, 9, 6, 3, 3, 1, 1), (7, 3, 5, 4, 9, 3, 2, 1, 0),
                                   (7, 2, 4, 5, 3, 3, 3, 1, 2)], ids=["p1", "p0", "p2"])
def test_vector_tiles_in_blocks_of_samples_match_reference(rng, monkeypatch, samples_per_block, shape, dtype):
    """The vector tiles' blocks of 1, 2, 3 (remainder 1) and all 7 samples, pads 0-2."""
    monkeypatch.setattr(fast, "VECTOR_MIN_TAPS", 0)
    monkeypatch.setattr(fast, "DIRECT_MAX_TAPS", 0)
    x, Wt, b, dout, stride, pad = make_conv(rng, shape, dtype)
    monkeypatch.setattr(conv_vector, "BLOCK_BYTES", 1)
    monkeypatch.setattr(conv_vector, "_block_size", lambda n, *_: min(n, samples_per_block))
    check_conv(x, Wt, b, dout, stride, pad)


#: Geometries (N, C, H, W, FN, FH, FW, stride, pad) with 64 input and/or output
#: channels (whole channel tiles in float32 and float64), outputs per sample
#: not a multiple of the tile's 6 pixels, and which products take the channel
#: tiles: (forward and weight gradient, dx).
CHANNEL_SHAPES = {
    "both": ((7, 64, 5, 5, 64, 3, 3, 1, 1), (True, True)),
    "dW-only": ((7, 24, 5, 5, 64, 3, 3, 1, 0), (True, False)),
    "dx-only": ((7, 64, 5, 5, 24, 3, 3, 1, 1), (False, True)),
    "pad2-dx": ((7, 64, 4, 5, 64, 3, 3, 1, 2), (False, True)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("samples_per_block", [1, 2, 3, 7])
@pytest.mark.parametrize("case", list(CHANNEL_SHAPES))
def test_channel_tiles_in_blocks_of_samples_match_reference(rng, monkeypatch, samples_per_block, case, dtype):
    """The channel tiles (small maps, whole groups of output channels) in blocks of 1, 2, 3 (remainder 1)
    and all 7 samples, alone or beside the pixel tiles in one backward pass."""
    shape, (channel_out, channel_dx) = CHANNEL_SHAPES[case]
    N, C, H, W, FN, FH, FW, _, pad = shape
    OH, OW = H + 2 * pad - FH + 1, W + 2 * pad - FW + 1
    itemsize = np.dtype(dtype).itemsize
    assert conv_vector._channel_tiles(FN, (H + pad) * (W + pad), OH * OW, itemsize) == channel_out
    assert conv_vector._channel_tiles(C, (OH + FH - 1 - pad) * (OW + FW - 1 - pad), H * W, itemsize) == channel_dx
    x, Wt, b, dout, stride, pad = make_conv(rng, shape, dtype)
    monkeypatch.setattr(conv_vector, "_block_size", lambda n, *_: min(n, samples_per_block))
    check_conv(x, Wt, b, dout, stride, pad)
    first, again = conv_step(x, Wt, b, dout, stride, pad), conv_step(x, Wt, b, dout, stride, pad)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(7, 16, 6, 7, 8, 3, 3, 1, 1), (7, 64, 5, 5, 64, 3, 3, 1, 1),
                                   (7, 1, 9, 8, 6, 5, 5, 1, 0)], ids=["pixel", "channel", "loops"])
def test_conv_parts_on_two_threads_match_one_part(rng, monkeypatch, shape, dtype):
    """Every call shared out (no inline threshold): the batch's parts run in one ``prange``
    region at two threads; the same bits on every run, the one-part results within rounding."""
    from fastzero.kernels.numba import _slices

    from fastzero._threads import max_threads

    if max_threads() < 2:
        pytest.skip("needs two cores")
    monkeypatch.setattr(_slices, "INLINE_OPS", 0)
    args = make_conv(rng, shape, dtype)
    threads = fastzero.get_num_threads()
    try:
        fastzero.set_num_threads(1)
        serial = conv_step(*args)
        fastzero.set_num_threads(2)
        assert len(conv_vector.parts(shape[0], 1)[0]) == 2
        first, again = conv_step(*args), conv_step(*args)
        check_conv(*args)
    finally:
        fastzero.set_num_threads(threads)
    for a, b, c in zip(first, again, serial):
        np.testing.assert_array_equal(a, b)
        assert_close(a, c, RTOL[dtype])


def test_filters_by_taps_and_stride(rng, monkeypatch):
    """The default choice: every stride-1 forward on the vector tiles, the backward of
    SimpleConvNet's conv1 (25 taps) by loops and of DeepConvNet's 16->16 3x3 (144 taps)
    on the vector tiles; stride 2 by BLAS both ways."""
    calls = []
    monkeypatch.setattr(fast, "_forward_direct", lambda *args: calls.append("loops"))
    monkeypatch.setattr(fast, "_backward_direct", lambda *args: calls.append("loops"))
    monkeypatch.setattr(fast, "_add_bias_to_output", lambda *args: calls.append("blas"))
    monkeypatch.setattr(fast, "_col2im_t", lambda *args: calls.append("blas"))
    monkeypatch.setattr(conv_vector, "conv_forward", lambda *args: calls.append("vector"))
    monkeypatch.setattr(conv_vector, "conv_backward", lambda *args: calls.append("vector") or (None,) * 3)
    for shape, expected in (((1, 1, 28, 28, 30, 5, 5, 1, 0), ["vector", "loops"]),
                            ((1, 16, 5, 5, 16, 3, 3, 1, 1), ["vector", "vector"]),
                            ((1, 16, 5, 5, 16, 3, 3, 2, 1), ["blas", "blas"])):
        calls.clear()
        x, Wt, b, dout, stride, pad = make_conv(rng, shape, np.float64)
        fast.conv_forward(x, Wt, b, stride, pad)
        fast.conv_backward(dout, x, Wt, stride, pad)
        assert calls == expected, shape


@pytest.mark.parametrize("cpu, features, expected", [
    ("znver4", "+avx2,+fma,+avx512f,+avx512vl", "True"),
    ("haswell", "+avx2,+fma", "False"),  # the tiles' accumulators would spill
    ("skylake-avx512", "", "False"),  # no feature list: not known to have AVX-512F
    ("generic", "", "False"),  # a portable cache: llvm.fma would be a call per element
])
def test_vector_tiles_only_for_avx512_targets(cpu, features, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    if cpu is not None:
        env.update(NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features)
    code = "from fastzero.kernels.numba import conv; print(conv._vector_path(144, 3, 3, 1, 1))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vector_tiles_do_not_depend_on_array_alignment(rng, dtype):
    """Inputs starting 0-3 elements into their buffers: bitwise-equal results."""
    x, Wt, b, dout, stride, pad = make_conv(rng, (5, 16, 9, 11, 8, 3, 3, 1, 1), dtype)
    assert fast._vector_path(16 * 9, 3, 3, stride, pad)

    def shifted(a, offset):
        buf = np.empty(a.size + 8, dtype=a.dtype)
        view = buf[offset:offset + a.size].reshape(a.shape)
        view[...] = a
        return view

    runs = [conv_step(*(shifted(a, k) for a in (x, Wt, b, dout)), stride, pad) for k in range(4)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vector_tiles_compile_to_packed_zmm_fmas(dtype):
    """Each tile driver's machine code holds a whole tile of packed 512-bit FMAs and no scalar one
    (compiled afresh from source: cached code cannot be inspected)."""
    import re

    import numba

    from fastzero.kernels.numba._jit import FASTMATH
    from fastzero.kernels.numba._vector import CHANNEL_R, CHANNEL_V, CONV_RF, CONV_V, DOT_RF, DOT_RK, vector_target

    if not vector_target():
        pytest.skip("the tiles are compiled for AVX-512 only")
    f, i = numba.typeof(np.zeros(1, dtype)), numba.typeof(np.zeros(1, np.int64))
    offs, n = numba.typeof(conv_vector._offsets(1, 1, 1, 1, 1, 0)), numba.int64  # read-only offsets
    suffix = "ps" if dtype == np.float32 else "pd"
    for kernel, sig, tile in (
        (conv_vector._conv_planes, (f, offs, f, n, n, n, f), CONV_RF * CONV_V),
        (conv_vector._add_dot_planes, (f, n, f, offs, n, n, f), DOT_RF * DOT_RK),
        (conv_vector._channel_conv, (f, i, i, n, offs, f, n, f, f, n), CHANNEL_R * CHANNEL_V),
        (conv_vector._add_channel_dots, (f, i, n, offs, f, n, f), CHANNEL_R * CHANNEL_V),
    ):
        asm = numba.njit(sig, fastmath=FASTMATH, error_model="numpy")(kernel.py_func).inspect_asm(sig)
        assert len(re.findall(rf"vfmadd\d+{suffix}\s[^\n]*zmm", asm)) >= tile, kernel.__name__
        assert not re.findall(r"vfmadd\d+s[sd]\s", asm), kernel.__name__
