"""MNIST as the book loads it (``dataset/mnist.py``), from the four IDX gzip files.

The files are looked up in one directory (see :func:`resolve_data_dir`).
Each file (gzip-compressed as published, or uncompressed as torchvision and
Kaggle ship it) is decompressed, its IDX header checked against its actual
size, and the SHA-256 of the decompressed payload compared with the published
MNIST values before any array is returned. Missing files are downloaded from
the first mirror in :func:`mirrors` that serves them, into a temporary file
that is verified before it is renamed to its final name.

Decompressing costs about 0.2 s per load (the book reads a pickle it wrote
on its first run instead), so a verified payload is also kept decompressed
in :func:`decompressed_dir`, named by the SHA-256 of the gzip file it came
from; a later load of that same file reads the copy and checks its SHA-256
against the published value again. A copy that is missing, unreadable or
wrong only costs the decompression, and an unwritable cache only the time.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fastzero.params_io import atomic_write

__all__ = ["FILES", "MIRRORS", "SHA256", "UNCOMPRESSED_NAMES", "decompressed_dir", "default_data_dir",
           "fetch_url", "file_status", "find_file", "load_mnist", "mirrors", "read_idx", "resolve_data_dir",
           "verify_files"]

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

#: The same files uncompressed, as torchvision (dashes) and Kaggle (a dot) name them.
UNCOMPRESSED_NAMES: dict[str, tuple[str, ...]] = {
    name: (name[:-3], name[:-3].replace("-idx", ".idx")) for name in FILES.values()
}

#: Seconds a download may wait for the server (to connect, or for the next bytes).
TIMEOUT = 10.0

#: Largest decompressed payload accepted (train images: 47,040,016 bytes).
MAX_IDX_BYTES = 64 * 2**20

_IDX_UBYTE = 0x08
_NDIM = {"train_img": 3, "train_label": 1, "test_img": 3, "test_label": 1}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The MNIST directory: ``data_dir``, else ``$FASTZERO_DATA``, else the user cache.

    The user cache is ``$XDG_CACHE_HOME/fastzero/mnist``, by default
    ``~/.cache/fastzero/mnist``.
    """
    named = _named_data_dir(data_dir)
    return named if named is not None else default_data_dir()


def default_data_dir() -> Path:
    """The user cache directory MNIST is downloaded into when no directory is named."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "fastzero" / "mnist"


def decompressed_dir() -> Path:
    """Where verified MNIST payloads are kept decompressed: ``$XDG_CACHE_HOME/fastzero/idx``,
    by default ``~/.cache/fastzero/idx`` (about 55 MB for the four files)."""
    return default_data_dir().parent / "idx"


def _named_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The directory the user named (argument, else ``$FASTZERO_DATA``), if any."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("FASTZERO_DATA")
    return Path(env).expanduser() if env else None


def mirrors() -> tuple[str, ...]:
    """The mirrors to download from: ``$FASTZERO_MNIST_MIRRORS`` (URLs separated by
    commas or spaces) if set, else :data:`MIRRORS`."""
    env = os.environ.get("FASTZERO_MNIST_MIRRORS", "")
    urls = [u if u.endswith("/") else u + "/" for u in env.replace(",", " ").split()]
    return tuple(urls) or MIRRORS


def find_file(directory: str | os.PathLike, name: str) -> Path | None:
    """The file holding MNIST's ``name`` in ``directory``: the published gzip file,
    or the same file uncompressed under any of :data:`UNCOMPRESSED_NAMES`."""
    directory = Path(directory)
    for candidate in (name, *UNCOMPRESSED_NAMES[name]):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def file_status(data_dir: str | os.PathLike | None = None) -> dict[str, bool]:
    """File name -> whether it is present (compressed or not) in the resolved data directory."""
    directory = resolve_data_dir(data_dir)
    return {name: find_file(directory, name) is not None for name in FILES.values()}


def verify_files(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """File name -> ``"verified (<path>)"``, ``"missing"`` or ``"refused: <reason>"``,
    each present file read and checked by SHA-256 as :func:`load_mnist` would."""
    directory = resolve_data_dir(data_dir)
    status = {}
    for key, name in FILES.items():
        path = find_file(directory, name)
        if path is None:
            status[name] = "missing"
            continue
        try:
            read_idx(path, _NDIM[key], SHA256[name])
        except ValueError as exc:
            status[name] = f"refused: {str(exc).removeprefix(f'{path}: ')}"
        else:
            status[name] = f"verified ({path.name})"
    return status


def read_idx(path: str | os.PathLike, ndim: int, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions, gzip-compressed or not.

    The header's dimensions must account for exactly the payload present, and
    the decompressed file's SHA-256 must equal ``sha256`` (when given).
    Raises ``ValueError`` naming the file otherwise. A gzip file whose
    ``sha256`` is a published MNIST one is read from, or kept as, a verified
    decompressed copy in :func:`decompressed_dir`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        copy = _copy_name(f) if compressed and sha256 in _PUBLISHED else None
    raw = _kept_copy(copy, sha256) if copy else None
    verified = raw is not None
    if raw is None:
        raw = _payload(path, compressed)
    if len(raw) > MAX_IDX_BYTES:
        raise ValueError(f"{path}: holds more than {MAX_IDX_BYTES} bytes; not an MNIST file")
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
    if sha256 is not None and not verified:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise ValueError(
                f"{path}: SHA-256 of the decompressed data is {digest}, expected {sha256}; "
                "the file is corrupt or not the MNIST file of that name (delete it to re-download)"
            )
        if copy:
            _keep_copy(copy, raw)
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


#: The published payloads' SHA-256: only these are kept decompressed.
_PUBLISHED = frozenset(SHA256.values())


def _payload(path: Path, compressed: bool) -> bytes:
    """The file's IDX bytes, decompressed, at most :data:`MAX_IDX_BYTES` + 1 of them."""
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            return f.read(MAX_IDX_BYTES + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({exc})") from exc


def _copy_name(gz: BinaryIO) -> str:
    """The name of the decompressed copy of the open gzip file ``gz``: its SHA-256, so that
    a changed file is never answered by the copy of the old one."""
    digest = hashlib.sha256()
    for block in iter(lambda: gz.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _kept_copy(name: str, sha256: str) -> bytes | None:
    """The kept decompressed copy ``name`` if it exists and its SHA-256 is ``sha256``."""
    try:
        with open(decompressed_dir() / name, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except OSError:
        return None
    return raw if hashlib.sha256(raw).hexdigest() == sha256 else None


def _keep_copy(name: str, raw: bytes) -> None:
    """Keep the verified payload ``raw`` as copy ``name``; nothing happens if it cannot be written."""
    directory = decompressed_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(directory / name) as f:
            f.write(raw)
    except OSError:
        pass


def fetch_url(url: str, out: BinaryIO) -> None:
    """Download ``url`` into the open binary file ``out``, with a progress bar.

    Gives up when the server sends nothing for :data:`TIMEOUT` seconds. This is
    the only function that touches the network; tests replace it.
    """
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  leave=False) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))


