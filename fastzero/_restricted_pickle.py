"""The restricted unpickler for the book's ``params.pkl``: a dict of names to numeric arrays.

Nothing a file names is ever called with the file's arguments. Each admitted
global stands for a builder that checks its arguments against the one form
numpy (1.x and 2.x) or Python's pickler writes, and yields a placeholder
(:class:`_Dtype`, :class:`_Array`) that only a matching BUILD can complete.
Arrays are made from checked bytes by ``np.frombuffer``, so no object dtype,
structured dtype or file-supplied buffer ever reaches numpy's constructors.
"""
from __future__ import annotations

import math
import pickle
import reprlib
from typing import Any, NamedTuple

import numpy as np

__all__ = ["PickleRefused", "RestrictedUnpickler", "UnsafePickleError"]


class PickleRefused(ValueError):
    """A pickle that is read to the end but is not a dict of names to numeric arrays."""


class UnsafePickleError(pickle.UnpicklingError, PickleRefused):
    """A pickle is not a plain dict of numeric numpy arrays as numpy pickles them:
    it names a global outside the allow-list of :class:`RestrictedUnpickler`, or
    calls or ``BUILD``-s an admitted one in another way.

    Also a ``ValueError``: like every other refused file, a bad input value.
    """


_DTYPE_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
_DTYPE_STATE_TAIL = (None, None, None, -1, -1, 0)  # names, fields, subarray, elsize, alignment, flags
_MAX_NDIM = 32


def _same(value: object, expected: object) -> bool:
    """``value == expected`` with the same type (so ``1.0`` or ``True`` is not ``1``)."""
    return type(value) is type(expected) and value == expected


def _flag(value: object, expected: bool) -> bool:
    """A bool, or the int 0/1 that Python 2 era pickles hold instead."""
    return type(value) in (bool, int) and value == expected


def _refuse(what: str) -> UnsafePickleError:
    return UnsafePickleError(f"refusing {what}: a parameter pickle may only contain numeric "
                             "numpy arrays in a dict, pickled as numpy pickles them")


class _Dtype:
    """``numpy.dtype(code, False, True)`` being unpickled; its byte order comes by BUILD."""

    __slots__ = ("code", "dtype")

    def __init__(self, code: str):
        self.code, self.dtype = code, None

    def setstate(self, state: object) -> None:
        if not (self.dtype is None and type(state) is tuple and len(state) == 8
                and _same(state[0], 3)
                and all(_same(a, b) for a, b in zip(state[2:], _DTYPE_STATE_TAIL))):
            raise _refuse(f"the dtype state {_short(state)}")
        base = np.dtype(self.code)
        order = state[1]
        if type(order) is not str or order not in (("|",) if base.itemsize == 1 else ("<", ">")):
            raise _refuse(f"byte order {_short(order)} for dtype {self.code!r}")
        self.dtype = base if order == "|" else base.newbyteorder(order)


