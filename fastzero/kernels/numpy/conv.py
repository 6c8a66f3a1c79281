"""im2col convolution, the book's algorithm (``common/util.py``, ``Convolution``)."""
from __future__ import annotations

import numpy as np

from fastzero.kernels._geometry import output_size


def pad_images(x: np.ndarray, pad: int, value: float = 0.0) -> np.ndarray:
    """``x`` (N, C, H, W) padded by ``pad`` on both sides of H and W with ``value``."""
    if pad == 0:
        return x
    return np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], constant_values=value)


def im2col_padded(img: np.ndarray, filter_h: int, filter_w: int, stride: int,
                  out_h: int, out_w: int) -> np.ndarray:
    """Windows of an already padded ``img`` (N, C, Hp, Wp) as rows (N*OH*OW, C*FH*FW).

    The book's loop: one strided slice per filter offset ``(y, x)``.
    """
    n, c = img.shape[:2]
    col = np.empty((n, c, filter_h, filter_w, out_h, out_w), dtype=img.dtype)
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int, pad: int) -> np.ndarray:
    """Windows of ``x`` (N, C, H, W) as rows: (N*OH*OW, C*FH*FW), zero padding."""
    _, _, h, w = x.shape
    out_h = output_size(h, filter_h, stride, pad)
    out_w = output_size(w, filter_w, stride, pad)
    return im2col_padded(pad_images(x, pad), filter_h, filter_w, stride, out_h, out_w)


def col2im(col: np.ndarray, x_shape: tuple[int, int, int, int], filter_h: int, filter_w: int,
           stride: int, pad: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: rows (N*OH*OW, C*FH*FW) summed back into (N, C, H, W)."""
    n, c, h, w = x_shape
    out_h = output_size(h, filter_h, stride, pad)
    out_w = output_size(w, filter_w, stride, pad)
    col = col.reshape(n, out_h, out_w, c, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


def conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, pad: int):
    """Convolution ``x`` (N, C, H, W) * ``W`` (FN, C, FH, FW) + ``b`` (FN,).

    Returns ``(out (N, FN, OH, OW), cache)``.
    """
    fn, _, fh, fw = W.shape
    n, _, h, w = x.shape
    out_h = output_size(h, fh, stride, pad)
    out_w = output_size(w, fw, stride, pad)
    col = im2col(x, fh, fw, stride, pad)
    out = np.dot(col, W.reshape(fn, -1).T) + b
    out = out.reshape(n, out_h, out_w, fn).transpose(0, 3, 1, 2)
    return out, (col, x.shape)


def conv_backward(dout: np.ndarray, cache, W: np.ndarray, stride: int, pad: int, need_dx: bool = True):
    """Gradients of :func:`conv_forward`: ``(dx, dW, db)``, dx like x (None when not ``need_dx``),
    dW like W, db (FN,)."""
    col, x_shape = cache
    fn, _, fh, fw = W.shape
    dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
    db = np.sum(dout, axis=0)
    dW = np.dot(col.T, dout).transpose(1, 0).reshape(W.shape)
    if not need_dx:
        return None, dW, db
    dcol = np.dot(dout, W.reshape(fn, -1))
    dx = col2im(dcol, x_shape, fh, fw, stride, pad)
    return dx, dW, db
