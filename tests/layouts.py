"""Memory layouts and dtypes a user may hand to fastzero, and the comparison tolerances.

Shared by test_bad_input.py and test_properties.py. :func:`as_layout` returns an
array *equal in value* to its argument but laid out differently in memory (or
with another dtype), so a test can check that the layout never changes a result.
"""
from __future__ import annotations

import numpy as np

#: Layouts that keep the values (and the float dtype) of the array.
VALUE_LAYOUTS = ("C", "F", "strided", "negative_stride", "readonly", "byteswapped")

#: Relative tolerance (to the max-abs of the reference) between the two backends.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}

#: Absolute floor for results that are rounding noise around an exact zero (e.g. the
#: batch-norm dx of a batch of two), for operands of order one.
ATOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


def as_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """``x`` (C-contiguous) as an equal array with memory layout ``layout``.

    C: a C-contiguous copy; F: Fortran order; strided: every other element of a
    twice-as-large buffer along each axis; negative_stride: a reversed view of a
    reversed copy; readonly: a non-writeable copy; byteswapped: non-native byte
    order.
    """
    x = np.ascontiguousarray(x)
    if layout == "C":
        return x.copy()
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided":
        big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if layout == "negative_stride":
        flipped = np.ascontiguousarray(x[tuple(slice(None, None, -1) for _ in x.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in x.shape)]
    if layout == "readonly":
        out = x.copy()
        out.flags.writeable = False
        return out
    if layout == "byteswapped":
        return x.astype(x.dtype.newbyteorder())
    raise ValueError(layout)


def assert_close(actual: np.ndarray, reference: np.ndarray, dtype=None, what: str = "",
                 atol: float = 0.0) -> None:
    """``actual`` equals ``reference`` within the backend tolerance of ``dtype``.

    NaN and inf must sit at the same places with the same sign; the finite
    entries must agree to ``max(RTOL[dtype] * max|reference|, atol)``.
    """
    actual, reference = np.asarray(actual), np.asarray(reference)
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != {reference.shape}"
    dtype = np.dtype(dtype if dtype is not None else reference.dtype)
    nonfinite_a, nonfinite_r = ~np.isfinite(actual), ~np.isfinite(reference)
    np.testing.assert_array_equal(nonfinite_a, nonfinite_r, err_msg=f"{what}: NaN/inf positions")
    np.testing.assert_array_equal(actual[nonfinite_a], reference[nonfinite_r],
                                  err_msg=f"{what}: non-finite values")
    finite = ~nonfinite_r
    if not finite.any():
        return
    scale = float(np.max(np.abs(reference[finite])))
    err = float(np.max(np.abs(actual[finite].astype(np.float64) - reference[finite])))
    assert err <= max(RTOL[dtype] * scale, atol), (
        f"{what}: max abs error {err:.3g} > max({RTOL[dtype]:g} * max|ref| {scale:.3g}, {atol:g})"
    )
