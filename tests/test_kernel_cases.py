"""Every kernel of the contract, from the one case registry (``fastzero.kernels.cases``).

* the registry has a case for every kernel, with shapes of every size;
* the numba backend equals the NumPy reference on every tiny shape, float64
  and float32 (float64: within 1e-10 of the largest magnitude, float32: 1e-4):
  same types, dtypes and shapes, inputs untouched except the arguments a
  kernel updates in place, which change and equal the reference's;
* every float array a kernel returns or updates keeps the input dtype.
"""
import numpy as np
import pytest

from fastzero import _backend
from fastzero.kernels import KERNEL_NAMES, KERNELS
from fastzero.kernels.cases import CASES, SIZES, cases_of, missing

#: also run by CI's bounds-checked job (NUMBA_BOUNDSCHECK=1)
pytestmark = pytest.mark.boundscheck

REF = _backend.kernels("numpy")
FAST = _backend.kernels("numba")
DTYPES = [np.float64, np.float32]


def tolerance(dtype):
    return 1e-10 if dtype == np.float64 else 1e-4


def assert_close(actual, desired, dtype, what=""):
    """Same type, dtype and shape; floats within ``dtype``'s tolerance of max |desired|."""
    if isinstance(desired, float):
        assert isinstance(actual, float), what
        np.testing.assert_allclose(actual, desired, rtol=tolerance(dtype), err_msg=what)
        return
    assert isinstance(actual, np.ndarray) and isinstance(desired, np.ndarray), what
    assert actual.shape == desired.shape and actual.dtype.kind == desired.dtype.kind, what
    if desired.dtype.kind != "f":  # masks and argmax (of any integer width): exact
        np.testing.assert_array_equal(actual, desired, err_msg=what)
        return
    assert actual.dtype == desired.dtype, what
    assert desired.dtype == dtype, f"{what}: {desired.dtype}, inputs {np.dtype(dtype)}"
    tol = tolerance(dtype)  # -inf (a pooling window inside the padding) must match exactly
    atol = tol * float(np.max(np.abs(desired[np.isfinite(desired)]), initial=0.0))
    np.testing.assert_allclose(actual, desired, rtol=tol, atol=atol, err_msg=what)


def results(case, result):
    """The kernel's outputs that both backends must agree on (caches left out)."""
    items = result if isinstance(result, tuple) else (result,)
    return [item for i, item in enumerate(items) if i not in case.opaque]


def test_every_kernel_in_the_contract_has_a_case():
    assert missing() == []
    assert list(CASES) == list(KERNEL_NAMES)
    for family, names in KERNELS.items():
        assert [c.kernel for c in cases_of(family)] == list(names)
    for case in CASES.values():
        for size in SIZES:
            assert case.shapes(size), (case.kernel, size)


def test_missing_names_a_kernel_without_a_case(monkeypatch):
    from fastzero.kernels import cases

    monkeypatch.delitem(cases.CASES, "dropout_backward")
    assert cases.missing() == ["dropout_backward"]


TINY = [(name, label) for name, case in CASES.items() for label in case.shapes("tiny")]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name, label", TINY, ids=[f"{n}-{s}" for n, s in TINY])
def test_numba_matches_the_reference(name, label, dtype):
    case = CASES[name]
    dims = case.shapes("tiny")[label]
    args = {b: case.arguments(k, dims, dtype, seed=3) for b, k in (("numpy", REF), ("numba", FAST))}
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args["numba"]]
    desired = results(case, case.call(REF, args["numpy"]))
    actual = results(case, case.call(FAST, args["numba"]))
    assert len(actual) == len(desired)
    for i, (a, d) in enumerate(zip(actual, desired)):
        if d is None:  # the optimizers return None
            assert a is None
            continue
        assert_close(a, d, dtype, f"{name} output {i}")
    for i, (a, old) in enumerate(zip(args["numba"], before)):
        if not isinstance(a, np.ndarray):
            continue
        if i in case.updates:
            assert not np.array_equal(a, old), f"{name} did not update argument {i}"
            assert_close(a, args["numpy"][i], dtype, f"{name} argument {i} updated in place")
        else:
            np.testing.assert_array_equal(a, old, err_msg=f"{name} modified argument {i}")


@pytest.mark.parametrize("name", list(CASES))
def test_float32_in_float32_out(backend, name):
    """The first tiny shape in float32: every float array returned or updated is float32."""
    case = CASES[name]
    k = _backend.kernels(backend)
    dims = next(iter(case.shapes("tiny").values()))
    args = case.arguments(k, dims, np.float32)
    result = case.call(k, args)
    items = result if isinstance(result, tuple) else (result,)
    arrays = [a for i, a in enumerate(items) if i not in case.opaque and isinstance(a, np.ndarray)]
    arrays += [args[i] for i in case.updates]
    floats = [a for a in arrays if a.dtype.kind == "f"]
    assert floats, name
    assert all(a.dtype == np.float32 for a in floats), name
