"""The backend switch: which kernel module the layers call.

Backends are modules under :mod:`fastzero.kernels` exporting the functions
listed in :data:`fastzero.kernels.KERNELS`, with the same signatures. They are
imported lazily, on first use, so that ``import fastzero`` stays cheap.

The process has one default backend (:func:`set_backend`); a
:func:`use_backend` block overrides it for the current context only (a
:class:`contextvars.ContextVar`): the calling thread, or the asyncio task,
until the block ends. Other threads keep seeing the default, so two threads'
overlapping blocks never change each other's backend.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Iterator

#: name -> module path of every backend fastzero knows.
BACKENDS: dict[str, str] = {
    "numpy": "fastzero.kernels.numpy",
    "numba": "fastzero.kernels.numba",
}
DEFAULT_BACKEND = "numba"

_default: str = DEFAULT_BACKEND
_override: ContextVar[str | None] = ContextVar("fastzero_backend", default=None)
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
    """Make ``name`` ("numpy" or "numba") the process's default backend.

    Inside a :func:`use_backend` block it also replaces that block's backend
    (until the block ends), so the call takes effect where it is made.
    """
    global _default
    _default = _check_name(name)
    if _override.get() is not None:
        _override.set(name)


def get_backend() -> str:
    """Name of the backend active in this context (thread or task)."""
    return _override.get() or _default


@contextmanager
def use_backend(name: str) -> Iterator[ModuleType]:
    """Run a block with another backend active in this context; restores the previous one."""
    token = _override.set(_check_name(name))
    try:
        yield kernels()
    finally:
        _override.reset(token)


def kernels(name: str | None = None) -> ModuleType:
    """The kernel module of backend ``name`` (default: the active one)."""
    name = (_override.get() or _default) if name is None else _check_name(name)
    module = _modules.get(name)
    if module is None:
        module = _modules[name] = importlib.import_module(BACKENDS[name])
    return module
