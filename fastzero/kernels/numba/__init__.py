"""The numba backend: every kernel of :mod:`fastzero.kernels`, same signatures.

Each public function is a plain Python wrapper that allocates the outputs and
calls a private ``numba.njit(parallel=True, cache=True)`` kernel. Importing
this package compiles nothing: a kernel compiles on its first call for a
given dtype, and the machine code is cached on disk for the next process.
Their threading layer is TBB where it is installed
(:mod:`fastzero.kernels._threading_layer`, loaded by ``import fastzero``).
"""
from fastzero.kernels import export

__all__ = export(__name__, globals())
