"""Small MNIST-like IDX files for the dataset and CLI tests (no network, no real data)."""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from fastzero.datasets.mnist import FILES


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic, big-endian dims, raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    path.write_bytes(gzip.compress(payload))


def make_arrays(n_train: int = 300, n_test: int = 100, size: int = 28, seed: int = 0):
    """A learnable 10-class problem: each class a fixed random blob pattern plus noise."""
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((10, size, size)) < 0.2) * 200.0

    def split(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = prototypes[labels] + rng.normal(0, 30, (n, size, size))
        return np.clip(images, 0, 255).astype(np.uint8), labels

    (x_train, t_train), (x_test, t_test) = split(n_train), split(n_test)
    return {"train_img": x_train, "train_label": t_train, "test_img": x_test, "test_label": t_test}


def write_mnist(directory: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Write the four gz IDX files into ``directory``; returns file name -> SHA-256 of payload."""
    directory.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for key, name in FILES.items():
        payload = idx_bytes(arrays[key])
        write_gz(directory / name, payload)
        checksums[name] = hashlib.sha256(payload).hexdigest()
    return checksums


def real_mnist_dir() -> Path | None:
    """The real MNIST files for the tests that need them: ``$FASTZERO_DATA`` if it
    holds all four (CI points it at its copy), else None (those tests skip)."""
    from fastzero.datasets.mnist import find_file

    env = os.environ.get("FASTZERO_DATA")
    if env and all(find_file(env, name) for name in FILES.values()):
        return Path(env)
    return None
