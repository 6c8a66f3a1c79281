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
def _blur_body(field, taps, padded_rows, padded_cols, along_h, out):
    """Blur along H, transpose, blur along H again (the former W), transpose back.

    A plane sits in ``padded_rows`` (H + 2r rows of W, zero rows above and
    below), so the blur along H is one contiguous loop over the whole plane
    per tap (:func:`_shifted_sum`); its transpose goes into ``padded_cols``
    (W + 2r rows of H) for the second pass.
    """
    n, h, w = field.shape
    r = taps.size // 2
    for s in range(n):
        plane = padded_rows[r * w:(r + h) * w]
        for i in range(h):
            for j in range(w):
                plane[i * w + j] = field[s, i, j]
        _shifted_sum(padded_rows, taps, w, along_h)
        turned = padded_cols[r * h:(r + w) * h]
        for i in range(h):
            for j in range(w):
                turned[j * h + i] = along_h[i * w + j]
        _shifted_sum(padded_cols, taps, h, along_h)
        for i in range(h):
            for j in range(w):
                out[s, i, j] = along_h[j * h + i]


@jit
def _shifted_sum(src, taps, step, dst):
    """``dst[m] = sum_k taps[k] * src[m + k * step]``: a 1-D convolution of a flat buffer,
    four taps per sweep over ``dst``."""
    length = dst.size
    first = src[:length]
    tap = taps[0]
    for m in range(length):
        dst[m] = tap * first[m]
    k = 1
    while k + 4 <= taps.size:
        s0 = src[k * step:k * step + length]
        s1 = src[(k + 1) * step:(k + 1) * step + length]
        s2 = src[(k + 2) * step:(k + 2) * step + length]
        s3 = src[(k + 3) * step:(k + 3) * step + length]
        t0, t1, t2, t3 = taps[k], taps[k + 1], taps[k + 2], taps[k + 3]
        for m in range(length):
            dst[m] += (t0 * s0[m] + t1 * s1[m]) + (t2 * s2[m] + t3 * s3[m])
        k += 4
    for k in range(k, taps.size):
        shifted = src[k * step:k * step + length]
        tap = taps[k]
        for m in range(length):
            dst[m] += tap * shifted[m]


@jit
def _blur_span(lo, hi, field, taps, out):
    """Samples ``lo:hi``, with their own flat buffers (zero borders set once)."""
    field, out = field[lo:hi], out[lo:hi]
    h, w = field.shape[1], field.shape[2]
    r = taps.size // 2
    padded_rows = np.zeros((h + 2 * r) * w, field.dtype)
    padded_cols = np.zeros((w + 2 * r) * h, field.dtype)
    along_h = np.empty(h * w, field.dtype)
    _blur_body(field, taps, padded_rows, padded_cols, along_h, out)


_separable_blur = spans(_blur_span, "field.shape[0]",
                        "field.shape[1] * field.shape[2] * taps.size * 2")


def separable_blur(field: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Every (H, W) plane of ``field`` (N, H, W) convolved with ``taps`` (2r+1,)
    along W, then along H; zero outside the plane."""
    out = np.empty_like(field)
    _separable_blur(field, taps, out)
    return out


@jit
def _sample_body(x, src_y, src_x, padded, out):
    """Each sample copied into ``padded`` (C planes of (H + 2) x (W + 2), flat, zero
    border of one pixel): every point with a corner in the image reads its four
    corners there, the others read the border and are zeroed by a select, so the
    loop over a row has no branch."""
    n, c, h, w = x.shape
    wide = w + 2
    plane = (h + 2) * wide
    zero, one = x.dtype.type(0), x.dtype.type(1)
    low, height, width = x.dtype.type(-1), x.dtype.type(h), x.dtype.type(w)  # no widening
    for s in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    padded[ch * plane + (i + 1) * wide + j + 1] = x[s, ch, i, j]
        for ch in range(c):
            image = padded[ch * plane:(ch + 1) * plane]
            for i in range(out.shape[2]):
                row_y, row_x, dst = src_y[s, i], src_x[s, i], out[s, ch, i]
                for j in range(out.shape[3]):
                    sy, sx = row_y[j], row_x[j]
                    fy, fx = np.floor(sy), np.floor(sx)
                    inside = (fy >= low) & (fy < height) & (fx >= low) & (fx < width)  # NaN: no
                    wy, wx = sy - fy, sx - fx
                    at = (int(fy) + 1) * wide + int(fx) + 1 if inside else 0
                    top = (one - wx) * image[at] + wx * image[at + 1]
                    bottom = (one - wx) * image[at + wide] + wx * image[at + wide + 1]
                    value = (one - wy) * top + wy * bottom
                    dst[j] = value if inside else zero


@jit
def _sample_span(lo, hi, x, src_y, src_x, out):
    """Samples ``lo:hi``, with their own padded image (zero border set once)."""
    x, src_y, src_x, out = x[lo:hi], src_y[lo:hi], src_x[lo:hi], out[lo:hi]
    padded = np.zeros(x.shape[1] * (x.shape[2] + 2) * (x.shape[3] + 2), x.dtype)
    _sample_body(x, src_y, src_x, padded, out)


_bilinear_sample = spans(_sample_span, "x.shape[0]",
                         "out.shape[1] * out.shape[2] * out.shape[3] * 16")


def bilinear_sample(x: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """``out[n, c, i, j]`` = ``x[n, c]`` read at the point ``(src_y, src_x)[n, i, j]``
    by bilinear interpolation, zero outside the image.

    x (N, C, H, W); src_y, src_x (N, Ho, Wo) in x's pixel coordinates; out (N, C, Ho, Wo).
    """
    out = np.empty((x.shape[0], x.shape[1], *src_y.shape[1:]), dtype=x.dtype)
    _bilinear_sample(x, src_y, src_x, out)
    return out