class _Array:
    """An ndarray being unpickled: ``_reconstruct(ndarray, (0,), b'b')`` completed by
    BUILD ``(1, shape, dtype, is_fortran, raw_bytes)``, or made at once by ``_frombuffer``."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None):
        self.array = array

    def setstate(self, state: object) -> None:
        if not (self.array is None and type(state) is tuple and len(state) == 5
                and _same(state[0], 1) and type(state[3]) is bool):
            raise _refuse(f"the array state {_short(state)}")
        _, shape, dtype, fortran, data = state
        if type(data) is not bytes:  # numpy writes the raw bytes; a list means objects
            raise _refuse(f"array data of type {type(data).__name__}")
        self.array = _array_from_bytes(data, dtype, shape, "F" if fortran else "C")


def _array_from_bytes(data: bytes | bytearray, dtype: object, shape: object, order: str,
                      axes: tuple[int, ...] | None = None) -> np.ndarray:
    """A new array of ``shape`` read from ``data``, whose length must be exactly its size."""
    if not (isinstance(dtype, _Dtype) and dtype.dtype is not None):
        raise _refuse(f"the array dtype {_short(dtype)}")
    if not (type(shape) is tuple and len(shape) <= _MAX_NDIM
            and all(type(n) is int and n >= 0 for n in shape)):
        raise _refuse(f"the array shape {_short(shape)}")
    nbytes = math.prod(shape) * dtype.dtype.itemsize
    if len(data) != nbytes:
        raise PickleRefused(f"truncated or corrupt pickle: an array of shape {shape} "
                            f"{dtype.dtype} needs {nbytes} bytes, the pickle holds {len(data)}")
    flat = np.frombuffer(data, dtype=dtype.dtype)
    if axes is None:
        return flat.reshape(shape, order=order).copy(order="K")
    return flat.reshape(shape).transpose(axes).copy(order="K")


def _build_dtype(code: object, align: object = False, copy: object = True) -> _Dtype:
    if type(code) is not str or code not in _DTYPE_CODES:
        raise _refuse(f"non-numeric dtype {_short(code)}")
    if not (_flag(align, False) and _flag(copy, True)):
        raise _refuse(f"dtype arguments {_short((code, align, copy))}")
    return _Dtype(code)


def _build_reconstruct(cls: object, shape: object, typecode: object) -> _Array:
    if not (cls is _NDARRAY and _same(shape, (0,)) and _same(typecode, b"b")):
        raise _refuse(f"_reconstruct arguments {_short((cls, shape, typecode))}")
    return _Array()


def _build_frombuffer(buf: object, dtype: object, shape: object, order: object,
                      axes: object = None) -> _Array:
    if type(buf) not in (bytes, bytearray):
        raise _refuse(f"_frombuffer of {type(buf).__name__}")
    if axes is None and order in ("C", "F"):
        return _Array(_array_from_bytes(buf, dtype, shape, order))
    if not (_same(order, "K") and type(axes) is tuple and type(shape) is tuple
            and all(type(a) is int for a in axes) and sorted(axes) == list(range(len(shape)))):
        raise _refuse(f"_frombuffer order {_short(order)} with axes {_short(axes)}")
    return _Array(_array_from_bytes(buf, dtype, shape, "C", axes))


def _build_latin1(text: object, encoding: object) -> bytes:
    """``_codecs.encode(text, 'latin1')``: how protocol 2 writes bytes."""
    if not (type(text) is str and _same(encoding, "latin1")):
        raise _refuse(f"_codecs.encode arguments {_short((text, encoding))}")
    return text.encode("latin1")


def _build_empty_bytes() -> bytes:
    """``bytes()``: how protocol 2 writes ``b''`` (the data of an empty array)."""
    return b""


def _build_dict() -> dict:
    """``OrderedDict()``, filled by SETITEMS; read as a plain dict."""
    return {}


class _Global(NamedTuple):
    """An admitted global: ``builder`` checks the arguments of a REDUCE on it (``None``:
    it may only be an argument, as ``numpy.ndarray`` is to ``_reconstruct``)."""

    name: str
    builder: Any


_NDARRAY = _Global("numpy.ndarray", None)
_GLOBALS = {
    (module, name): glob
    for modules, name, glob in [
        (("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct",
         _Global("_reconstruct", _build_reconstruct)),
        (("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer",
         _Global("_frombuffer", _build_frombuffer)),
        (("numpy",), "ndarray", _NDARRAY),
        (("numpy",), "dtype", _Global("numpy.dtype", _build_dtype)),
        (("_codecs",), "encode", _Global("_codecs.encode", _build_latin1)),
        (("__builtin__", "builtins"), "bytes", _Global("bytes", _build_empty_bytes)),
        (("collections",), "OrderedDict", _Global("OrderedDict", _build_dict)),
    ]
    for module in modules
}

# The opcodes of protocols 2-5 that pickles of dicts of arrays use (and lists, so
# that a list is refused as "not a dict" rather than as an opcode).
_OPCODES = """PROTO FRAME STOP MARK EMPTY_DICT EMPTY_TUPLE EMPTY_LIST TUPLE TUPLE1 TUPLE2 TUPLE3
    LIST APPEND APPENDS SETITEM SETITEMS BININT BININT1 BININT2 NONE NEWTRUE NEWFALSE
    BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8
    GLOBAL STACK_GLOBAL REDUCE BUILD BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET""".split()


class _Dispatch(dict):
    def __missing__(self, code: int):
        raise _refuse(f"the pickle opcode {bytes([code])!r}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def _short(value: object) -> str:
    """A bounded repr of something a file built (any size, any depth)."""
    return _REPR.repr(value)


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler for the book's ``params.pkl``: a dict of names to numeric arrays.

    Only the opcodes such pickles use are read. ``find_class`` admits the
    globals numpy array pickles name (``_reconstruct``, ``ndarray``,
    ``dtype``, ``_frombuffer``; ``_codecs.encode``, ``bytes`` and
    ``OrderedDict`` for protocol 2 and ordered dicts) and raises
    :class:`UnsafePickleError` naming anything else before it runs. REDUCE
    and BUILD accept exactly the arguments and ``__setstate__`` tuples numpy
    writes, for numeric dtypes only: a pickle that calls an admitted global
    any other way is refused. :meth:`load` returns ``{name: ndarray}``.

    The pure-Python unpickler is used so that each of these steps, and every
    size a file declares, is checked before anything is allocated for it.
    """

    dispatch = _Dispatch({getattr(pickle, op)[0]: pickle._Unpickler.dispatch[getattr(pickle, op)[0]]
                          for op in _OPCODES})

    def find_class(self, module: str, name: str) -> _Global:
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load the global {module}.{name}: a parameter pickle may only "
                "contain numpy arrays in a dict"
            ) from None

    def load_proto(self) -> None:
        proto = self.read(1)[0]
        if not 2 <= proto <= pickle.HIGHEST_PROTOCOL:
            raise _refuse(f"pickle protocol {proto} (2 to {pickle.HIGHEST_PROTOCOL} are read)")
        self.proto = proto

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not (isinstance(func, _Global) and func.builder is not None and type(args) is tuple):
            raise _refuse(f"a call of {_short(func)}")
        try:
            self.stack[-1] = func.builder(*args)
        except TypeError:  # the builders check every argument: this is their number
            raise _refuse(f"{func.name} called with {len(args)} arguments") from None

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, (_Dtype, _Array)):
            raise _refuse(f"setting the state of {_short(inst)}")
        inst.setstate(state)

    dispatch[pickle.PROTO[0]] = load_proto
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build

    def load(self) -> dict[str, np.ndarray]:
        loaded = super().load()
        if not isinstance(loaded, dict):
            raise PickleRefused(f"expected a dict of parameter arrays, got {type(loaded).__name__}")
        params = {}
        for name, value in loaded.items():
            if not (type(name) is str and isinstance(value, _Array) and value.array is not None):
                raise PickleRefused(f"entry {_short(name)} is not a named array")
            params[name] = value.array
        return params
