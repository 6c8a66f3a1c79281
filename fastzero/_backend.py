"""The backend switch: which kernel module the layers call.

Backends are modules under :mod:`fastzero.kernels` exporting the functions
listed in :data:`fastzero.kernels.KERNELS`, with the same signatures. They are
imported lazily, on first use, so that ``import fastzero`` stays cheap.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

#: name -> module path of every backend fastzero knows.
BACKENDS: dict[str, str] = {
    "numpy": "fastzero.kernels.numpy",
    "numba": "fastzero.kernels.numba",
}
DEFAULT_BACKEND = "numba"

_active: str = DEFAULT_BACKEND
_modules: dict[str, ModuleType] = {}


def available_backends() -> list[str]:
    """Names accepted by :func:`set_backend`."""
    return list(BACKENDS)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; available backends: {', '.join(BACKENDS)}"
        )
    return name


def set_backend(name: str) -> None:
    """Make ``name`` ("numpy" or "numba") the backend every layer uses."""
    global _active
    _active = _check_name(name)


def get_backend() -> str:
    """Name of the active backend."""
    return _active


@contextmanager
def use_backend(name: str) -> Iterator[ModuleType]:
    """Run a block with another backend active; restores the previous one."""
    global _active
    previous = _active
    _active = _check_name(name)
    try:
        yield kernels()
    finally:
        _active = previous


def kernels(name: str | None = None) -> ModuleType:
    """The kernel module of backend ``name`` (default: the active one)."""
    name = _active if name is None else _check_name(name)
    module = _modules.get(name)
    if module is None:
        module = _modules[name] = importlib.import_module(BACKENDS[name])
    return module
