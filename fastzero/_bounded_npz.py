"""Reading ``.npz`` archives from untrusted files without trusting their size fields.

Every member's ``.npy`` header is read first (at most ``MAX_HEADER_BYTES``
inflated per member) and checked: a numeric or text dtype, never objects; a
size that agrees with the archive's own record of the member; a record that
the file can hold (stored data within the file, deflated data at most
``MAX_DEFLATE_RATIO`` times its compressed size). The caller's ``check`` then
sees every declared shape and dtype before any data is inflated or
allocated, so a header claiming terabytes, or a small file inflating to
gigabytes, is refused at the cost of reading its headers. Data is read in
chunks into one array per member; the archive's CRC-32 is verified.
"""
from __future__ import annotations

import io
import math
import struct
import zipfile
from typing import BinaryIO, Callable, Collection, Mapping, NamedTuple

import numpy as np

__all__ = ["Declared", "NpzRefused", "read_members"]

NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10000  # numpy's own limit for headers it parses without allow_pickle
MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data more than about 1032 to 1
_CHUNK = 1 << 20
_HEADER_LENGTH = {(1, 0): ("<H", np.lib.format.read_array_header_1_0),
                  (2, 0): ("<I", np.lib.format.read_array_header_2_0)}


class NpzRefused(ValueError):
    """The archive is well-formed enough to read, but one of its members is refused."""


class Declared(NamedTuple):
    """What a member's ``.npy`` header declares, before its data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _Member(NamedTuple):
    info: zipfile.ZipInfo
    header_bytes: int
    declared: Declared


def read_members(f: BinaryIO, check: Callable[[Mapping[str, Declared]], None] | None = None,
                 only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` archive open in ``f`` (seekable), by name without ``.npy``:
    every one, or those named in ``only``.

    Every member's header is read and checked. ``check(declared)`` runs after
    that and before any data is read; it refuses by raising ``ValueError``.
    Raises :class:`NpzRefused`
    for a refused member or check, and zipfile's, zlib's or numpy's own errors
    for a corrupt or truncated archive.
    """
    file_size = f.seek(0, io.SEEK_END)
    f.seek(0)
    with zipfile.ZipFile(f) as archive:
        members: dict[str, _Member] = {}
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in members:
                raise NpzRefused(f"member {name!r} appears twice")
            members[name] = _read_header(archive, info, name, file_size)
        if check is not None:
            try:
                check({name: m.declared for name, m in members.items()})
            except ValueError as exc:
                raise NpzRefused(str(exc)) from None
        return {name: _read_data(archive, m, name) for name, m in members.items()
                if only is None or name in only}


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                 file_size: int) -> _Member:
    """The member's declared shape and dtype, checked against the archive's record of it."""
    if info.flag_bits & 0x1:
        raise NpzRefused(f"member {name!r} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        most = info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        most = info.compress_size * MAX_DEFLATE_RATIO + 1024
    else:
        raise NpzRefused(f"member {name!r} uses compression method {info.compress_type}; "
                         "an .npz is stored or deflated")
    if info.compress_size > file_size or info.file_size > most:
        raise NpzRefused(f"member {name!r} claims {info.file_size} bytes from "
                         f"{info.compress_size} compressed bytes in a file of {file_size}")
    with archive.open(info) as member:
        preamble = member.read(len(NPY_MAGIC) + 2)
        version = tuple(preamble[len(NPY_MAGIC):])
        if not preamble.startswith(NPY_MAGIC) or version not in _HEADER_LENGTH:
            raise NpzRefused(f"member {name!r} is not an .npy array (version 1.0 or 2.0)")
        length_format, parse = _HEADER_LENGTH[version]
        length_field = member.read(struct.calcsize(length_format))
        (length,) = struct.unpack(length_format, length_field)
        if length > MAX_HEADER_BYTES:
            raise NpzRefused(f"member {name!r} has a {length}-byte header "
                             f"(at most {MAX_HEADER_BYTES})")
        header = member.read(length)
    try:
        shape, fortran_order, dtype = parse(io.BytesIO(length_field + header),
                                            max_header_size=MAX_HEADER_BYTES)
    except ValueError as exc:
        raise NpzRefused(f"member {name!r} has a corrupt .npy header ({exc})") from None
    if dtype.hasobject:
        raise NpzRefused(f"member {name!r} holds Python objects, which are never unpickled "
                         "(allow_pickle=False)")
    if (dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufU"
            or dtype.itemsize == 0):
        raise NpzRefused(f"member {name!r} has dtype {dtype}, not numbers or text")
    if any(n < 0 for n in shape):
        raise NpzRefused(f"member {name!r} declares the shape {shape}")
    declared = Declared(shape, dtype, fortran_order)
    header_bytes = len(preamble) + len(length_field) + length
    if declared.nbytes != info.file_size - header_bytes:
        raise NpzRefused(f"member {name!r} declares {shape} {dtype} ({declared.nbytes} bytes), "
                         f"the archive holds {info.file_size - header_bytes} bytes of data")
    return _Member(info, header_bytes, declared)


def _read_data(archive: zipfile.ZipFile, member: _Member, name: str) -> np.ndarray:
    """The member's array, read in chunks into memory of its declared (checked) size."""
    declared = member.declared
    out = np.empty(declared.nbytes, dtype=np.uint8)
    view = memoryview(out)
    with archive.open(member.info) as f:
        f.read(member.header_bytes)
        filled = 0
        while filled < declared.nbytes:
            chunk = f.read(min(_CHUNK, declared.nbytes - filled))
            if not chunk:
                raise NpzRefused(f"member {name!r} is truncated")
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        if f.read(1):  # also where zipfile verifies the CRC-32 of the whole member
            raise NpzRefused(f"member {name!r} holds more data than its header declares")
    order = "F" if declared.fortran_order else "C"
    return out.view(declared.dtype).reshape(declared.shape, order=order)
