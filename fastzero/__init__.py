"""fastzero: the framework of *Deep Learning from Scratch*, fast on a CPU.

The book's public API lives in :mod:`fastzero.layers`, :mod:`fastzero.functions`,
:mod:`fastzero.optimizer`, :mod:`fastzero.gradient`, :mod:`fastzero.util`,
:mod:`fastzero.trainer` and :mod:`fastzero.nets`. The compute runs on one of two
backends: ``"numba"`` (parallel JIT kernels, the default) or ``"numpy"`` (the
book's algorithms, the reference).
"""
from fastzero._backend import (
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)
from fastzero._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "get_num_threads",
    "set_num_threads",
]
