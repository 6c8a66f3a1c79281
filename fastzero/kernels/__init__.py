"""Compute kernels, one module per concern, in two backends with one contract.

``fastzero.kernels.numpy`` is the reference (the book's algorithms, in plain
NumPy); ``fastzero.kernels.numba`` implements the *same functions with the
same signatures* as ``numba.njit(parallel=True, cache=True)`` kernels. Each
backend package re-exports every name in :data:`KERNELS` at its top level.

The contract every kernel keeps:

* Kernels never validate. The layer (or public function) that calls a kernel
  has already checked ndim, shapes, dtypes and parameter ranges, converted
  the arrays to one float dtype (float32 or float64), and made them
  C-contiguous. A kernel's output has the dtype of its inputs.
* Kernels write only to the arrays they return, plus the state arrays an
  optimizer or batch-norm kernel is documented to update in place.
* ``cache`` objects returned by a forward kernel are opaque: only the same
  backend's backward kernel reads them. Everything else is an ndarray.

Shapes: ``x`` images are ``(N, C, H, W)``; filters ``W`` are ``(FN, C, FH, FW)``;
``OH = (H + 2*pad - FH) // stride + 1`` and likewise ``OW``.

:data:`KERNELS` lists every kernel by module. Each kernel's signature,
shapes and formula are documented on its reference implementation,
``fastzero.kernels.numpy.<module>.<name>``; the numba kernel has the same
signature. Adding a kernel is a name in :data:`KERNELS`, a function of that
name in the module of each backend, and an entry in
:data:`fastzero.kernels.cases.CASES`; the backends export what
:data:`KERNELS` names (:func:`export`).
"""
from __future__ import annotations

import importlib
from typing import Any

#: Every kernel name, by module. Both backends export exactly these, and
#: :data:`fastzero.kernels.cases.CASES` has an example call of each.
KERNELS: dict[str, tuple[str, ...]] = {
    "conv": ("im2col", "col2im", "conv_forward", "conv_backward"),
    "pool": ("maxpool_forward", "maxpool_backward"),
    "dense": ("affine_forward", "affine_backward"),
    "activation": ("relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward"),
    "loss": ("softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward"),
    "norm": ("batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward"),
    "dropout": ("dropout_forward", "dropout_backward"),
    "augment": ("bilinear_sample", "warp"),
    "optim": (
        "sgd_update",
        "momentum_update",
        "nesterov_update",
        "adagrad_update",
        "rmsprop_update",
        "adam_update",
    ),
}

#: Flat list of every kernel name.
KERNEL_NAMES: tuple[str, ...] = tuple(n for names in KERNELS.values() for n in names)


def export(package: str, namespace: dict[str, Any]) -> list[str]:
    """Give ``package`` every kernel of :data:`KERNELS`, each imported from ``package.<module>``
    on first use (a module ``__getattr__``, PEP 562).

    A backend package calls ``__all__ = export(__name__, globals())``. A
    script that never convolves never imports (nor loads the machine code
    of) the convolution kernels.
    """
    modules = {name: module for module, names in KERNELS.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        kernel = namespace[name] = getattr(importlib.import_module(f"{package}.{module}"), name)
        return kernel

    namespace["__getattr__"] = __getattr__
    return list(KERNEL_NAMES)
