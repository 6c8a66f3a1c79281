"""Image warping for data augmentation: the warp of images by an affine map plus a
displacement field of blurred noise, and bilinear resampling at given points."""
from __future__ import annotations

import numpy as np


def _blur(field: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Every (H, W) plane of ``field`` (..., H, W) convolved with ``taps`` (2r+1,)
    along W, then along H; zero outside the plane."""
    h, w = field.shape[-2:]
    r = taps.size // 2
    padded = np.pad(field, [(0, 0)] * (field.ndim - 1) + [(r, r)])
    rows = np.zeros_like(field)
    for k in range(taps.size):
        rows += taps[k] * padded[..., k:k + w]
    padded = np.pad(rows, [(0, 0)] * (field.ndim - 2) + [(r, r), (0, 0)])
    out = np.zeros_like(field)
    for k in range(taps.size):
        out += taps[k] * padded[..., k:k + h, :]
    return out


def bilinear_sample(x: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """``out[n, c, i, j]`` = ``x[n, c]`` read at the point ``(src_y, src_x)[n, i, j]``
    by bilinear interpolation, zero outside the image.

    x (N, C, H, W); src_y, src_x (N, Ho, Wo) in x's pixel coordinates; out (N, C, Ho, Wo).
    """
    n, c, h, w = x.shape
    y0, x0 = np.floor(src_y), np.floor(src_x)
    wy, wx = src_y - y0, src_x - x0
    inside = (y0 >= -1) & (y0 < h) & (x0 >= -1) & (x0 < w)  # also False for NaN
    y0 = np.where(inside, y0, -2).astype(np.intp)  # every corner outside: reads zero
    x0 = np.where(inside, x0, -2).astype(np.intp)
    wy, wx = np.where(inside, wy, 0), np.where(inside, wx, 0)
    one = x.dtype.type(1)
    batch = np.arange(n)[:, None, None]
    out = np.zeros((n, c, *src_y.shape[1:]), dtype=x.dtype)
    for dy, dx, weight in ((0, 0, (one - wy) * (one - wx)), (0, 1, (one - wy) * wx),
                           (1, 0, wy * (one - wx)), (1, 1, wy * wx)):
        yy, xx = y0 + dy, x0 + dx
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        values = x[batch, :, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]  # (N, H, W, C)
        out += np.moveaxis(np.where(valid[..., None], values, 0) * weight[..., None], -1, 1)
    return out


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output for each counter of ``z`` (uint64; arithmetic wraps)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def elastic_noise(key: int, shape: tuple[int, int, int, int], alpha: float,
                  dtype: np.dtype) -> np.ndarray:
    """Uniform noise on 256 levels evenly over (-alpha, alpha), ``shape`` (N, 2, H, W).

    Sample ``n``'s ``2*H*W`` levels are the bytes, lowest first, of SplitMix64 of the
    counters ``key + n*words``, ``key + n*words + 1``, ... (``words = ceil(2*H*W / 8)``):
    any thread computes any sample's noise on its own, the same on every backend.
    """
    n, _, h, w = shape
    words = -(-2 * h * w // 8)
    with np.errstate(over="ignore"):
        z = _splitmix64(np.uint64(key) + np.arange(n * words, dtype=np.uint64))
    levels = (z[:, None] >> (np.uint64(8) * np.arange(8, dtype=np.uint64))) & np.uint64(255)
    levels = levels.reshape(n, 8 * words)[:, :2 * h * w].reshape(shape)
    real = np.dtype(dtype).type
    return levels.astype(dtype) * real(2 * alpha / 256) - real(alpha * 255 / 256)


def warp(x: np.ndarray, grid: np.ndarray, key: int | None, alpha: float,
         taps: np.ndarray | None) -> np.ndarray:
    """``out[n, c, i, j]`` = ``x[n, c]`` read by bilinear interpolation, zero outside,
    at the point ``grid[n] @ (i, j, 1)`` plus ``field[n, :, i, j]``: the elastic
    displacement, :func:`elastic_noise` of ``key`` and ``alpha`` convolved with
    ``taps`` along W, then along H, zero outside the plane.

    x (N, C, H, W); grid (N, 2, 3), rows y and x; taps (2r+1,); both in x's dtype;
    key an int in [0, 2**64), or None (and alpha, taps unused) for no field;
    out (N, C, H, W).
    """
    n, c, h, w = x.shape
    i = np.arange(h, dtype=x.dtype)[None, :, None]
    j = np.arange(w, dtype=x.dtype)[None, None, :]
    g = grid[:, :, :, None, None]
    src_y = (g[:, 0, 0] * i + g[:, 0, 2]) + g[:, 0, 1] * j  # (N, H, W)
    src_x = (g[:, 1, 0] * i + g[:, 1, 2]) + g[:, 1, 1] * j
    if key is not None:
        field = _blur(elastic_noise(key, (n, 2, h, w), alpha, x.dtype), taps)
        src_y += field[:, 0]
        src_x += field[:, 1]
    return bilinear_sample(x, src_y, src_x)
