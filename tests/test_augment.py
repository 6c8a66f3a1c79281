"""Data augmentation: the warping kernels on both backends against plain loops,
the transforms' geometry, reproducibility and validation."""
import numpy as np
import pytest

import fastzero
from fastzero._backend import kernels
from fastzero.augment import PRESETS, Augment, gaussian_taps

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _naive_sample(x, src_y, src_x):
    """bilinear_sample written pixel by pixel: the independent oracle."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, *src_y.shape[1:]))
    for s in range(n):
        for i in range(src_y.shape[1]):
            for j in range(src_y.shape[2]):
                y, xx = float(src_y[s, i, j]), float(src_x[s, i, j])
                if not np.isfinite(y) or not np.isfinite(xx):
                    continue
                y0, x0 = int(np.floor(y)), int(np.floor(xx))
                for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                    for xc, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
                        if 0 <= yy < h and 0 <= xc < w:
                            out[s, :, i, j] += wy * wx * x[s, :, yy, xc]
    return out


def _naive_noise(key, shape, alpha):
    """elastic_noise from Python integers: SplitMix64 as published, bytes lowest first."""
    n, _, h, w = shape
    words, mask = -(-2 * h * w // 8), 2**64 - 1
    levels = []
    for counter in range(n * words):
        z = (key + counter + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        levels += [(z >> (8 * b)) & 255 for b in range(8)]
    levels = np.array(levels, dtype=np.float64).reshape(n, 8 * words)[:, :2 * h * w]
    return (levels.reshape(shape) * 2 - 255) * alpha / 256


def _naive_warp(x, grid, key, alpha, taps):
    """warp written pixel by pixel: each output pixel's point (plus the noise blurred
    by a direct 2-D convolution), then the sampling oracle."""
    n, _, h, w = x.shape
    src = np.zeros((2, n, h, w))
    for s in range(n):
        for i in range(h):
            for j in range(w):
                src[:, s, i, j] = grid[s].astype(np.float64) @ (i, j, 1)
    if key is not None:
        noise = _naive_noise(key, (n, 2, h, w), alpha)
        field = _naive_blur(noise.reshape(2 * n, h, w), taps).reshape(n, 2, h, w)
        src += np.moveaxis(field, 1, 0)
    return _naive_sample(x, src[0], src[1])


def _naive_blur(field, taps):
    n, h, w = field.shape
    r = taps.size // 2
    out = np.zeros_like(field, dtype=np.float64)
    for s in range(n):
        for i in range(h):
            for j in range(w):
                for a in range(-r, r + 1):
                    for b in range(-r, r + 1):
                        if 0 <= i + a < h and 0 <= j + b < w:
                            out[s, i, j] += taps[a + r] * taps[b + r] * field[s, i + a, j + b]
    return out


SHAPES = [(1, 1, 1, 1), (1, 1, 5, 7), (2, 3, 6, 4), (3, 1, 9, 9), (5, 2, 13, 11)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("out_size", ["same", "other"])
def test_bilinear_sample_matches_plain_loops(backend, shape, dtype, out_size):
    rng = np.random.default_rng(sum(shape))
    n, c, h, w = shape
    ho, wo = (h, w) if out_size == "same" else (h + 3, max(w - 2, 1))
    x = rng.standard_normal(shape).astype(dtype)
    # points inside, on the border, just outside, far outside, on exact pixels, NaN
    src_y = rng.uniform(-2.5, h + 1.5, (n, ho, wo)).astype(dtype)
    src_x = rng.uniform(-2.5, w + 1.5, (n, ho, wo)).astype(dtype)
    src_y.flat[::5] = np.round(src_y.flat[::5])
    src_x.flat[::7] = -1e30
    src_y.flat[::11] = np.nan
    out = kernels().bilinear_sample(x, src_y, src_x)
    assert out.dtype == dtype and out.shape == (n, c, ho, wo)
    np.testing.assert_allclose(out, _naive_sample(x, src_y, src_x), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("sigma", [None, 0.5, 1.0, 4.0], ids=["affine", "field-3", "field-5", "field-17"])
def test_warp_matches_plain_loops(backend, shape, dtype, sigma):
    """Points inside and outside the image; the blur with 3, 5 and 17 taps, wider
    than some of the images."""
    rng = np.random.default_rng(sum(shape) + int(10 * (sigma or 0)))
    n, c, h, w = shape
    x = rng.standard_normal(shape).astype(dtype)
    angle, zoom = rng.uniform(-3, 3, n), rng.uniform(0.5, 1.5, n)
    grid = np.stack([np.stack([np.cos(angle) / zoom, -np.sin(angle) / zoom, rng.uniform(-2, h, n)], 1),
                     np.stack([np.sin(angle) / zoom, np.cos(angle) / zoom, rng.uniform(-2, w, n)], 1)],
                    axis=1).astype(dtype)  # (N, 2, 3): some points inside, some outside
    key, alpha, taps = None, 4 * sigma if sigma else 0.0, None
    if sigma:
        # the top bit set (no signed 64-bit integer holds it); with 3 taps the counters wrap
        key = 2**64 - 3 if sigma == 0.5 else int(rng.integers(2**62)) + 2**63
        taps = gaussian_taps(sigma, dtype)
    out = kernels().warp(x, grid, key, alpha, taps)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out, _naive_warp(x, grid, key, alpha, taps), **TOL[dtype])


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 1, 5, 7)], ids=str)
def test_elastic_noise_is_splitmix64_bytes_on_256_levels(shape):
    from fastzero.kernels.numpy.augment import elastic_noise

    key = 2**64 - 5  # the counters wrap past 2**64
    noise = elastic_noise(key, (shape[0], 2, *shape[2:]), 34.0, np.float64)
    np.testing.assert_allclose(noise, _naive_noise(key, noise.shape, 34.0), rtol=0, atol=1e-12)
    assert np.unique(noise).size > min(200, noise.size // 2) and -34 < noise.min() and noise.max() < 34


def test_warp_by_the_identity_grid_is_the_identity(backend):
    x = np.random.default_rng(0).random((2, 3, 5, 6))
    identity = np.broadcast_to(np.array([[1.0, 0, 0], [0, 1, 0]]), (2, 2, 3)).copy()
    np.testing.assert_array_equal(kernels().warp(x, identity, None, 0.0, None), x)
    shifted = identity.copy()
    shifted[:, 1, 2] = 1.0  # every point one pixel right: the image moves left, zero-filled
    expected = np.zeros_like(x)
    expected[..., :-1] = x[..., 1:]
    np.testing.assert_array_equal(kernels().warp(x, shifted, None, 0.0, None), expected)


def test_gaussian_taps():
    taps = gaussian_taps(4.0)
    assert taps.size == 2 * 8 + 1 and taps.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(taps, taps[::-1])
    assert taps.argmax() == 8


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_transform_is_the_identity(backend, dtype):
    x = np.random.default_rng(0).random((4, 2, 7, 9)).astype(dtype)
    np.testing.assert_array_equal(Augment()(x, np.random.default_rng(1)), x)


def test_whole_pixel_shift_moves_the_image(backend):
    """A source grid shifted by whole pixels reads the image translated, zero-filled."""
    x = np.random.default_rng(0).random((1, 1, 6, 8))
    ys, xs = np.meshgrid(np.arange(6.0), np.arange(8.0), indexing="ij")
    out = kernels().bilinear_sample(x, (ys - 2)[None], (xs + 3)[None])
    expected = np.zeros_like(x)
    expected[0, 0, 2:, :5] = x[0, 0, :4, 3:]
    np.testing.assert_array_equal(out, expected)


def test_rotation_by_a_right_angle_is_rot90(backend):
    """The grid of a 90-degree rotation reads the image rotated (square image)."""
    draws = iter([np.array([90.0]), np.array([1.0]), np.zeros((2, 1))])  # angle, zoom, shift

    class Fixed:
        def uniform(self, low, high, size):
            return next(draws)

    grid, key = Augment(rotation=90.0).draw((1, 1, 5, 5), np.dtype(np.float64), Fixed())
    assert key is None
    x = np.random.default_rng(0).random((1, 1, 5, 5))
    out = kernels().warp(x, grid, None, 0.0, None)
    np.testing.assert_allclose(out[0, 0], np.rot90(x[0, 0], k=-1), atol=1e-12)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_backends_agree_and_a_seed_reproduces(preset, dtype):
    x = np.random.default_rng(5).random((6, 1, 28, 28)).astype(dtype)
    aug = PRESETS[preset]
    with fastzero.use_backend("numpy"):
        reference = aug(x, np.random.default_rng(42))
    with fastzero.use_backend("numba"):
        first = aug(x, np.random.default_rng(42))
        again = aug(x, np.random.default_rng(42))
        other = aug(x, np.random.default_rng(43))
    assert first.dtype == dtype
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, reference, **TOL[dtype])
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, x)


def test_elastic_distortion_moves_pixels_smoothly(backend):
    """Simard's field: neighbouring pixels move alike, the mean displacement is
    about a pixel for alpha=34, sigma=4. Read off images of the row and the column
    index, which bilinear interpolation reproduces exactly inside the image."""
    aug = Augment(elastic_alpha=34.0, elastic_sigma=4.0)
    rows, cols = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    x = np.broadcast_to(np.stack([rows, cols]), (20, 2, 28, 28)).copy()
    out = aug(x, np.random.default_rng(0))
    inner = (slice(None), slice(6, 22), slice(6, 22))  # no point reaches the border from here
    dy, dx = (out[:, 0] - rows)[inner], (out[:, 1] - cols)[inner]
    magnitude = np.hypot(dy, dx)
    assert 0.3 < magnitude.mean() < 3.0
    # smooth: the step between neighbours is a small part of the displacement itself
    assert np.abs(np.diff(dy, axis=2)).mean() < 0.2 * np.abs(dy).mean()


@pytest.mark.parametrize("kwargs", [dict(shift=-1), dict(rotation=float("nan")), dict(scale=1.0),
                                    dict(elastic_alpha=2.0, elastic_sigma=0.0), dict(shift=True)])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="Augment"):
        Augment(**kwargs)


def test_bad_input_is_refused():
    aug = Augment(shift=1.0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        aug(np.zeros((3, 28, 28)), rng)
    with pytest.raises(ValueError, match="float32 or float64"):
        aug(np.zeros((3, 1, 28, 28), dtype=np.uint8), rng)
    with pytest.raises(TypeError, match="Generator"):
        aug(np.zeros((3, 1, 28, 28)), 0)
    with pytest.raises(ValueError, match="unknown preset"):
        Augment.preset("rotate-a-lot")


# ---------------------------------------------------------------- in the Trainer

def _images(n=60, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, n)
    x = np.zeros((n, 1, 8, 8))
    for i, label in enumerate(t):  # a bar per class, thick enough to survive a shift
        x[i, 0, 2 + 2 * label:4 + 2 * label, 1:7] = 1.0
    return x + 0.05 * rng.random(x.shape), t


def _net(seed=0):
    from fastzero.nets import SimpleConvNet

    return SimpleConvNet(input_dim=(1, 8, 8), conv_param={"filter_num": 4, "filter_size": 3,
                                                          "pad": 1, "stride": 1},
                         hidden_size=10, output_size=3, weight_init_std=0.1, seed=seed)


def _trainer(net, x, t, **kwargs):
    from fastzero.trainer import Trainer

    return Trainer(net, x, t, x, t, epochs=2, mini_batch_size=20, optimizer="Adam",
                   optimizer_param={"lr": 0.01}, verbose=False, seed=3, **kwargs)


def test_trainer_augments_every_batch_reproducibly(backend):
    x, t = _images()
    runs = {}
    for name, augment in [("none", None), ("a", "affine"), ("b", "affine"),
                          ("elastic", Augment(elastic_alpha=8.0, elastic_sigma=2.0))]:
        net = _net()
        _trainer(net, x, t, augment=augment).train()
        runs[name] = net.params["W1"].copy()
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert not np.array_equal(runs["a"], runs["none"])
    assert not np.array_equal(runs["a"], runs["elastic"])


def test_trainer_sees_transformed_images(monkeypatch):
    """The batches the network gets are the augmenter's output for the sampled images."""
    x, t = _images()
    net = _net()
    seen = []
    original = net.gradient
    monkeypatch.setattr(net, "gradient", lambda xb, tb: seen.append(xb) or original(xb, tb))
    trainer = _trainer(net, x, t, augment=Augment(shift=2.0))
    trainer.train_step()
    assert seen[0].shape == (20, 1, 8, 8)
    assert not any(np.allclose(seen[0][0], image) for image in x)


