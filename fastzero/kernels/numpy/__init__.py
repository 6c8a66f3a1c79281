"""The pure-NumPy reference backend: the book's algorithms, written cleanly.

Every kernel of :data:`fastzero.kernels.KERNELS`, with the contract's
signatures. This is the baseline the numba backend is tested and benchmarked
against, so it stays the book's code: no cleverer algorithms here.
"""
from fastzero.kernels import export

__all__ = export(__name__, globals())