def _short(exc: BaseException) -> str:
    """One line of an exception, without urllib's wrapping."""
    reason = getattr(exc, "reason", None)
    text = str(reason if isinstance(exc, urllib.error.URLError) and reason else exc)
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _download_all(directory: Path, missing: list[str]) -> dict[str, np.ndarray]:
    """Fetch the ``missing`` files into ``directory``, each verified before it is renamed
    into place. A mirror that cannot be reached is not asked for the other files.
    Raises ``OSError`` with one short line per mirror when a file cannot be had."""
    print(f"fastzero: downloading MNIST into {directory}", file=sys.stderr)
    arrays, dead, errors = {}, {}, {}
    for key, name in FILES.items():
        if name not in missing:
            continue
        for mirror in mirrors():
            if mirror in dead:
                continue
            print(f"fastzero: {name} from {mirror}", file=sys.stderr)
            try:
                with atomic_write(directory / name) as f:
                    fetch_url(mirror + name, f)
                    f.flush()
                    arrays[key] = read_idx(f.name, _NDIM[key], SHA256[name])
                break
            except (urllib.error.HTTPError, ValueError) as exc:  # the server answered
                errors[mirror] = _short(exc)
            except (OSError, http.client.HTTPException) as exc:  # unreachable or stalled
                dead[mirror] = errors[mirror] = _short(exc)
        else:
            raise OSError("; ".join(f"{m}: {e}" for m, e in errors.items()))
    return arrays


def _missing_files_error(directory: Path, missing: list[str], reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"MNIST: {len(missing)} of the 4 files missing in {directory} "
        f"({', '.join(missing)}); {reason}.\n"
        "Supply the four files (gzip-compressed or not, e.g. the book's dataset/ folder) by one of:\n"
        "  fastzero train --data-dir DIR ...   (load_mnist(data_dir=DIR) in Python)\n"
        "  export FASTZERO_DATA=DIR\n"
        f"  copying them into {default_data_dir()}"
    )


def _read_all(directory: Path, named: bool) -> dict[str, np.ndarray]:
    if named and not directory.is_dir():
        raise _missing_files_error(directory, list(FILES.values()), "that directory does not exist")
    missing = [name for name in FILES.values() if find_file(directory, name) is None]
    arrays = {}
    if missing:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            arrays = _download_all(directory, missing)
        except OSError as exc:
            raise _missing_files_error(directory, missing, f"download failed ({exc})") from None
    for key, name in FILES.items():
        if key not in arrays:
            arrays[key] = read_idx(find_file(directory, name), _NDIM[key], SHA256[name])
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
        missing files are downloaded into it. A directory named here or by
        ``$FASTZERO_DATA`` must exist; only the default cache directory is created.
    """
    named = _named_data_dir(data_dir)
    arrays = _read_all(named or default_data_dir(), named=named is not None)
    out = []
    for split in ("train", "test"):
        x, t = arrays[f"{split}_img"], arrays[f"{split}_label"]
        x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *x.shape[1:])
        if normalize:  # divided in place, as the book: one float32 array, not two
            x = x.astype(np.float32)
            x /= np.float32(255.0)
        else:
            x = x.copy()
        t = _one_hot(t) if one_hot_label else t.copy()
        out.append((x, t))
    return tuple(out)
