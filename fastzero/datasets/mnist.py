"""MNIST as the book loads it (``dataset/mnist.py``), from the four IDX gzip files.

The files are looked up in one directory (see :func:`resolve_data_dir`).
Each file is decompressed, its IDX header checked against its actual size,
and the SHA-256 of the decompressed payload compared with the published
MNIST values before any array is returned. Missing files are downloaded
from the first mirror in :data:`MIRRORS` that serves them, into a temporary
file that is verified before it is renamed to its final name.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fastzero.params_io import atomic_write

__all__ = ["FILES", "MIRRORS", "SHA256", "fetch_url", "file_status", "load_mnist",
           "read_idx", "resolve_data_dir"]

#: The book's dataset keys -> file names (gzip-compressed IDX).
FILES: dict[str, str] = {
    "train_img": "train-images-idx3-ubyte.gz",
    "train_label": "train-labels-idx1-ubyte.gz",
    "test_img": "t10k-images-idx3-ubyte.gz",
    "test_label": "t10k-labels-idx1-ubyte.gz",
}

#: SHA-256 of each file's *decompressed* IDX payload.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Public MNIST mirrors, tried in order; a file's URL is mirror + file name.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Largest decompressed payload accepted (train images: 47,040,016 bytes).
MAX_IDX_BYTES = 64 * 2**20

_IDX_UBYTE = 0x08
_NDIM = {"train_img": 3, "train_label": 1, "test_img": 3, "test_label": 1}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The MNIST directory: ``data_dir``, else ``$FASTZERO_DATA``, else the user cache.

    The user cache is ``$XDG_CACHE_HOME/fastzero/mnist``, by default
    ``~/.cache/fastzero/mnist``.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("FASTZERO_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "fastzero" / "mnist"


def file_status(data_dir: str | os.PathLike | None = None) -> dict[str, bool]:
    """File name -> whether it is present in the resolved data directory."""
    directory = resolve_data_dir(data_dir)
    return {name: (directory / name).is_file() for name in FILES.values()}


def read_idx(path: str | os.PathLike, ndim: int, sha256: str | None = None) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes with ``ndim`` dimensions.

    The header's dimensions must account for exactly the payload present, and
    the decompressed file's SHA-256 must equal ``sha256`` (when given).
    Raises ``ValueError`` naming the file otherwise.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({exc})") from exc
    if len(raw) > MAX_IDX_BYTES:
        raise ValueError(f"{path}: decompresses to more than {MAX_IDX_BYTES} bytes; not an MNIST file")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size or raw[:2] != b"\0\0":
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise ValueError(
            f"{path}: IDX header says type 0x{raw[2]:02x} with {raw[3]} dimensions, "
            f"expected unsigned bytes (0x08) with {ndim}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(shape, dtype=object))
    if expected != len(raw):
        raise ValueError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw)} bytes"
        )
    if sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise ValueError(
                f"{path}: SHA-256 of the decompressed data is {digest}, expected {sha256}; "
                "the file is corrupt or not the MNIST file of that name (delete it to re-download)"
            )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def fetch_url(url: str, out: BinaryIO) -> None:
    """Download ``url`` into the open binary file ``out``, with a progress bar.

    This is the only function that touches the network; tests replace it.
    """
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  leave=False) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))


def _download(directory: Path, name: str, ndim: int) -> np.ndarray:
    """Fetch ``name`` from the mirrors, verify it, then rename it into ``directory``."""
    errors = []
    for mirror in MIRRORS:
        try:
            with atomic_write(directory / name) as f:
                fetch_url(mirror + name, f)
                f.flush()
                return read_idx(f.name, ndim, SHA256[name])
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors.append(f"{mirror}{name}: {exc}")
    raise OSError("; ".join(errors))


def _missing_files_error(directory: Path, missing: list[str], reason: str) -> FileNotFoundError:
    names = "\n".join(f"  {name}" for name in FILES.values())
    return FileNotFoundError(
        f"MNIST files missing from {directory}: {', '.join(missing)}; {reason}.\n"
        f"Put these four files (gzip-compressed IDX, as published) in {directory}:\n{names}\n"
        "or point data_dir= / the FASTZERO_DATA environment variable at a directory holding them."
    )


def _read_all(directory: Path) -> dict[str, np.ndarray]:
    missing = [name for name in FILES.values() if not (directory / name).is_file()]
    arrays = {}
    if missing:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _missing_files_error(directory, missing, f"cannot create the directory ({exc})")
        errors = []
        for key, name in FILES.items():
            if name in missing:
                try:
                    arrays[key] = _download(directory, name, _NDIM[key])
                except OSError as exc:
                    errors.append(str(exc))
        if errors:
            raise _missing_files_error(directory, missing, "download failed: " + "; ".join(errors))
    for key, name in FILES.items():
        if key not in arrays:
            arrays[key] = read_idx(directory / name, _NDIM[key], SHA256[name])
    for split in ("train", "test"):
        n_img, n_label = len(arrays[f"{split}_img"]), len(arrays[f"{split}_label"])
        if n_img != n_label:
            raise ValueError(f"{directory}: {split} set has {n_img} images but {n_label} labels")
    return arrays


def _one_hot(labels: np.ndarray) -> np.ndarray:
    t = np.zeros((labels.size, 10))
    t[np.arange(labels.size), labels] = 1
    return t


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False,
               data_dir: str | os.PathLike | None = None):
    """Load MNIST: ``((x_train, t_train), (x_test, t_test))``, as the book's ``load_mnist``.

    Parameters
    ----------
    normalize : scale pixels to float32 in [0, 1]; otherwise keep uint8 in [0, 255].
    flatten : images as (N, 784) rows; otherwise (N, 1, 28, 28).
    one_hot_label : labels as (N, 10) float64 one-hot rows; otherwise (N,) uint8.
    data_dir : directory of the four IDX files (see :func:`resolve_data_dir`);
        missing files are downloaded into it.
    """
    arrays = _read_all(resolve_data_dir(data_dir))
    out = []
    for split in ("train", "test"):
        x, t = arrays[f"{split}_img"], arrays[f"{split}_label"]
        x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *x.shape[1:])
        x = x.astype(np.float32) / np.float32(255.0) if normalize else x.copy()
        t = _one_hot(t) if one_hot_label else t.copy()
        out.append((x, t))
    return tuple(out)
