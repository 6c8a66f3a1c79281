"""Image warping for data augmentation: a separable blur and bilinear resampling.

Both kernels split the batch among the threads: each thread owns whole
samples of the output, so nothing is shared and the result does not depend
on the thread count.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans


@jit
def _blur_body(field, taps, padded_rows, padded_cols, out):
    """Row pass from a zero-padded copy, then column pass from another: no
    bounds tests in the inner loops, which run along contiguous rows."""
    n, h, w = field.shape
    r = taps.size // 2
    for s in range(n):
        padded_rows[:, r:r + w] = field[s]
        for i in range(h):
            row = padded_cols[r + i]
            row[:] = 0
            for k in range(taps.size):
                tap = taps[k]
                src = padded_rows[i]
                for j in range(w):
                    row[j] += tap * src[j + k]
        for i in range(h):
            dst = out[s, i]
            dst[:] = 0
            for k in range(taps.size):
                tap = taps[k]
                src = padded_cols[i + k]
                for j in range(w):
                    dst[j] += tap * src[j]


@jit
def _blur_span(lo, hi, field, taps, out):
    """Samples ``lo:hi``, with their own padded buffers (zero borders set once)."""
    field, out = field[lo:hi], out[lo:hi]
    h, w = field.shape[1], field.shape[2]
    r = taps.size // 2
    padded_rows = np.zeros((h, w + 2 * r), field.dtype)
    padded_cols = np.zeros((h + 2 * r, w), field.dtype)
    _blur_body(field, taps, padded_rows, padded_cols, out)


_separable_blur = spans(_blur_span, "field.shape[0]",
                        "field.shape[1] * field.shape[2] * taps.size * 2")


def separable_blur(field: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Every (H, W) plane of ``field`` (N, H, W) convolved with ``taps`` (2r+1,)
    along W, then along H; zero outside the plane."""
    out = np.empty_like(field)
    _separable_blur(field, taps, out)
    return out


@jit
def _sample_body(lo, hi, x, src_y, src_x, out):
    x, src_y, src_x, out = x[lo:hi], src_y[lo:hi], src_x[lo:hi], out[lo:hi]
    n, c, h, w = x.shape
    one = x.dtype.type(1)
    low, height, width = x.dtype.type(-1), x.dtype.type(h), x.dtype.type(w)  # no widening
    for s in range(n):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                for ch in range(c):
                    out[s, ch, i, j] = 0
                fy, fx = np.floor(src_y[s, i, j]), np.floor(src_x[s, i, j])
                if not (low <= fy < height and low <= fx < width):  # also False for NaN
                    continue
                wy, wx = src_y[s, i, j] - fy, src_x[s, i, j] - fx
                y0, x0 = int(fy), int(fx)
                for dy in range(2):
                    yy = y0 + dy
                    if yy < 0 or yy >= h:
                        continue
                    wgt_y = wy if dy else one - wy
                    for dx in range(2):
                        xx = x0 + dx
                        if xx < 0 or xx >= w:
                            continue
                        weight = wgt_y * (wx if dx else one - wx)
                        for ch in range(c):
                            out[s, ch, i, j] += weight * x[s, ch, yy, xx]


_bilinear_sample = spans(_sample_body, "x.shape[0]",
                         "out.shape[1] * out.shape[2] * out.shape[3] * 16")


def bilinear_sample(x: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """``out[n, c, i, j]`` = ``x[n, c]`` read at the point ``(src_y, src_x)[n, i, j]``
    by bilinear interpolation, zero outside the image.

    x (N, C, H, W); src_y, src_x (N, Ho, Wo) in x's pixel coordinates; out (N, C, Ho, Wo).
    """
    out = np.empty((x.shape[0], x.shape[1], *src_y.shape[1:]), dtype=x.dtype)
    _bilinear_sample(x, src_y, src_x, out)
    return out
