"""util: im2col/col2im (values, adjointness), conv_output_size, shuffle_dataset, smooth_curve."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastzero
from fastzero.util import col2im, conv_output_size, im2col, shuffle_dataset, smooth_curve


def naive_im2col(x, fh, fw, stride, pad):
    n, c, h, w = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    rows = [xp[i, :, y * stride:y * stride + fh, z * stride:z * stride + fw].ravel()
            for i in range(n) for y in range(oh) for z in range(ow)]
    return np.array(rows)


@pytest.mark.parametrize("fh, fw, stride, pad", [(3, 3, 1, 0), (2, 3, 2, 1), (5, 1, 3, 2), (1, 1, 1, 0)])
def test_im2col_matches_naive_windows(backend, rng, fh, fw, stride, pad):
    x = rng.standard_normal((2, 3, 7, 6))
    col = im2col(x, fh, fw, stride, pad)
    np.testing.assert_array_equal(col, naive_im2col(x, fh, fw, stride, pad))


def test_im2col_book_shapes(backend, rng):
    assert im2col(rng.random((1, 3, 7, 7)), 5, 5, stride=1, pad=0).shape == (9, 75)
    assert im2col(rng.random((10, 3, 7, 7)), 5, 5, stride=1, pad=0).shape == (90, 75)


def test_im2col_dtypes(backend, rng):
    x = rng.standard_normal((1, 2, 4, 4))
    assert im2col(x.astype(np.float32), 2, 2).dtype == np.float32
    assert im2col(np.ones((1, 1, 3, 3), dtype=int), 2, 2).dtype == np.float64
    assert col2im(np.ones((4, 4), np.float32), (1, 1, 3, 3), 2, 2).dtype == np.float32


geometry = st.tuples(
    st.integers(1, 2), st.integers(1, 3),            # N, C
    st.integers(1, 7), st.integers(1, 7),            # H, W
    st.integers(1, 4), st.integers(1, 4),            # FH, FW
    st.integers(1, 3), st.integers(0, 2),            # stride, pad
    st.integers(0, 2**32 - 1),                       # seed
).filter(lambda g: g[4] <= g[2] + 2 * g[7] and g[5] <= g[3] + 2 * g[7])


@given(geometry)
def test_col2im_is_the_adjoint_of_im2col(g):
    """<im2col(x), y> == <x, col2im(y)> for every geometry (overlaps, gaps, padding)."""
    n, c, h, w, fh, fw, stride, pad, seed = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    for name in fastzero.available_backends():
        with fastzero.use_backend(name):
            col = im2col(x, fh, fw, stride, pad)
            y = rng.standard_normal(col.shape)
            back = col2im(y, x.shape, fh, fw, stride, pad)
        assert back.shape == x.shape
        lhs, rhs = np.vdot(col, y), np.vdot(x, back)
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12), name


def test_col2im_sums_overlaps(backend):
    # 1x1x3x3 input, 2x2 windows, stride 1: the centre is in all four windows
    col = np.ones((4, 4))
    np.testing.assert_array_equal(col2im(col, (1, 1, 3, 3), 2, 2)[0, 0],
                                  [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_col2im_validates_col_shape(backend):
    with pytest.raises(ValueError, match=r"col2im: expected col of shape \(4, 4\), got shape \(4, 3\)"):
        col2im(np.ones((4, 3)), (1, 1, 3, 3), 2, 2)
    with pytest.raises(ValueError, match="input_shape"):
        col2im(np.ones((4, 4)), (1, 3, 3), 2, 2)


def test_conv_output_size():
    assert conv_output_size(28, 5) == 24
    assert conv_output_size(7, 3, stride=2, pad=1) == 4
    assert conv_output_size(8, 3, stride=2) == 3  # floor, as im2col
    assert isinstance(conv_output_size(28, 5), int)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_output_size(3, 6, pad=1)
    with pytest.raises(ValueError, match="stride"):
        conv_output_size(8, 3, stride=0)


def test_networks_size_their_layers_with_conv_output_size():
    # The networks check their geometry as conv_output_size does (a zero
    # stride is named, not a ZeroDivisionError; a filter too large is refused).
    from fastzero.nets import DeepConvNet, SimpleConvNet

    with pytest.raises(ValueError, match="conv_output_size: stride"):
        SimpleConvNet(conv_param={"stride": 0})
    with pytest.raises(ValueError, match="conv_output_size: filter_size 9 is larger"):
        SimpleConvNet(input_dim=(1, 6, 6), conv_param={"filter_size": 9})
    with pytest.raises(ValueError, match="conv_output_size: filter_size 2 is larger"):
        DeepConvNet(input_dim=(1, 1, 1))  # one pixel: nothing to pool


def test_the_output_size_formula_is_written_once():
    # Every convolution and pooling size in the package comes from
    # fastzero.kernels._geometry.output_size (comments and docstrings aside).
    import io
    import pathlib
    import re
    import tokenize

    formula = re.compile(r"2\s*\*\s*pad\s*-|//\s*stride\s*\+\s*1")
    root = pathlib.Path(fastzero.__file__).parent
    writers = []
    for path in sorted(root.rglob("*.py")):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        code = " ".join(tok.string for tok in tokens
                        if tok.type not in (tokenize.STRING, tokenize.COMMENT))
        if formula.search(code):
            writers.append(path.relative_to(root).as_posix())
    assert writers == ["kernels/_geometry.py"]


def test_shuffle_dataset_keeps_pairs(rng):
    x = np.arange(10 * 2 * 3).reshape(10, 2, 3)
    t = np.arange(10)
    np.random.seed(0)
    xs, ts = shuffle_dataset(x, t)
    np.random.seed(0)
    perm = np.random.permutation(10)  # the book's draw
    np.testing.assert_array_equal(ts, perm)
    np.testing.assert_array_equal(xs, x[perm])
    with pytest.raises(ValueError, match="shuffle_dataset"):
        shuffle_dataset(x, t[:5])


def test_smooth_curve():
    assert smooth_curve(np.full(30, 2.5)) == pytest.approx(np.full(30, 2.5), rel=1e-14)
    x = np.random.default_rng(0).standard_normal(200)
    s = smooth_curve(list(x))
    assert s.shape == (200,)
    assert np.std(np.diff(s)) < np.std(np.diff(x)) / 3  # actually smoother
    with pytest.raises(ValueError, match="at least 11"):
        smooth_curve(np.ones(5))
