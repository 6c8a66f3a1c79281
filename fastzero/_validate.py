"""Input checks shared by the layers, the optimizers, the public functions and the nets.

Kernels never validate (see :mod:`fastzero.kernels`), so these checks are the
only guard between user input and a numba kernel: every array that reaches a
kernel has passed through here. Errors name the caller (``where``, e.g.
``"Convolution"``) and state the expected and the received shape or dtype.

The dtype rule
--------------
float64 stays float64 and float32 stays float32. bool, signed and unsigned
integers become float64; float16 becomes float32 and other floats (long
double) float64. Complex, object and string arrays are rejected with
TypeError. A layer with weights computes in the dtype of its weights: a
float32 input to a float64 layer is converted to float64, and vice versa.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def compute_dtype(dtype: np.dtype, where: str, what: str = "input") -> np.dtype:
    """The float dtype (native byte order) an array of ``dtype`` is computed in."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return FLOAT_DTYPES[1]
    if dtype.kind == "f":
        if dtype.itemsize <= 4:
            return FLOAT_DTYPES[0]
        return FLOAT_DTYPES[1]
    raise TypeError(
        f"{where}: expected a real-valued numeric {what} (float, int or bool), got dtype {dtype}"
    )


def as_float_array(x: Any, where: str, what: str = "input", dtype: Any = None) -> np.ndarray:
    """``x`` as a C-contiguous, native-order, writeable float32/float64 array.

    ``dtype`` forces the result's dtype (a layer's weight dtype); otherwise it
    follows :func:`compute_dtype`. No copy is made when ``x`` already fits.
    """
    arr = np.asarray(x)
    target = compute_dtype(arr.dtype, where, what)
    if dtype is not None:
        target = np.dtype(dtype)
    arr = np.asarray(arr, dtype=target, order="C")
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def layer_input(x: Any, where: str, layout: str, ndim: int | tuple[int, ...] | None = None,
                min_ndim: int = 1, dtype: Any = None, what: str = "input") -> np.ndarray:
    """A non-empty ``x`` converted by :func:`as_float_array`, with ``ndim`` dimensions.

    ``ndim`` is one allowed ndim or several; ``None`` allows any ndim from
    ``min_ndim`` up. ``layout`` describes the expected shape in messages, e.g.
    ``"(N, C, H, W)"``.
    """
    arr = as_float_array(x, where, what, dtype)
    ok = arr.ndim >= min_ndim if ndim is None else arr.ndim in np.atleast_1d(ndim)
    if not ok:
        raise ValueError(f"{where}: expected {what} of shape {layout}, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{where}: expected a non-empty {what} {layout}, got shape {arr.shape}")
    return arr


def check_shape(arr: np.ndarray, shape: tuple[int, ...], where: str, what: str) -> None:
    """Raise ValueError unless ``arr.shape == shape``."""
    if arr.shape != tuple(shape):
        raise ValueError(f"{where}: expected {what} of shape {tuple(shape)}, got shape {arr.shape}")


def weights(where: str, **arrays: Any) -> list[np.ndarray]:
    """A layer's parameter arrays, converted, and required to share one dtype.

    Returns the arrays in keyword order. The user's arrays are returned as
    they are when they already fit, so in-place updates are seen.
    """
    out = [as_float_array(a, where, name) for name, a in arrays.items()]
    dtypes = {a.dtype for a in out}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} {a.dtype}" for name, a in zip(arrays, out, strict=True))
        raise TypeError(f"{where}: parameters must share one dtype, got {listing}")
    return out


