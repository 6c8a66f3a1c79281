"""Stride-1 convolution on the vector tiles of :mod:`._vector`, without a patch matrix.

A block of ``nb`` samples is copied into a *plane buffer*: channel ``c``
of the block is plane ``c``, ``L`` elements long, in which sample ``n``
takes ``Hp*Wp`` elements, ``Hp = H + pad`` rows of ``Wp = W + pad``. The
``pad`` zeros after each row are the right border of that row and the left
border of the next, the ``pad`` zero rows after each sample its bottom
border and the top border of the next (with ``pad`` more rows in front of
the first): borders shared, the work on them is smaller. A filter tap ``(c, i, j)`` is then the shift ``c*L + i*Wp + j``,
and output pixel ``(n, oy, ox)`` sits at ``q = n*Hp*Wp + oy*Wp + ox`` of
an output plane: the convolution is :func:`~._vector.conv_tile` over all
``q``, the padded positions computed and dropped when the result is
copied back to ``(N, FN, OH, OW)`` (with the bias). The three products:

* forward: planes of ``x`` padded by ``pad``, filters ``W (FN, C*FH*FW)``;
* ``dx``: the same product on planes of ``dout`` padded by ``FH-1-pad``
  (``FW-1-pad``) with the filters flipped and transposed,
  ``W'[c, (f, i, j)] = W[f, c, FH-1-i, FW-1-j]``: a stride-1 ``dx`` *is* a
  convolution of ``dout``, so there is no col2im scatter;
* ``dW[f, (c, i, j)] = sum_q dF[f, q] * xp[c*L + i*Wp + j + q]``
  (:func:`~._vector.dot_tile`), ``dF`` being ``dout`` laid out on the
  planes of ``x`` with zeros outside ``OH x OW``.

Where the pixel tiles would compute many positions that are dropped (small
maps: an 8x8 map with pad 1 has 81 positions per 64 outputs) and the
product's output channels fill whole groups of ``CHANNEL_V * L``
(:func:`_channel_tiles`), it runs on the channel tiles of :mod:`._vector`
instead, which vectorise over output channels and take a *list* of output
pixels (:func:`_pixels`): only wanted outputs are computed, each written
straight into its ``(N, C, H, W)`` place. Forward and ``dx`` read the same
planes as above; the weight gradient sums ``dW[k, f] += xp[pix[q] + offs[k]]
* dF[q, f]`` over the outputs ``q`` with ``dout`` laid out channels last.

Remainders are padding, not extra code: filter rows are padded with zero
filters to a multiple of the tile's rows, taps with repeats of tap 0 whose
results are dropped, pixels to whole tiles (reading into the next plane or
the zero tail, only for positions that are dropped). A block is about
:data:`BLOCK_BYTES` of planes so that they stay in the L2 cache while all
filters are applied. The threads split the batch into parts
(:func:`parts`), run in one ``prange`` region, each with its own buffers;
each part owns its samples of ``out`` and ``dx`` and sums its own ``dW``
and ``db`` in sample order, reduced in part order: bitwise reproducible
for a fixed thread count.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import prange

from fastzero.kernels._geometry import output_size
from fastzero.kernels.numba._jit import jit, pjit
from fastzero.kernels.numba._slices import slices
from fastzero.kernels.numba._vector import (CHANNEL_R, CHANNEL_V, CONV_RF, CONV_V, DOT_RF, DOT_RK, channel_conv_tile,
                                            channel_dot_tile, conv_tile, dot_tile, lanes)

#: Bytes of input and output planes per block of samples.
BLOCK_BYTES = 1 << 19


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@jit
def _scatter(src, top, left, Hp, Wp, L, buf):
    """``buf[c*L + n*Hp*Wp + (y+top)*Wp + x+left] = src[n, c, y, x]``; the rest of ``buf`` untouched."""
    N, C, H, W = src.shape
    for c in range(C):
        for n in range(N):
            for y in range(H):
                dst = buf[c * L + n * Hp * Wp + (y + top) * Wp + left:]
                row = src[n, c, y]
                for x in range(W):
                    dst[x] = row[x]


@jit
def _zero_from(buf, planes, L, start):
    """Zero ``buf[c*L + start : (c+1)*L]`` for every plane ``c < planes``."""
    for c in range(planes):
        buf[c * L + start:(c + 1) * L] = 0


@jit
def _gather(tmp, L, Hp, Wp, b, out):
    """``out[n, f, y, x] = tmp[f*L + n*Hp*Wp + y*Wp + x] + b[f]``."""
    N, F, H, W = out.shape
    for n in range(N):
        for f in range(F):
            bf = b[f]
            for y in range(H):
                src = tmp[f * L + n * Hp * Wp + y * Wp:]
                dst = out[n, f, y]
                for x in range(W):
                    dst[x] = src[x] + bf


@jit
def _conv_planes(a, offs, w, rows, nq, L, out):
    """``out[r*L + q] = sum_k w[k*rows + r] * a[offs[k] + q]`` for ``r < rows``, ``q < nq`` (whole tiles)."""
    step = CONV_V * (64 // a.itemsize)
    for q0 in range(0, nq, step):
        for r0 in range(0, rows, CONV_RF):
            conv_tile(a, q0, offs, w, r0, rows, out, r0 * L + q0, L)


@jit
def _add_dot_planes(d, rows, a, offs, nq, L, dw):
    """``dw[r*Kp + k] += sum_q d[r*L + q] * a[offs[k] + q]`` for ``r < rows``, ``q < nq`` (whole vectors)."""
    Kp = offs.size
    nv = nq // (64 // a.itemsize)
    for r0 in range(0, rows, DOT_RF):
        for k0 in range(0, Kp, DOT_RK):
            dot_tile(d, r0 * L, L, a, 0, offs, k0, nv, dw, r0 * Kp + k0, Kp)


@jit
def _add_bias_grad(dout, db):
    """``db[f] += dout[:, f].sum()``, samples in order; ``dout`` is C-contiguous (each plane one run)."""
    N, F, H, W = dout.shape
    flat = dout.ravel()
    for n in range(N):
        for f in range(F):
            plane = flat[(n * F + f) * H * W:(n * F + f + 1) * H * W]
            s = dout.dtype.type(0)
            for i in range(plane.size):
                s += plane[i]
            db[f] += s


@jit
def _pixels(m, OH, OW, Hp, Wp, per, pix, opix):
    """Where the outputs ``(n, oy, ox)`` of ``m`` samples read in the planes and write in ``(m, F, OH, OW)``.

    ``pix = n*Hp*Wp + oy*Wp + ox`` and ``opix = n*per + oy*OW + ox``, in
    sample, row, column order; the lists are padded to whole tiles with
    the last output (computed again, written with the same value).
    """
    q = 0
    for n in range(m):
        for y in range(OH):
            for x in range(OW):
                pix[q] = n * Hp * Wp + y * Wp + x
                opix[q] = n * per + y * OW + x
                q += 1
    for r in range(q, pix.size):
        pix[r] = pix[q - 1]
        opix[r] = opix[q - 1]


@jit
def _channel_conv(a, pix, opix, nq, offs, w, ldw, bias, out, ldc):
    """``out[opix[q] + c*ldc] = bias[c] + sum_k a[pix[q] + offs[k]] * w[k*ldw + c]`` for ``q < nq`` (whole tiles), ``c < ldw``."""
    group = CHANNEL_V * (64 // a.itemsize)
    for q0 in range(0, nq, CHANNEL_R):
        for c0 in range(0, ldw, group):
            channel_conv_tile(a, pix, opix, q0, offs, w, c0, ldw, bias, out, ldc)


@jit
def _channels_last(src, d):
    """``d[((n*H + y)*W + x)*F + f] = src[n, f, y, x]``."""
    N, F, H, W = src.shape
    for n in range(N):
        for f in range(F):
            for y in range(H):
                row = src[n, f, y]
                dst = d[((n * H + y) * W) * F + f:]
                for x in range(W):
                    dst[x * F] = row[x]


@jit
def _add_channel_dots(a, pix, nq, offs, d, F, dwt):
    """``dwt[k*F + f] += sum_{q < nq} a[pix[q] + offs[k]] * d[q*F + f]`` for every tap ``k < offs.size`` (whole tiles)."""
    group = CHANNEL_V * (64 // a.itemsize)
    for k0 in range(0, offs.size, CHANNEL_R):
        for c0 in range(0, F, group):
            channel_dot_tile(a, pix, 0, nq, offs, k0, d, c0, F, dwt, F)


@jit
def _forward_blocks(x, pad, Hp, Wp, nb, L, w, rows, offs, b, buf, tmp, out):
    """:func:`conv_forward` of the samples of ``x``, ``nb`` at a time, through the plane buffer ``buf``."""
    tile = CONV_V * (64 // x.itemsize)
    for n0 in range(0, x.shape[0], nb):
        n1 = min(x.shape[0], n0 + nb)
        _scatter(x[n0:n1], pad, pad, Hp, Wp, L, buf)
        _conv_planes(buf, offs, w, rows, -(-(n1 - n0) * Hp * Wp // tile) * tile, L, tmp)
        _gather(tmp, L, Hp, Wp, b, out[n0:n1])


@jit
def _forward_channel_blocks(x, pad, Hp, Wp, nb, L, w, offs, b, buf, pix, opix, out):
    """:func:`_forward_blocks` on the channel tiles: only the outputs computed, written in place."""
    N, FN, OH, OW = out.shape
    per = FN * OH * OW
    flat = out.ravel()
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        _scatter(x[n0:n1], pad, pad, Hp, Wp, L, buf)
        _pixels(n1 - n0, OH, OW, Hp, Wp, per, pix, opix)
        nq = -(-(n1 - n0) * OH * OW // CHANNEL_R) * CHANNEL_R
        _channel_conv(buf, pix, opix, nq, offs, w, FN, b, flat[n0 * per:n1 * per], OH * OW)


@jit
def _backward_blocks(x, dout, pad, Hp, Wp, Hd, Wd, nb, Lx, Ld, wt, rows, offs_x, offs_d,
                     xbuf, dF, dbuf, tmp, pix, opix, dw, db, need_dx, dx):
    """:func:`conv_backward` of the samples of ``x``, ``nb`` at a time: ``dx`` (if ``need_dx``), and sums
    into ``dw`` and ``db``.

    Each product takes the pixel tiles, or the channel tiles: the weight
    gradient when ``dF`` is ``(outputs, FN)``, channels last (then ``dw``
    is ``(taps, FN)``), ``dx`` when ``rows == 0``.
    """
    N, C, H, W = x.shape
    FN, OH, OW = dout.shape[1], dout.shape[2], dout.shape[3]
    FH, FW = Hd - OH + 1 + pad, Wd - OW + 1 + pad
    n = 64 // x.itemsize
    tile = CONV_V * n
    channel_dw = dF.ndim == 2
    no_bias = np.zeros(C, dtype=x.dtype)
    dx_flat = dx.ravel()
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        m = n1 - n0
        _scatter(x[n0:n1], pad, pad, Hp, Wp, Lx, xbuf)
        if channel_dw:
            _pixels(m, OH, OW, Hp, Wp, 0, pix, opix)
            _channels_last(dout[n0:n1], dF.ravel())
            _add_channel_dots(xbuf, pix, m * OH * OW, offs_x, dF.ravel(), FN, dw.ravel())
        else:
            _scatter(dout[n0:n1], 0, 0, Hp, Wp, Lx, dF.ravel())
            if m < nb:  # the samples of a fuller block must not count
                _zero_from(dF.ravel(), FN, Lx, m * Hp * Wp)
            _add_dot_planes(dF.ravel(), dw.shape[0], xbuf, offs_x, -(-m * Hp * Wp // n) * n, Lx, dw.ravel())
        _add_bias_grad(dout[n0:n1], db)
        if not need_dx:
            continue
        _scatter(dout[n0:n1], FH - 1 - pad, FW - 1 - pad, Hd, Wd, Ld, dbuf)
        if rows == 0:
            per = C * H * W
            _pixels(m, H, W, Hd, Wd, per, pix, opix)
            _channel_conv(dbuf, pix, opix, -(-m * H * W // CHANNEL_R) * CHANNEL_R, offs_d, wt, C, no_bias,
                          dx_flat[n0 * per:n1 * per], H * W)
        else:
            _conv_planes(dbuf, offs_d, wt, rows, -(-m * Hd * Wd // tile) * tile, Ld, tmp)
            _gather(tmp, Ld, Hd, Wd, no_bias, dx[n0:n1])


@pjit
def _forward_parts(bounds, x, pad, Hp, Wp, nb, L, w, rows, offs, b, bufs, tmps, out):
    """:func:`_forward_blocks` of the samples ``bounds[s, 0]:bounds[s, 1]`` for every part ``s``, in parallel."""
    for s in prange(bounds.shape[0]):
        s0, s1 = bounds[s, 0], bounds[s, 1]
        _forward_blocks(x[s0:s1], pad, Hp, Wp, nb, L, w, rows, offs, b, bufs[s], tmps[s], out[s0:s1])


@pjit
def _forward_channel_parts(bounds, x, pad, Hp, Wp, nb, L, w, offs, b, bufs, pixs, opixs, out):
    """:func:`_forward_channel_blocks` of every part of ``bounds``, in parallel."""
    for s in prange(bounds.shape[0]):
        s0, s1 = bounds[s, 0], bounds[s, 1]
        _forward_channel_blocks(x[s0:s1], pad, Hp, Wp, nb, L, w, offs, b, bufs[s], pixs[s], opixs[s], out[s0:s1])


@pjit
def _backward_parts(bounds, x, dout, pad, Hp, Wp, Hd, Wd, nb, Lx, Ld, wt, rows, offs_x, offs_d,
                    xbufs, dFs, dbufs, tmps, pixs, opixs, dws, dbs, need_dx, dx):
    """:func:`_backward_blocks` of every part of ``bounds``, in parallel; part ``s`` sums into ``dws[s]``, ``dbs[s]``."""
    for s in prange(bounds.shape[0]):
        s0, s1 = bounds[s, 0], bounds[s, 1]
        _backward_blocks(x[s0:s1], dout[s0:s1], pad, Hp, Wp, Hd, Wd, nb, Lx, Ld, wt, rows, offs_x, offs_d,
                         xbufs[s], dFs[s], dbufs[s], tmps[s], pixs[s], opixs[s], dws[s], dbs[s], need_dx,
                         dx[s0:s1])


class _Planes:
    """Geometry of the plane buffers of one product: ``ch`` channels of ``Hp x Wp`` per sample."""

    def __init__(self, ch: int, Hp: int, Wp: int, nb: int, fh: int, fw: int, itemsize: int) -> None:
        self.ch, self.Hp, self.Wp = ch, Hp, Wp
        tile = CONV_V * lanes(itemsize)
        self.nq = _round_up(nb * Hp * Wp, tile)  # output positions computed per block
        self.L = self.nq + (fh - 1) * Wp + fw  # a plane holds every position a tile reads
        self.size = ch * self.L + tile

    def offsets(self, fh: int, fw: int, count: int = 0) -> np.ndarray:
        """Tap shifts ``c*L + i*Wp + j`` in ``(c, i, j)`` order, padded with zeros to ``count``."""
        return _offsets(self.ch, self.L, self.Wp, fh, fw, count)


@functools.lru_cache(maxsize=64)
def _offsets(ch: int, L: int, Wp: int, fh: int, fw: int, count: int) -> np.ndarray:
    c, i, j = np.meshgrid(np.arange(ch), np.arange(fh), np.arange(fw), indexing="ij")
    offs = (c * L + i * Wp + j).ravel().astype(np.int64)
    offs = np.concatenate([offs, np.zeros(max(0, count - offs.size), np.int64)])
    offs.flags.writeable = False
    return offs


@functools.lru_cache(maxsize=256)
def _block_size(n: int, per_sample: int, positions: int, tile: int) -> int:
    """Samples per block for ``n`` samples of ``per_sample`` bytes and ``positions`` outputs each.

    At most :data:`BLOCK_BYTES` of planes; among those sizes, the one that
    computes the fewest positions in all (each block is rounded up to whole
    tiles), the largest of equals.
    """
    best, best_cost = 1, None
    for nb in range(1, max(1, min(n, BLOCK_BYTES // per_sample)) + 1):
        cost = n // nb * _round_up(nb * positions, tile) + _round_up(n % nb * positions, tile)
        if best_cost is None or cost <= best_cost:
            best, best_cost = nb, cost
    return best


def _padded_columns(w2: np.ndarray, rows: int) -> np.ndarray:
    """``w2 (R, K)`` with zero rows appended up to ``rows``, transposed to ``(K, rows)``, flat."""
    out = np.zeros((w2.shape[1], rows), dtype=w2.dtype)
    out[:, :w2.shape[0]] = w2.T
    return out.ravel()


#: The pixel tiles compute every position of the planes, borders included;
#: a product whose planes have more than this many positions per output
#: takes the channel tiles, if its output channels fill them.
CHANNEL_WASTE = 1.1


def _channel_tiles(channels: int, plane: int, outputs: int, itemsize: int) -> bool:
    """Whether a product with ``channels`` outputs per pixel takes the channel tiles.

    ``plane`` is the positions per sample the pixel tiles would compute,
    ``outputs`` those wanted. The channel tiles compute only the wanted
    ones, but need whole groups of ``CHANNEL_V * L`` output channels.
    """
    return channels % (CHANNEL_V * lanes(itemsize)) == 0 and plane > CHANNEL_WASTE * outputs


def _pixel_lists(parts: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Buffers for :func:`_pixels` of ``count`` outputs per part, rounded up to whole channel tiles."""
    size = _round_up(max(count, 1), CHANNEL_R)
    return np.empty((parts, size), np.int64), np.empty((parts, size), np.int64)


