"""Image warping for data augmentation: a separable blur and bilinear resampling.

Both kernels split the batch among the threads: each thread owns whole
samples of the output, so nothing is shared and the result does not depend
on the thread count.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from fastzero.kernels.numba._jit import jit, pjit
from fastzero.kernels.numba._parallel import n_spans, span


@jit
def _blur_body(field, taps, rows, out):
    n, h, w = field.shape
    r = taps.size // 2
    zero = field.dtype.type(0)
    for s in range(n):
        for i in range(h):
            for j in range(w):
                acc = zero
                for k in range(taps.size):
                    jj = j + k - r
                    if 0 <= jj < w:
                        acc += taps[k] * field[s, i, jj]
                rows[s, i, j] = acc
        for i in range(h):
            for j in range(w):
                acc = zero
                for k in range(taps.size):
                    ii = i + k - r
                    if 0 <= ii < h:
                        acc += taps[k] * rows[s, ii, j]
                out[s, i, j] = acc


@pjit
def _separable_blur(field, taps, rows, out):
    n = field.shape[0]
    k = n_spans(n, field.shape[1] * field.shape[2] * taps.size * 4)
    if k == 1:
        _blur_body(field, taps, rows, out)
    else:
        for s in prange(k):
            lo, hi = span(s, k, n)
            _blur_body(field[lo:hi], taps, rows[lo:hi], out[lo:hi])


def separable_blur(field: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Every (H, W) plane of ``field`` (N, H, W) convolved with ``taps`` (2r+1,)
    along W, then along H; zero outside the plane."""
    out = np.empty_like(field)
    _separable_blur(field, taps, np.empty_like(field), out)
    return out


@jit
def _sample_body(x, src_y, src_x, out):
    n, c, h, w = x.shape
    one = x.dtype.type(1)
    for s in range(n):
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    out[s, ch, i, j] = 0
                fy, fx = np.floor(src_y[s, i, j]), np.floor(src_x[s, i, j])
                if not (-1 <= fy < h and -1 <= fx < w):  # also False for NaN
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


@pjit
def _bilinear_sample(x, src_y, src_x, out):
    n = x.shape[0]
    k = n_spans(n, x.shape[1] * x.shape[2] * x.shape[3] * 16)
    if k == 1:
        _sample_body(x, src_y, src_x, out)
    else:
        for s in prange(k):
            lo, hi = span(s, k, n)
            _sample_body(x[lo:hi], src_y[lo:hi], src_x[lo:hi], out[lo:hi])


def bilinear_sample(x: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """``out[n, c, i, j]`` = ``x[n, c]`` read at the point ``(src_y, src_x)[n, i, j]``
    by bilinear interpolation, zero outside the image.

    x (N, C, H, W); src_y, src_x (N, H, W) in pixel coordinates; out like x.
    """
    out = np.empty_like(x)
    _bilinear_sample(x, src_y, src_x, out)
    return out
