"""The backend switch and the kernel contract shared by both backends."""
import inspect

import pytest

import fastzero
from fastzero import _backend
from fastzero.kernels import KERNEL_NAMES


def test_default_backend_is_numba():
    assert _backend.DEFAULT_BACKEND == "numba"


def test_set_and_get_backend():
    previous = fastzero.get_backend()
    try:
        fastzero.set_backend("numpy")
        assert fastzero.get_backend() == "numpy"
        fastzero.set_backend("numba")
        assert fastzero.get_backend() == "numba"
    finally:
        fastzero.set_backend(previous)


def test_unknown_backend_lists_available():
    with pytest.raises(ValueError, match="numpy.*numba"):
        fastzero.set_backend("cuda")
    with pytest.raises(ValueError):
        with fastzero.use_backend("torch"):
            pass


def test_use_backend_restores_on_error():
    previous = fastzero.get_backend()
    with pytest.raises(RuntimeError):
        with fastzero.use_backend("numpy") as k:
            assert fastzero.get_backend() == "numpy"
            assert k is _backend.kernels("numpy")
            raise RuntimeError
    assert fastzero.get_backend() == previous


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_both_backends_export_kernel_with_same_signature(name):
    ref = getattr(_backend.kernels("numpy"), name)
    fast = getattr(_backend.kernels("numba"), name)
    assert inspect.signature(ref) == inspect.signature(fast), name
