"""fastzero: the framework of *Deep Learning from Scratch*, fast on a CPU.

The book's public API lives in :mod:`fastzero.layers`, :mod:`fastzero.functions`,
:mod:`fastzero.optimizer`, :mod:`fastzero.gradient`, :mod:`fastzero.util`,
:mod:`fastzero.trainer` and :mod:`fastzero.nets`. The compute runs on one of two
backends: ``"numba"`` (parallel JIT kernels, the default) or ``"numpy"`` (the
book's algorithms, the reference).

Importing fastzero makes TBB numba's threading layer where the ``tbb``
package is installed (thread-safe and fork-safe, see
:mod:`fastzero.kernels._threading_layer`). For numba on OpenMP (no TBB, or
``NUMBA_THREADING_LAYER=omp``) it sets ``OMP_WAIT_POLICY=PASSIVE`` unless it
is already set: numba's OpenMP workers otherwise spin after every parallel
region (pooling, activations, optimizers) and take the cores from the matrix
products that follow (`docs/speed.md` says how much). The setting is read
when numba's OpenMP layer first loads, so it has no effect if numba ran a
parallel kernel before fastzero was imported.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fastzero.kernels._threading_layer import load_tbb  # noqa: E402  (before numba's threads)

load_tbb()

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