def parts(size: int, ops: int) -> tuple[np.ndarray, int]:
    """The parts of the batch (``(T, 2)`` bounds, :func:`~._slices.slices`) and the samples of the largest.

    The kernels run the parts in one ``prange`` region on numba's threads
    (with no BLAS in it, nothing to hand to another thread pool), or on the
    calling thread when there is one part.
    """
    bounds = np.array(slices(size, ops), dtype=np.int64)
    return bounds, int((bounds[:, 1] - bounds[:, 0]).max())


def conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """Stride-1 convolution ``(N, FN, OH, OW)`` of ``x (N, C, H, W)`` by ``W (FN, C, FH, FW)`` plus ``b``."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    Hp, Wp = H + pad, Wd + pad
    OH, OW = output_size(H, FH, 1, pad), output_size(Wd, FW, 1, pad)
    out = np.empty((N, FN, OH, OW), dtype=x.dtype)
    channels = _channel_tiles(FN, Hp * Wp, OH * OW, x.itemsize)
    FNp = FN if channels else _round_up(FN, CONV_RF)
    w = _padded_columns(W.reshape(FN, -1), FNp)
    bounds, most = parts(N, out.size * C * FH * FW)
    T = len(bounds)
    if channels:
        nb = _block_size(most, C * Hp * Wp * x.itemsize, OH * OW, CHANNEL_R)
        g = _Planes(C, Hp, Wp, nb, FH, FW, x.itemsize)
        pixs, opixs = _pixel_lists(T, nb * OH * OW)
        bufs = np.zeros((T, g.size), dtype=x.dtype)
        if T == 1:
            _forward_channel_blocks(x, pad, Hp, Wp, nb, g.L, w, g.offsets(FH, FW), b, bufs[0], pixs[0], opixs[0], out)
        else:
            _forward_channel_parts(bounds, x, pad, Hp, Wp, nb, g.L, w, g.offsets(FH, FW), b, bufs, pixs, opixs, out)
        return out
    nb = _block_size(most, (C + FNp) * Hp * Wp * x.itemsize, Hp * Wp, CONV_V * lanes(x.itemsize))
    g = _Planes(C, Hp, Wp, nb, FH, FW, x.itemsize)
    bufs, tmps = np.zeros((T, g.size), dtype=x.dtype), np.empty((T, FNp * g.L), dtype=x.dtype)
    if T == 1:
        _forward_blocks(x, pad, Hp, Wp, nb, g.L, w, FNp, g.offsets(FH, FW), b, bufs[0], tmps[0], out)
    else:
        _forward_parts(bounds, x, pad, Hp, Wp, nb, g.L, w, FNp, g.offsets(FH, FW), b, bufs, tmps, out)
    return out


def conv_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, pad: int, need_dx: bool = True):
    """Gradients ``(dx, dW, db)`` of :func:`conv_forward` given ``dout (N, FN, OH, OW)``; ``dx`` None
    when not ``need_dx``, with ``dW`` and ``db`` as they are with it.

    Needs ``pad < min(FH, FW)`` (``dx`` is a convolution of ``dout`` padded by ``FH-1-pad``).
    """
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    _, _, OH, OW = dout.shape
    K = C * FH * FW
    Hp, Wp = H + pad, Wd + pad  # planes of x, and of dout for dW
    Hd, Wdd = OH + FH - 1 - pad, OW + FW - 1 - pad  # planes of dout for dx
    channel_dw = _channel_tiles(FN, Hp * Wp, OH * OW, x.itemsize)
    channel_dx = _channel_tiles(C, Hd * Wdd, H * Wd, x.itemsize)
    FNp = FN if channel_dw else _round_up(FN, DOT_RF)
    Kp = _round_up(K, CHANNEL_R if channel_dw else DOT_RK)
    Cp = C if channel_dx else _round_up(C, CONV_RF)
    wt = _padded_columns(np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(C, -1), Cp)
    dout = np.ascontiguousarray(dout)
    tile = CHANNEL_R if channel_dx else CONV_V * lanes(x.itemsize)
    per_sample = ((C + FNp) * Hp * Wp + (FN + Cp) * Hd * Wdd) * x.itemsize
    bounds, most = parts(N, 2 * dout.size * K)
    T = len(bounds)
    nb = _block_size(most, per_sample, H * Wd if channel_dx else Hd * Wdd, tile)
    gx = _Planes(C, Hp, Wp, nb, FH, FW, x.itemsize)
    gd = _Planes(FN, Hd, Wdd, nb, FH, FW, x.itemsize)
    xbufs, dbufs = np.zeros((T, gx.size), dtype=x.dtype), np.zeros((T, gd.size if need_dx else 0), dtype=x.dtype)
    if channel_dw:
        dFs, dws = np.empty((T, nb * OH * OW, FN), dtype=x.dtype), np.zeros((T, Kp, FN), dtype=x.dtype)
    else:
        dFs, dws = np.zeros((T, FNp * gx.L), dtype=x.dtype), np.zeros((T, FNp, Kp), dtype=x.dtype)
    tmps = np.empty((T, Cp * gd.L if need_dx and not channel_dx else 0), dtype=x.dtype)
    pixs, opixs = _pixel_lists(T, nb * max(OH * OW if channel_dw else 0, H * Wd if channel_dx else 0))
    dbs = np.zeros((T, FN), dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype)  # left unwritten when not need_dx
    geometry = (pad, Hp, Wp, Hd, Wdd, nb, gx.L, gd.L, wt, 0 if channel_dx else Cp, gx.offsets(FH, FW, Kp),
                gd.offsets(FH, FW))
    if T == 1:
        _backward_blocks(x, dout, *geometry, xbufs[0], dFs[0], dbufs[0], tmps[0], pixs[0], opixs[0], dws[0],
                         dbs[0], need_dx, dx)
    else:
        _backward_parts(bounds, x, dout, *geometry, xbufs, dFs, dbufs, tmps, pixs, opixs, dws, dbs, need_dx, dx)
    dW, db = dws[0], dbs[0]
    for s in range(1, T):  # in part order: the same bits for the same thread count
        dW += dws[s]
        db += dbs[s]
    dW = dW[:K].T if channel_dw else dW[:FN, :K]
    return (dx if need_dx else None), np.ascontiguousarray(dW).reshape(W.shape), db
