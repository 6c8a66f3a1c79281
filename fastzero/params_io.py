"""Parameter files: atomic writing, safe reading of ``.npz`` archives and the book's pickles.

Files are written atomically: to a temporary file in the same directory,
flushed and ``fsync``-ed, then renamed over the final name, so a crash never
leaves a half-written file under that name. :func:`save_params` writes an
``.npz`` archive (one array per parameter name), or for a ``.pkl`` name the
plain pickled dict the book's ``save_params`` writes.

Reading recognises the format by content, not by file name. ``.npz``
archives are read without pickles and without trusting their size fields
(:mod:`fastzero._bounded_npz`). The book's pickles (a ``dict`` of name ->
ndarray, ``params.pkl``) are read by :class:`RestrictedUnpickler`
(:mod:`fastzero._restricted_pickle`), which admits only numeric arrays
pickled the way numpy pickles them and refuses everything else before it
runs. Given the network's arrays, sizes are checked against them before any
array is read.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import secrets
from typing import Any, BinaryIO, Callable, Collection, Iterator, Mapping

import numpy as np

from fastzero import _bounded_npz
from fastzero._bounded_npz import Declared, NpzRefused
from fastzero._restricted_pickle import PickleRefused, RestrictedUnpickler, UnsafePickleError

__all__ = [
    "Declared",
    "PICKLE_SUFFIXES",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "assign_params",
    "atomic_write",
    "check_params",
    "load_params",
    "parse_json",
    "read_npz",
    "read_params",
    "save_npz",
    "save_params",
]

#: File name extensions that :func:`save_params` writes as a pickle (others: ``.npz``).
PICKLE_SUFFIXES = (".pkl", ".pickle")
#: Integers in a JSON record (random generator states) stay below this in magnitude.
MAX_JSON_INT = 2**128

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


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
    """Write ``params`` (name -> array) to ``file_name``, atomically, in the format its
    extension names (case-insensitive):

    * ``.pkl`` or ``.pickle``: a plain pickle (protocol 4) of a ``dict`` of name ->
      numeric ndarray, as the book's ``save_params`` writes it: the book's
      ``load_params`` (``pickle.load``) and :func:`read_params` both read it.
      Non-numeric arrays are refused with ``ValueError``.
    * any other name (``.npz``, or none): an ``.npz`` archive, under exactly
      ``file_name`` (no ``.npz`` suffix is added).
    """
    if os.path.splitext(os.fspath(file_name))[1].lower() not in PICKLE_SUFFIXES:
        save_npz(params, file_name)
        return
    arrays = {name: np.asarray(value) for name, value in params.items()}
    for name, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{os.fspath(file_name)}: parameter {name!r} has non-numeric dtype "
                             f"{value.dtype}; a parameter pickle holds numeric arrays")
    with atomic_write(file_name) as f:
        pickle.dump(arrays, f, protocol=4)


def save_npz(arrays: Mapping[str, np.ndarray], file_name: str | os.PathLike) -> None:
    """Write ``arrays`` (name -> array) to ``file_name`` as an ``.npz`` archive, atomically,
    whatever its extension (no ``.npz`` suffix is added)."""
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    with atomic_write(file_name) as f:
        np.savez(f, **arrays)


def read_npz(file_name: str | os.PathLike,
             check: Callable[[Mapping[str, Declared]], None] | None = None,
             only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` archive ``file_name`` (name -> ndarray), without pickles:
    every one, or only those named in ``only`` (the others' headers are still checked).

    ``check(declared)`` sees every member's declared shape and dtype
    (name -> :class:`Declared`) after the headers are read and before any
    data is inflated or allocated, and refuses by raising ``ValueError``.
    Whatever ``check`` allows, no member is allocated beyond what the archive
    records for it (see :mod:`fastzero._bounded_npz`).

    Raises ``ValueError`` naming the file if it is not a complete, readable
    archive of numeric or text arrays (truncated, corrupt, object arrays,
    lying size fields, not a zip) or ``check`` refuses it.
    """
    source = os.fspath(file_name)
    with open(file_name, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise ValueError(f"{source}: not an .npz archive")
        return _read_npz_file(f, source, check, only)


def _read_npz_file(f: BinaryIO, source: str, check: Callable[[Mapping[str, Declared]], None] | None,
                   only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    try:
        return _bounded_npz.read_members(f, check, only)
    except NpzRefused as exc:
        raise ValueError(f"{source}: {exc}") from None
    except Exception as exc:  # untrusted bytes: any failure to parse them is a bad file
        raise ValueError(
            f"{source}: truncated or corrupt .npz archive ({type(exc).__name__}: {exc})"
        ) from exc


def _read_pickle_file(f: BinaryIO, source: str,
                      like: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    size = os.fstat(f.fileno()).st_size
    if like is not None:
        # protocol 2 writes raw bytes as latin-1 text: at most 2 bytes per byte, 8 per number
        most = sum(16 * np.size(value) + 1024 for value in like.values()) + 65536
        if size > most:
            raise ValueError(f"{source}: {size} bytes, more than a pickle of the network's "
                             f"parameters can take ({most})")
    f.seek(0)
    try:
        return RestrictedUnpickler(io.BytesIO(f.read())).load()
    except PickleRefused as exc:
        raise type(exc)(f"{source}: {exc}") from None
    except Exception as exc:  # only checked builders ran; the bytes are malformed
        raise ValueError(
            f"{source}: truncated or corrupt pickle ({type(exc).__name__}: {exc})"
        ) from exc


def read_params(file_name: str | os.PathLike,
                like: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Read a parameter file: an ``.npz`` archive or the book's pickled dict.

    Returns name -> ndarray. With ``like`` (the network's arrays by name),
    the file must hold exactly those names, shapes and dtypes that convert to
    them (:func:`check_params`), checked before any array is read or
    allocated: an ``.npz`` member's declared shape, a pickle's file size.

    Raises :class:`UnsafePickleError` for a pickle that names a global
    outside the allow-list or uses an admitted one other than numpy does,
    and ``ValueError`` naming the file for a truncated or corrupt file, lying
    size fields, anything that is not a mapping of names to numeric arrays,
    or one that does not fit ``like``.
    """
    source = os.fspath(file_name)
    with open(file_name, "rb") as f:
        magic = f.read(4)
        if magic == _ZIP_MAGIC:
            check = None if like is None else (lambda declared: check_params(like, declared))
            params = _read_npz_file(f, source, check)
        elif magic.startswith(_PICKLE_PROTO):
            params = _read_pickle_file(f, source, like)
        else:
            raise ValueError(f"{source}: not a parameter file (expected .npz or a pickle)")
    for name, value in params.items():
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{source}: parameter {name!r} has non-numeric dtype {value.dtype}")
    if like is not None:
        try:
            check_params(like, params)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    return params


def load_params(params: Mapping[str, np.ndarray], file_name: str | os.PathLike) -> None:
    """Copy the arrays of ``file_name`` into the arrays of ``params``, in place.

    The names must match exactly and every shape must agree; values are cast
    to each destination array's dtype. The destination arrays stay the same
    objects, so layers holding them see the loaded values.
    """
    loaded = read_params(file_name, like=params)
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


def check_params(params: Mapping[str, np.ndarray], loaded: Mapping[str, Any]) -> None:
    """ValueError unless ``loaded`` can be copied into ``params``: the same names,
    the same shapes, and dtypes that convert ("same_kind" casting). ``loaded``
    holds arrays, or anything with their ``shape`` and ``dtype`` (:class:`Declared`)."""
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


def parse_json(text: str) -> Any:
    """``json.loads(text)`` for text read from a file, refusing with ``ValueError`` what
    would otherwise fail later or elsewhere: nesting too deep for the parser,
    integers of magnitude ``MAX_JSON_INT`` or more, and non-finite numbers
    (``NaN``, ``Infinity``, ``1e400``)."""
    def integer(digits: str) -> int:
        value = int(digits)
        if abs(value) >= MAX_JSON_INT:
            raise ValueError(f"integer {digits[:20]}... of {len(digits)} digits is out of range")
        return value

    def real(digits: str) -> float:
        value = float(digits)
        if not math.isfinite(value):
            raise ValueError(f"number {digits[:20]} is not finite")
        return value

    def constant(name: str) -> float:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(text, parse_int=integer, parse_float=real, parse_constant=constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
