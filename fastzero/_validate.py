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

import math
import numbers
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Up to this many int64 labels are range-checked in Python (:func:`targets`).
_FEW_LABELS = 32


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
    if type(x) is np.ndarray and (x.dtype in FLOAT_DTYPES if dtype is None else x.dtype == dtype):
        flags = x.flags
        if flags.c_contiguous and flags.writeable:  # already fits: the common, cheap case
            return x
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
    ok = arr.ndim >= min_ndim if ndim is None else arr.ndim in ((ndim,) if type(ndim) is int else ndim)
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


def bias(b: Any, n: int, dtype: np.dtype, where: str) -> np.ndarray:
    """A layer's bias as an (n,) array of the weights' ``dtype``.

    As in the book's ``x @ W + b``, ``b`` may be any array that broadcasts
    along the output's last axis of length ``n``: a scalar (``b = 0`` in
    ``ch07/apply_filter.py``), (1,), (n,), or those with leading 1s such as
    (1, n). An int or bool bias takes the weights' dtype; a float bias must
    share it. An (n,) array that fits is returned as it is (an optimizer's
    in-place update is seen); any other a broadcast copy.
    """
    if type(b) is np.ndarray and b.shape == (n,) and b.dtype == dtype:
        flags = b.flags
        if flags.c_contiguous and flags.writeable:  # the common case, returned as it is
            return b
    arr = np.asarray(b)
    computed = compute_dtype(arr.dtype, where, "b")
    if arr.dtype.kind == "f" and computed != dtype:
        raise TypeError(f"{where}: parameters must share one dtype, got W {dtype}, b {arr.dtype}")
    if arr.ndim and (arr.shape[-1] not in (1, n) or any(s != 1 for s in arr.shape[:-1])):
        raise ValueError(
            f"{where}: expected b of shape ({n},), got shape {arr.shape} "
            f"(a scalar, (1,) or (1, {n}) broadcast as well)"
        )
    if arr.shape == (n,):
        return as_float_array(arr, where, "b", dtype)
    return np.ascontiguousarray(np.broadcast_to(arr.reshape(-1), (n,)), dtype=dtype)


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
    kind = type(value)
    if kind is not int and kind is not float and (
            isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{where}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or (low is not None and value < low) or too_high:
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


def targets(t: Any, n: int, k: int, where: str,
            one_hot_ndim: int = 2) -> tuple[np.ndarray, np.ndarray | None]:
    """Targets ``t`` for ``n`` samples of ``k`` classes as ``(labels, soft)``.

    ``labels`` is int64 (n,) in ``[0, k)``; ``soft`` is None unless ``t`` holds
    target rows that are not one-hot. ``t`` may be

    * integer labels (n,) or (n, 1) (a single label, (), (1,) or (1, 1), when
      ``one_hot_ndim == 1``);
    * target rows of shape (n, k) ((k,) when ``one_hot_ndim == 1``), numeric
      and finite: one-hot rows, or any others (label smoothing, mixup). As in
      the book, ``labels`` is their argmax (the first on ties); ``soft`` is
      the rows (n, k) as given when they are not all one-hot. Rows that are
      not distributions are not refused: the book computes with them too.
    """
    if (one_hot_ndim == 2 and type(t) is np.ndarray and t.dtype == np.int64 and t.shape == (n,)
            and t.flags.c_contiguous):
        if n <= _FEW_LABELS:  # a few labels: Python's min and max cost less than two reductions
            values = t.tolist()
            low, high = min(values), max(values)
        else:
            low, high = t.min(), t.max()
        if 0 <= low and high < k:  # the common case: in range, no conversion needed
            return t, None
    t = np.asarray(t)
    rows_shape = (n, k) if one_hot_ndim == 2 else (k,)
    label_shapes = ((n,), (n, 1)) if one_hot_ndim == 2 else ((), (1,), (1, 1))
    if t.shape == rows_shape and t.ndim == one_hot_ndim:
        if t.dtype.kind not in "biuf":
            raise TypeError(f"{where}: target rows must be numeric, got dtype {t.dtype}")
        rows = t.reshape(n, k)
        if n <= _FEW_LABELS:  # a few rows: one-hot (k - 1 zeros and a 1) checked in Python
            listed = rows.tolist()
            if all(r.count(0) == k - 1 and 1 in r for r in listed):
                return np.array([r.index(1) for r in listed], dtype=np.int64), None
        labels = np.ascontiguousarray(rows.argmax(axis=1), dtype=np.int64)
        # One-hot: one nonzero per row (n in all, one at each argmax), and it is a 1
        # (so finite: NaN and inf rows are never one-hot).
        if np.count_nonzero(rows) == n and np.count_nonzero(rows[np.arange(n), labels] == 1) == n:
            return labels, None
        if not np.isfinite(rows).all():
            raise ValueError(f"{where}: target rows must be finite")
        return labels, rows
    if t.shape not in label_shapes:
        expected = " or ".join(str(s) for s in label_shapes)
        raise ValueError(
            f"{where}: expected labels of shape {expected} or target rows of shape "
            f"{rows_shape} for {n} samples of {k} classes, got shape {t.shape}"
        )
    if t.dtype.kind not in "iu":
        raise TypeError(f"{where}: labels must be integers, got dtype {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(
            f"{where}: labels must be in [0, {k}), got values in [{t.min()}, {t.max()}]"
        )
    return np.ascontiguousarray(t.reshape(n), dtype=np.int64), None


def labels(t: Any, n: int, k: int, where: str, one_hot_ndim: int = 2) -> np.ndarray:
    """Int64 class labels (n,) of the targets ``t`` (see :func:`targets`)."""
    return targets(t, n, k, where, one_hot_ndim)[0]


def param_for_update(param: Any, grad: Any, where: str, key: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(work, grad)``: the array an optimizer kernel steps for ``params[key]``, and its gradient.

    ``work`` is ``param`` itself when it is a writeable, C-contiguous, native
    float32/float64 ndarray (the kernel updates it in place); otherwise a
    float32/float64 C-contiguous copy (see :func:`compute_dtype`) that
    :func:`store_update` puts back. A read-only array is refused (it cannot
    be updated). ``grad`` must have the parameter's shape or broadcast to it;
    it is converted to ``work``'s dtype.
    """
    if (type(param) is np.ndarray and type(grad) is np.ndarray and param.dtype in FLOAT_DTYPES
            and grad.dtype == param.dtype and grad.shape == param.shape
            and param.flags.c_contiguous and param.flags.writeable and grad.flags.c_contiguous):
        return param, grad  # the common case, checked in full
    what = f"params[{key!r}]"
    if isinstance(param, np.ndarray) and not param.flags.writeable:
        raise ValueError(f"{where}: {what} must be writeable (it is updated in place)")
    arr = np.asarray(param)
    target = compute_dtype(arr.dtype, where, what)
    if isinstance(param, np.ndarray) and param.dtype == target and param.flags.c_contiguous:
        work = param
    else:
        work = np.array(arr, dtype=target, order="C")
    grad_arr = np.asarray(grad)
    compute_dtype(grad_arr.dtype, where, f"grads[{key!r}]")
    if grad_arr.shape != work.shape:
        try:  # as the book's ``params[key] -= lr * grads[key]``, e.g. a (1, M) bias, (M,) grad
            grad_arr = np.broadcast_to(grad_arr, work.shape)
        except ValueError:
            raise ValueError(
                f"{where}: grads[{key!r}] has shape {grad_arr.shape}, {what} has {work.shape}"
            ) from None
    return work, as_float_array(grad_arr, where, f"grads[{key!r}]", work.dtype)


def store_update(params: Any, key: Any, param: Any, work: np.ndarray) -> None:
    """Put the stepped copy ``work`` of ``params[key]`` back, as the book's arithmetic would.

    A float ndarray is updated in place (its layers see the step); an int or
    bool array, a list or a scalar cannot hold it, so the entry is replaced:
    a NumPy float scalar for a scalar, the float array otherwise.
    """
    if isinstance(param, np.ndarray) and param.dtype.kind == "f":
        param[...] = work
    elif np.ndim(param) == 0 and not isinstance(param, np.ndarray):
        params[key] = work[()]
    else:
        params[key] = work
