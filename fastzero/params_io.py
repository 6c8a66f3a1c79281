"""Parameter files: atomic ``.npz`` writing, safe reading of ``.npz`` and the book's pickles.

New files are ``.npz`` archives (one array per parameter name) written
atomically: to a temporary file in the same directory, flushed and
``fsync``-ed, then renamed over the final name, so a crash never leaves a
half-written file under that name. They are read with ``allow_pickle=False``.

The book saves parameters with :func:`pickle.dump` (a ``dict`` of name ->
ndarray, ``params.pkl``). Unpickling runs whatever code the file names, so
those files are read by :class:`RestrictedUnpickler`, which admits only the
few numpy globals an array pickle needs and refuses everything else before
anything runs. The format is recognised by content, not by file name.
"""
from __future__ import annotations

import codecs
import contextlib
import io
import os
import pickle
import secrets
from collections import OrderedDict
from typing import BinaryIO, Iterator, Mapping

import numpy as np

try:
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy < 2 has no numpy._core
    from numpy.core import multiarray as _multiarray, numeric as _numeric

__all__ = [
    "RestrictedUnpickler",
    "UnsafePickleError",
    "assign_params",
    "atomic_write",
    "check_params",
    "load_params",
    "read_npz",
    "read_params",
    "save_params",
]

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"