def integer(value: Any, where: str, name: str, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum`` (bools and floats are rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return int(value)


def real(value: Any, where: str, name: str, low: float | None = None,
         high: float | None = None, high_open: bool = False) -> float:
    """``value`` as a finite Python float in ``[low, high]`` (or ``[low, high)``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not np.isfinite(value) or (low is not None and value < low) or too_high:
        if low is not None and high is not None:
            bounds = f" and in [{low}, {high}{')' if high_open else ']'}"
        elif high is not None:
            bounds = f" and {'<' if high_open else '<='} {high}"
        else:
            bounds = "" if low is None else f" and >= {low}"
        raise ValueError(f"{where}: {name} must be finite{bounds}, got {value}")
    return value


def window_fits(x_shape: tuple[int, ...], filter_h: int, filter_w: int, pad: int,
                where: str, window: str = "filter") -> None:
    """Raise ValueError if a ``filter_h x filter_w`` window is larger than the padded input."""
    h, w = x_shape[2] + 2 * pad, x_shape[3] + 2 * pad
    if filter_h > h or filter_w > w:
        raise ValueError(
            f"{where}: {window} {filter_h}x{filter_w} is larger than the padded input "
            f"{h}x{w} (input shape {tuple(x_shape)}, pad {pad})"
        )


def labels(t: Any, n: int, k: int, where: str, one_hot_ndim: int = 2) -> np.ndarray:
    """Targets ``t`` as int64 class labels (n,) in ``[0, k)``.

    ``t`` holds either integer labels (shape ``(n,)``, or a single label when
    ``one_hot_ndim == 1``) or one-hot rows of shape ``(n, k)`` (``(k,)`` when
    ``one_hot_ndim == 1``), which are turned into labels by argmax as the book
    does; one-hot rows must hold a single 1 and zeros elsewhere.
    """
    t = np.asarray(t)
    one_hot_shape = (n, k) if one_hot_ndim == 2 else (k,)
    label_shapes = ((n,),) if one_hot_ndim == 2 else ((), (1,))
    if t.shape == one_hot_shape and t.ndim == one_hot_ndim:
        if t.dtype.kind not in "biuf":
            raise TypeError(f"{where}: one-hot targets must be numeric, got dtype {t.dtype}")
        rows = t.reshape(-1, k)
        if not (np.all((rows == 0) | (rows == 1)) and np.all(rows.sum(axis=1) == 1)):
            raise ValueError(f"{where}: one-hot targets must hold a single 1 per row, zeros elsewhere")
        return np.ascontiguousarray(rows.argmax(axis=1), dtype=np.int64)
    if t.shape not in label_shapes:
        expected = " or ".join(str(s) for s in (*label_shapes, one_hot_shape))
        raise ValueError(
            f"{where}: expected labels of shape {expected} (one-hot) for {n} samples of "
            f"{k} classes, got shape {t.shape}"
        )
    if t.dtype.kind not in "iu":
        raise TypeError(f"{where}: labels must be integers, got dtype {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(
            f"{where}: labels must be in [0, {k}), got values in [{t.min()}, {t.max()}]"
        )
    return np.ascontiguousarray(t.reshape(n), dtype=np.int64)


def param_for_update(param: Any, grad: Any, where: str, key: Any) -> np.ndarray:
    """Check a parameter can be updated in place by ``grad``; return ``grad`` converted.

    The parameter must be a writeable, C-contiguous float32/float64 ndarray
    (the optimizer's contract is an in-place update); the gradient must have
    its shape and dtype.
    """
    if not isinstance(param, np.ndarray) or param.dtype not in FLOAT_DTYPES:
        got = param.dtype if isinstance(param, np.ndarray) else type(param).__name__
        raise TypeError(
            f"{where}: params[{key!r}] must be a float32 or float64 ndarray "
            f"(it is updated in place), got {got}"
        )
    if not param.dtype.isnative:
        raise TypeError(f"{where}: params[{key!r}] must be in native byte order")
    if not (param.flags.c_contiguous and param.flags.writeable):
        raise ValueError(
            f"{where}: params[{key!r}] must be a writeable C-contiguous array "
            "(it is updated in place); use np.ascontiguousarray and keep that array"
        )
    grad = np.asarray(grad)
    if grad.shape != param.shape:
        raise ValueError(
            f"{where}: grads[{key!r}] has shape {grad.shape}, params[{key!r}] has {param.shape}"
        )
    if grad.dtype.type is not param.dtype.type:
        raise TypeError(
            f"{where}: grads[{key!r}] has dtype {grad.dtype}, params[{key!r}] has {param.dtype}"
        )
    return as_float_array(grad, where, f"grads[{key!r}]", param.dtype)