def test_trainer_augments_flat_rows_as_square_images():
    from fastzero.nets import TwoLayerNet

    x, t = _images()
    net = TwoLayerNet(64, 10, 3, seed=0)
    trainer = _trainer(net, x.reshape(len(x), 64), t, augment="shift")
    trainer.train_step()
    with pytest.raises(ValueError, match="not square images"):
        _trainer(TwoLayerNet(60, 10, 3), x.reshape(len(x), 64)[:, :60], t, augment="shift").train_step()


def test_resume_with_augmentation_is_bit_exact_and_refuses_another(tmp_path, backend):
    x, t = _images()
    whole = _net()
    _trainer(whole, x, t, augment="elastic").train()
    first = _net()
    path = tmp_path / "run.npz"
    trainer = _trainer(first, x, t, augment="elastic", checkpoint=path)
    for _ in range(trainer.iter_per_epoch):
        trainer.train_step()
    resumed = _net(seed=7)
    again = _trainer(resumed, x, t, augment="elastic")
    again.load_checkpoint(path)
    again.train()
    for name in whole.params:
        np.testing.assert_array_equal(resumed.params[name], whole.params[name], err_msg=name)
    with pytest.raises(ValueError, match="augment"):
        _trainer(_net(), x, t, augment="affine").load_checkpoint(path)
    with pytest.raises(ValueError, match="augment"):
        _trainer(_net(), x, t).load_checkpoint(path)


def test_trainer_refuses_an_unknown_augment():
    x, t = _images()
    with pytest.raises(ValueError, match="unknown preset"):
        _trainer(_net(), x, t, augment="mixup")
    with pytest.raises(TypeError, match="augment"):
        _trainer(_net(), x, t, augment=3)
