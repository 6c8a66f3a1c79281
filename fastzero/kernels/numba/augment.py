"""Image warping for data augmentation: the warp of images by an affine map plus a
displacement field of blurred noise, and bilinear resampling at given points.

Both kernels split the batch among the threads: each thread owns whole
samples of the output, so nothing is shared and the result does not depend
on the thread count.
"""
from __future__ import annotations

import numpy as np

from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._parallel import spans


@jit
def _blur_plane(plane, taps, wide_rows, tall_rows, along_w, out):
    """``plane`` (H, W) blurred by ``taps`` along W, then along H, into ``out`` (H, W):
    each pass one contiguous shifted sum over the whole plane (:func:`_shifted_sum`).

    Along W, the rows sit in ``wide_rows`` one after another with ``r`` zeros
    before each and after the last (rows of W + r), so a shift of the flat
    buffer by one element shifts every row at once and a window never reaches
    the next row; the sums that land on the zeros are not read. Along H, the
    rows of that result sit in ``tall_rows`` (H + 2r rows of W, zero rows above
    and below), where a shift by W moves the plane by one row.
    """
    h, w = plane.shape
    r = taps.size // 2
    wide = w + r
    for i in range(h):
        row, src = wide_rows[r + i * wide:r + i * wide + w], plane[i]
        for j in range(w):
            row[j] = src[j]
    _shifted_sum(wide_rows, taps, 1, along_w)
    for i in range(h):
        row, src = tall_rows[(r + i) * w:(r + i + 1) * w], along_w[i * wide:i * wide + w]
        for j in range(w):
            row[j] = src[j]
    _shifted_sum(tall_rows, taps, w, out.reshape(h * w))


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
def _pad_images(x, padded):
    """The C planes of one sample ``x`` (C, H, W) into ``padded``: flat planes of
    (H + 2) x (W + 2) whose one-pixel border stays zero."""
    c, h, w = x.shape
    wide = w + 2
    plane = (h + 2) * wide
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                padded[ch * plane + (i + 1) * wide + j + 1] = x[ch, i, j]


@jit
def _read_bilinear(image, wide, sy, sx, low, height, width):
    """A zero-bordered flat plane (rows of ``wide``) read at ``(sy, sx)`` in the
    unpadded image's coordinates; zero unless a corner lies in the image.

    A point outside reads the border and is zeroed by a select, so a loop over
    a row of points has no branch. ``low, height, width`` are -1, H and W in
    the image's dtype (no widening).
    """
    zero, one = image.dtype.type(0), image.dtype.type(1)
    fy, fx = np.floor(sy), np.floor(sx)
    inside = (fy >= low) & (fy < height) & (fx >= low) & (fx < width)  # NaN: no
    wy, wx = sy - fy, sx - fx
    at = (int(fy) + 1) * wide + int(fx) + 1 if inside else 0
    top = (one - wx) * image[at] + wx * image[at + 1]
    bottom = (one - wx) * image[at + wide] + wx * image[at + wide + 1]
    value = (one - wy) * top + wy * bottom
    return value if inside else zero


@jit
def _sample_body(x, src_y, src_x, padded, out):
    """Each sample's planes padded (:func:`_pad_images`), then read at its points."""
    n, c, h, w = x.shape
    wide = w + 2
    plane = (h + 2) * wide
    low, height, width = x.dtype.type(-1), x.dtype.type(h), x.dtype.type(w)
    for s in range(n):
        _pad_images(x[s], padded)
        for ch in range(c):
            image = padded[ch * plane:(ch + 1) * plane]
            for i in range(out.shape[2]):
                row_y, row_x, dst = src_y[s, i], src_x[s, i], out[s, ch, i]
                for j in range(out.shape[3]):
                    dst[j] = _read_bilinear(image, wide, row_y[j], row_x[j], low, height, width)


@jit
def _sample_span(lo, hi, x, src_y, src_x, out):
    """Samples ``lo:hi``, with their own padded image (zero border set once)."""
    x, src_y, src_x, out = x[lo:hi], src_y[lo:hi], src_x[lo:hi], out[lo:hi]
    padded = np.zeros(x.shape[1] * (x.shape[2] + 2) * (x.shape[3] + 2), x.dtype)
    _sample_body(x, src_y, src_x, padded, out)


_bilinear_sample = spans(_sample_span, "x.shape[0]",
                         "out.shape[1] * out.shape[2] * out.shape[3] * 16")


