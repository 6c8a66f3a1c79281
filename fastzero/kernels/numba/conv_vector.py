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

Remainders are padding, not extra code: filter rows are padded with zero
filters to a multiple of the tile's rows, taps with repeats of tap 0 whose
results are dropped, pixels to whole tiles (reading into the next plane or
the zero tail, only for positions that are dropped). A block is about
:data:`BLOCK_BYTES` of planes so that they stay in the L2 cache while all
filters are applied. The threads split the batch
(:func:`~._slices.map_slices`); each owns its samples of ``out`` and
``dx`` and sums its own ``dW`` and ``db`` in sample order, reduced in
slice order: bitwise reproducible for a fixed thread count.
"""
from __future__ import annotations

import functools

import numpy as np

from fastzero.kernels._geometry import output_size
from fastzero.kernels.numba._jit import jit
from fastzero.kernels.numba._slices import map_slices
from fastzero.kernels.numba._vector import CONV_RF, CONV_V, DOT_RF, DOT_RK, conv_tile, dot_tile, lanes

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
    """``db[f] += dout[:, f].sum()``, samples in order."""
    N, F, H, W = dout.shape
    for n in range(N):
        for f in range(F):
            s = dout.dtype.type(0)
            for y in range(H):
                row = dout[n, f, y]
                for x in range(W):
                    s += row[x]
            db[f] += s


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
def _backward_blocks(x, dout, pad, Hp, Wp, Hd, Wd, nb, Lx, Ld, wt, rows, offs_x, offs_d,
                     xbuf, dF, dbuf, tmp, dw, db, dx):
    """:func:`conv_backward` of the samples of ``x``, ``nb`` at a time: ``dx``, and sums into ``dw`` and ``db``."""
    N, C = x.shape[0], x.shape[1]
    FN, FH, FW = dout.shape[1], Hd - dout.shape[2] + 1 + pad, Wd - dout.shape[3] + 1 + pad
    n = 64 // x.itemsize
    tile = CONV_V * n
    no_bias = np.zeros(C, dtype=x.dtype)
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        m = n1 - n0
        _scatter(x[n0:n1], pad, pad, Hp, Wp, Lx, xbuf)
        _scatter(dout[n0:n1], 0, 0, Hp, Wp, Lx, dF)
        if m < nb:  # the samples of a fuller block must not count
            _zero_from(dF, FN, Lx, m * Hp * Wp)
        _add_dot_planes(dF, dw.shape[0], xbuf, offs_x, -(-m * Hp * Wp // n) * n, Lx, dw.ravel())
        _add_bias_grad(dout[n0:n1], db)
        _scatter(dout[n0:n1], FH - 1 - pad, FW - 1 - pad, Hd, Wd, Ld, dbuf)
        _conv_planes(dbuf, offs_d, wt, rows, -(-m * Hd * Wd // tile) * tile, Ld, tmp)
        _gather(tmp, Ld, Hd, Wd, no_bias, dx[n0:n1])


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


def conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """Stride-1 convolution ``(N, FN, OH, OW)`` of ``x (N, C, H, W)`` by ``W (FN, C, FH, FW)`` plus ``b``."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    Hp, Wp = H + pad, Wd + pad
    out = np.empty((N, FN, output_size(H, FH, 1, pad), output_size(Wd, FW, 1, pad)), dtype=x.dtype)
    FNp = _round_up(FN, CONV_RF)
    w = _padded_columns(W.reshape(FN, -1), FNp)
    tile = CONV_V * lanes(x.itemsize)

    def work(s0: int, s1: int) -> None:
        nb = _block_size(s1 - s0, (C + FNp) * Hp * Wp * x.itemsize, Hp * Wp, tile)
        g = _Planes(C, Hp, Wp, nb, FH, FW, x.itemsize)
        buf, tmp = np.zeros(g.size, dtype=x.dtype), np.empty(FNp * g.L, dtype=x.dtype)
        _forward_blocks(x[s0:s1], pad, Hp, Wp, nb, g.L, w, FNp, g.offsets(FH, FW), b, buf, tmp, out[s0:s1])

    map_slices(work, N)
    return out


def conv_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, pad: int):
    """Gradients ``(dx, dW, db)`` of :func:`conv_forward` given ``dout (N, FN, OH, OW)``.

    Needs ``pad < min(FH, FW)`` (``dx`` is a convolution of ``dout`` padded by ``FH-1-pad``).
    """
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    _, _, OH, OW = dout.shape
    K = C * FH * FW
    Hp, Wp = H + pad, Wd + pad  # planes of x, and of dout for dW
    Hd, Wdd = OH + FH - 1 - pad, OW + FW - 1 - pad  # planes of dout for dx
    FNp, Cp, Kp = _round_up(FN, DOT_RF), _round_up(C, CONV_RF), _round_up(K, DOT_RK)
    wt = _padded_columns(np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(C, -1), Cp)
    dout = np.ascontiguousarray(dout)
    tile = CONV_V * lanes(x.itemsize)
    per_sample = ((C + FNp) * Hp * Wp + (FN + Cp) * Hd * Wdd) * x.itemsize

    def work(s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
        nb = _block_size(s1 - s0, per_sample, Hd * Wdd, tile)
        gx = _Planes(C, Hp, Wp, nb, FH, FW, x.itemsize)
        gd = _Planes(FN, Hd, Wdd, nb, FH, FW, x.itemsize)
        xbuf, dF = np.zeros(gx.size, dtype=x.dtype), np.zeros(FNp * gx.L, dtype=x.dtype)
        dbuf, tmp = np.zeros(gd.size, dtype=x.dtype), np.empty(Cp * gd.L, dtype=x.dtype)
        dw, db = np.zeros((FNp, Kp), dtype=x.dtype), np.zeros(FN, dtype=x.dtype)
        _backward_blocks(x[s0:s1], dout[s0:s1], pad, Hp, Wp, Hd, Wdd, nb, gx.L, gd.L, wt, Cp,
                         gx.offsets(FH, FW, Kp), gd.offsets(FH, FW), xbuf, dF, dbuf, tmp, dw, db, dx[s0:s1])
        return dw[:FN, :K], db

    dx = np.empty(x.shape, dtype=x.dtype)
    shares = map_slices(work, N)
    dW, db = shares[0][0].copy(), shares[0][1]
    for dW_share, db_share in shares[1:]:  # in slice order: the same bits for the same thread count
        dW += dW_share
        db += db_share
    return dx, dW.reshape(W.shape), db