# (module, name) -> object, for every global that pickles of ndarrays, numpy
# scalars and dicts of them reference, under numpy 1.x and 2.x module names.
_SAFE_GLOBALS = {
    (module, name): obj
    for modules, name, obj in [
        (("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct", _multiarray._reconstruct),
        (("numpy._core.multiarray", "numpy.core.multiarray"), "scalar", _multiarray.scalar),
        (("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer", _numeric._frombuffer),
        (("numpy",), "ndarray", np.ndarray),
        (("numpy",), "dtype", np.dtype),
        (("_codecs",), "encode", codecs.encode),  # bytes in protocols 0-2
        (("collections",), "OrderedDict", OrderedDict),
    ]
    for module in modules
}


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle names a global outside the allow-list of :class:`RestrictedUnpickler`.

    Also a ``ValueError``: like every other refused file, a bad input value.
    """


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for dicts of numpy arrays that refuses every other global.

    ``find_class`` is the only way a pickle reaches callable code; this one
    returns objects from a fixed allow-list (ndarray reconstruction, dtype,
    numpy scalars, ``OrderedDict``) and raises :class:`UnsafePickleError`
    naming anything else, so a malicious file fails before calling anything.
    """

    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load the global {module}.{name}: a parameter pickle may only "
                "contain numpy arrays in a dict"
            ) from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically.

    The yielded file's ``name`` is the temporary file's path (readable before
    the rename, e.g. to verify what was written).

    The file is flushed and ``fsync``-ed before the rename and the directory
    is ``fsync``-ed after it. If the block raises, the temporary file is
    removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:  # "x": never clobbers an existing file
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_params(params: Mapping[str, np.ndarray], file_name: str | os.PathLike) -> None:
    """Write ``params`` (name -> array) to ``file_name`` as an ``.npz`` archive, atomically.

    The archive is written under exactly ``file_name`` (no ``.npz`` suffix is added).
    """
    arrays = {name: np.asarray(value) for name, value in params.items()}
    with atomic_write(file_name) as f:
        np.savez(f, **arrays)


def read_npz(file_name: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive ``file_name`` (name -> ndarray), without pickles.

    Raises ``ValueError`` naming the file if it is not a complete, readable
    archive of plain arrays (truncated, corrupt, object arrays, not a zip).
    """
    with open(file_name, "rb") as f:
        data = f.read()
    if not data.startswith(_ZIP_MAGIC):
        raise ValueError(f"{os.fspath(file_name)}: not an .npz archive")
    return _load_npz(data, file_name)


def _load_npz(data: bytes, file_name: str | os.PathLike) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except MemoryError:  # a size field asking for more than the machine has: said as it is
        raise
    except Exception as exc:  # untrusted bytes: any other failure to parse them is a bad file
        raise ValueError(
            f"{os.fspath(file_name)}: truncated or corrupt .npz archive "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def _load_pickle(data: bytes, file_name: str | os.PathLike) -> object:
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{os.fspath(file_name)}: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # only allow-listed globals ran; the bytes are malformed
        raise ValueError(
            f"{os.fspath(file_name)}: truncated or corrupt pickle ({type(exc).__name__}: {exc})"
        ) from exc


def read_params(file_name: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a parameter file: an ``.npz`` archive or the book's pickled dict.

    Returns name -> ndarray. Raises :class:`UnsafePickleError` for a pickle
    naming a non-allow-listed global and ``ValueError`` (naming the file) for
    a truncated or corrupt file or anything that is not a mapping of names to
    numeric arrays.
    """
    with open(file_name, "rb") as f:
        data = f.read()
    if data.startswith(_ZIP_MAGIC):
        params = _load_npz(data, file_name)
    elif data.startswith(_PICKLE_PROTO):
        params = _load_pickle(data, file_name)
    else:
        raise ValueError(f"{os.fspath(file_name)}: not a parameter file (expected .npz or a pickle)")
    return _checked_arrays(params, file_name)


def _checked_arrays(params, file_name) -> dict[str, np.ndarray]:
    if not isinstance(params, Mapping):
        raise ValueError(
            f"{os.fspath(file_name)}: expected a dict of parameter arrays, got {type(params).__name__}"
        )
    out = {}
    for name, value in params.items():
        value = np.asarray(value) if isinstance(value, np.generic) else value
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise ValueError(f"{os.fspath(file_name)}: entry {name!r} is not a named array")
        if value.dtype.kind not in "biuf":
            raise ValueError(
                f"{os.fspath(file_name)}: parameter {name!r} has non-numeric dtype {value.dtype}"
            )
        out[name] = value
    return out


def load_params(params: Mapping[str, np.ndarray], file_name: str | os.PathLike) -> None:
    """Copy the arrays of ``file_name`` into the arrays of ``params``, in place.

    The names must match exactly and every shape must agree; values are cast
    to each destination array's dtype. The destination arrays stay the same
    objects, so layers holding them see the loaded values.
    """
    loaded = read_params(file_name)
    assign_params(params, loaded, source=os.fspath(file_name))


def assign_params(params: Mapping[str, np.ndarray], loaded: Mapping[str, np.ndarray],
                  source: str) -> None:
    """Check names, shapes and dtypes of ``loaded`` against ``params``, then copy in place.

    Nothing is copied unless every array fits.
    """
    try:
        check_params(params, loaded)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    for name, dst in params.items():
        np.copyto(dst, loaded[name], casting="same_kind")


def check_params(params: Mapping[str, np.ndarray], loaded: Mapping[str, np.ndarray]) -> None:
    """ValueError unless ``loaded`` can be copied into ``params``: the same names,
    the same shapes, and dtypes that convert ("same_kind" casting)."""
    missing = sorted(set(params) - set(loaded))
    unexpected = sorted(set(loaded) - set(params))
    if missing or unexpected:
        raise ValueError(
            "parameter names do not match the network "
            f"(missing: {missing or 'none'}; unexpected: {unexpected or 'none'})"
        )
    for name, dst in params.items():
        if loaded[name].shape != dst.shape:
            raise ValueError(
                f"parameter {name!r} has shape {loaded[name].shape}, the network expects {dst.shape}"
            )
        if not np.can_cast(loaded[name].dtype, dst.dtype, casting="same_kind"):
            raise ValueError(
                f"parameter {name!r} has dtype {loaded[name].dtype}, "
                f"which does not convert to the network's {dst.dtype}"
            )
