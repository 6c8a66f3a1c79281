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


def test_use_backend_blocks_of_two_threads_overlapping_do_not_leak():
    """A block changes the backend of its own thread only, and ends where it started."""
    import threading

    default = fastzero.get_backend()
    entered = threading.Barrier(2)
    first_left = threading.Event()
    seen = {}

    def first():
        with fastzero.use_backend("numpy"):
            entered.wait(5)
            seen["first inside"] = fastzero.get_backend()
        first_left.set()
        seen["first after"] = fastzero.get_backend()

    def second():
        entered.wait(5)
        with fastzero.use_backend("numba"):
            first_left.wait(5)  # the first block ends while this one is open
            seen["second inside"] = fastzero.get_backend()
        seen["second after"] = fastzero.get_backend()
        seen["second kernels"] = _backend.kernels()

    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert seen == {
        "first inside": "numpy", "first after": default,
        "second inside": "numba", "second after": default,
        "second kernels": _backend.kernels(default),
    }
    assert fastzero.get_backend() == default


def test_set_backend_sets_the_default_that_other_threads_see():
    import threading

    previous = fastzero.get_backend()
    seen = []
    try:
        fastzero.set_backend("numpy")
        t = threading.Thread(target=lambda: seen.append(fastzero.get_backend()))
        t.start()
        t.join()
        with fastzero.use_backend("numba"):
            fastzero.set_backend("numpy")  # takes effect in the block too
            seen.append(fastzero.get_backend())
        seen.append(fastzero.get_backend())
    finally:
        fastzero.set_backend(previous)
    assert seen == ["numpy", "numpy", "numpy"]