def bilinear_sample(x: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """``x`` (N, C, H, W) read at the points ``src_y``, ``src_x`` (N, Ho, Wo); the
    contract is on :func:`fastzero.kernels.numpy.augment.bilinear_sample`."""
    out = np.empty((x.shape[0], x.shape[1], *src_y.shape[1:]), dtype=x.dtype)
    _bilinear_sample(x, src_y, src_x, out)
    return out


@jit
def _warp_sample(padded, g, field, has_field, ats, wys, wxs, oks, out):
    """One sample: its planes, already in ``padded``, read at every output pixel
    ``(i, j)``'s point ``g @ (i, j, 1)`` (plus ``field[:, i, j]``) into ``out`` (C, H, W).

    A row of points is worked out first, in the image's dtype and in the
    reference's order: the flat index ``ats`` of each point's top-left corner
    in a padded plane, its weights ``wys``, ``wxs`` and whether it reads the
    image at all (``oks``); that loop has no loads that depend on the data, so
    LLVM vectorises it. A second loop per channel reads the four corners.
    """
    c, h, w = out.shape
    wide = w + 2
    plane = (h + 2) * wide
    real = out.dtype.type
    low, height, width = real(-1), real(h), real(w)
    zero, one = real(0), real(1)
    yi, yj, y0 = g[0, 0], g[0, 1], g[0, 2]
    xi, xj, x0 = g[1, 0], g[1, 1], g[1, 2]
    for i in range(h):
        row_y, row_x = yi * real(i) + y0, xi * real(i) + x0
        for j in range(w):
            sy, sx = row_y + yj * real(j), row_x + xj * real(j)
            if has_field:
                sy += field[0, i, j]
                sx += field[1, i, j]
            fy, fx = np.floor(sy), np.floor(sx)
            inside = (fy >= low) & (fy < height) & (fx >= low) & (fx < width)  # NaN: no
            ats[j] = (int(fy) + 1) * wide + int(fx) + 1 if inside else 0
            wys[j] = sy - fy if inside else zero
            wxs[j] = sx - fx if inside else zero
            oks[j] = inside
        for ch in range(c):
            image, dst = padded[ch * plane:(ch + 1) * plane], out[ch, i]
            for j in range(w):
                at, wy, wx = ats[j], wys[j], wxs[j]
                top = (one - wx) * image[at] + wx * image[at + 1]
                bottom = (one - wx) * image[at + wide] + wx * image[at + wide + 1]
                value = (one - wy) * top + wy * bottom
                dst[j] = value if oks[j] else zero


@jit
def _splitmix64(z):
    """SplitMix64's output for the counter ``z`` (uint64): 64 well-mixed bits."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@jit
def _elastic_noise(key, first_word, alpha, noise):
    """The noise planes ``noise`` (2, H, W) of one sample: its levels are the bytes,
    lowest first, of SplitMix64 of ``key + first_word``, ``key + first_word + 1``, ..."""
    flat = noise.reshape(noise.size)
    real = noise.dtype.type
    scale, offset = real(2 * alpha / 256), real(alpha * 255 / 256)
    byte = np.uint64(255)
    for word in range((flat.size + 7) // 8):
        z = _splitmix64(key + np.uint64(first_word + word))
        for b in range(min(8, flat.size - 8 * word)):
            flat[8 * word + b] = real((z >> np.uint64(8 * b)) & byte) * scale - offset


@jit
def _warp_span(lo, hi, x, grid, key, alpha, taps, has_field, out):
    """Samples ``lo:hi``: each one's noise drawn (:func:`_elastic_noise`) and blurred
    into its field (:func:`_blur_plane`), its image padded, then warped
    (:func:`_warp_sample`); the span's buffers are allocated once, their zero
    borders set once."""
    x, grid, out = x[lo:hi], grid[lo:hi], out[lo:hi]
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    r = taps.size // 2
    words = (2 * h * w + 7) // 8  # per sample
    padded = np.zeros(c * (h + 2) * (w + 2), x.dtype)
    ats, oks = np.zeros(w, np.int64), np.zeros(w, np.bool_)
    wys, wxs = np.zeros(w, x.dtype), np.zeros(w, x.dtype)
    noise = np.empty((2, h, w) if has_field else (2, 0, 0), x.dtype)
    field = np.empty_like(noise)
    wide_rows = np.zeros(r + h * (w + r), x.dtype)
    tall_rows = np.zeros((h + 2 * r) * w, x.dtype)
    along_w = np.empty((h - 1) * (w + r) + w, x.dtype)
    for s in range(x.shape[0]):
        if has_field:
            _elastic_noise(key, (lo + s) * words, alpha, noise)
            for axis in range(2):
                _blur_plane(noise[axis], taps, wide_rows, tall_rows, along_w, field[axis])
        _pad_images(x[s], padded)
        _warp_sample(padded, grid[s], field, has_field, ats, wys, wxs, oks, out[s])


_warp = spans(_warp_span, "x.shape[0]",
              "x.shape[1] * x.shape[2] * x.shape[3] * 20 + x.shape[2] * x.shape[3] * taps.size * 4")


def warp(x: np.ndarray, grid: np.ndarray, key: int | None, alpha: float,
         taps: np.ndarray | None) -> np.ndarray:
    """``x`` (N, C, H, W) warped by ``grid`` (N, 2, 3) plus the elastic field of ``key``,
    ``alpha`` and ``taps``; the contract is on :func:`fastzero.kernels.numpy.augment.warp`."""
    out = np.empty_like(x)
    if key is None:
        _warp(x, grid, np.uint64(0), 0.0, np.ones(1, x.dtype), False, out)
    else:
        _warp(x, grid, np.uint64(key), float(alpha), taps, True, out)
    return out
