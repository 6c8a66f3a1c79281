"""load_mnist on small generated IDX files: formats, integrity checks, download path."""
import functools
import gzip
import hashlib
import http.server
import os
import socket
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from fastzero.datasets import load_mnist
from fastzero.datasets import mnist
from idx_fixtures import real_mnist_dir, idx_bytes, make_arrays, write_gz, write_mnist

REAL_MNIST = real_mnist_dir()


def _offline(url, out):
    raise urllib.error.URLError("network unreachable (test)")


@pytest.fixture
def arrays():
    return make_arrays(n_train=50, n_test=20, size=28, seed=1)


@pytest.fixture
def data_dir(tmp_path, arrays, monkeypatch):
    """A directory with the four files; their checksums replace the real ones."""
    directory = tmp_path / "mnist"
    monkeypatch.setattr(mnist, "SHA256", write_mnist(directory, arrays))
    monkeypatch.setattr(mnist, "fetch_url", _offline)
    return directory


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot_label", [True, False])
def test_formats_match_the_book(data_dir, arrays, normalize, flatten, one_hot_label):
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=normalize, flatten=flatten, one_hot_label=one_hot_label, data_dir=data_dir
    )
    for x, t, split in [(x_train, t_train, "train"), (x_test, t_test, "test")]:
        images, labels = arrays[f"{split}_img"], arrays[f"{split}_label"]
        n = len(labels)
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        if normalize:
            assert x.dtype == np.float32
            np.testing.assert_array_equal(x.reshape(images.shape), images.astype(np.float32) / 255)
            assert 0.0 <= x.min() and x.max() <= 1.0
        else:
            assert x.dtype == np.uint8
            np.testing.assert_array_equal(x.reshape(images.shape), images)
        if one_hot_label:
            assert t.shape == (n, 10) and t.dtype == np.float64
            np.testing.assert_array_equal(t.argmax(axis=1), labels)
            np.testing.assert_array_equal(t.sum(axis=1), 1)
        else:
            assert t.shape == (n,) and t.dtype == np.uint8
            np.testing.assert_array_equal(t, labels)
        assert x.flags.writeable and x.flags.c_contiguous


def test_checksum_mismatch_names_the_file(data_dir, arrays):
    images = arrays["test_img"].copy()
    images[0, 0, 0] ^= 1  # one flipped bit, valid IDX otherwise
    write_gz(data_dir / "t10k-images-idx3-ubyte.gz", idx_bytes(images))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*SHA-256"):
        load_mnist(data_dir=data_dir)


def test_truncated_gzip_names_the_file(data_dir):
    path = data_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz.*truncated or corrupt"):
        load_mnist(data_dir=data_dir)


def test_not_gzip_is_refused(data_dir):
    (data_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip data at all")
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz"):
        load_mnist(data_dir=data_dir)


@pytest.mark.parametrize("count", [51, 2**32 - 1])
def test_header_claiming_more_data_is_refused(data_dir, arrays, monkeypatch, count):
    # A header that lies about the number of images (up to 4 G images of
    # 28x28 = 3 TB) must be refused from the sizes alone, without allocating.
    payload = bytearray(idx_bytes(arrays["train_img"]))
    payload[4:8] = count.to_bytes(4, "big")
    write_gz(data_dir / "train-images-idx3-ubyte.gz", bytes(payload))
    monkeypatch.setitem(mnist.SHA256, "train-images-idx3-ubyte.gz",
                        hashlib.sha256(payload).hexdigest())
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: IDX header declares"):
        load_mnist(data_dir=data_dir)


def test_wrong_magic_is_refused(data_dir, arrays):
    payload = bytearray(idx_bytes(arrays["train_label"]))
    payload[2] = 0x0D  # float32 instead of unsigned bytes
    write_gz(data_dir / "train-labels-idx1-ubyte.gz", bytes(payload))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: IDX header says type 0x0d"):
        load_mnist(data_dir=data_dir)


def test_image_label_count_mismatch(tmp_path, arrays, monkeypatch):
    arrays = dict(arrays, test_label=arrays["test_label"][:-1])
    monkeypatch.setattr(mnist, "SHA256", write_mnist(tmp_path, arrays))
    with pytest.raises(ValueError, match="test set has 20 images but 19 labels"):
        load_mnist(data_dir=tmp_path)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """The default data directory (no directory named), inside ``tmp_path``."""
    monkeypatch.delenv("FASTZERO_DATA", raising=False)
    monkeypatch.delenv("FASTZERO_MNIST_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "fastzero" / "mnist"


def test_missing_files_offline_say_where_to_put_them(cache_dir, monkeypatch):
    monkeypatch.setattr(mnist, "fetch_url", _offline)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist()
    message = str(info.value)
    assert str(cache_dir) in message
    for name in mnist.FILES.values():
        assert name in message
    assert "network unreachable" in message
    for way in ("--data-dir DIR", "FASTZERO_DATA=DIR", f"copying them into {cache_dir}"):
        assert way in message
    # one short reason per mirror, each mirror tried once (not once per file)
    assert message.count("network unreachable") == len(mnist.MIRRORS)
    assert len(message) < 1000
    assert list(cache_dir.iterdir()) == []  # nothing half-written left behind


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_named_data_dir_that_does_not_exist_is_not_created(tmp_path, monkeypatch, how):
    monkeypatch.setattr(mnist, "fetch_url", _offline)
    directory = tmp_path / "typo" / "mnist"
    if how == "environment":
        monkeypatch.setenv("FASTZERO_DATA", str(directory))
    with pytest.raises(FileNotFoundError, match="that directory does not exist") as info:
        load_mnist(data_dir=directory if how == "argument" else None)
    assert str(directory) in str(info.value)
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("naming", ["torchvision", "kaggle"])
def test_uncompressed_files_are_read_and_verified(tmp_path, arrays, monkeypatch, naming):
    gz_dir = tmp_path / "gz"
    monkeypatch.setattr(mnist, "SHA256", write_mnist(gz_dir, arrays))
    monkeypatch.setattr(mnist, "fetch_url", _offline)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for name in mnist.FILES.values():
        raw_name = mnist.UNCOMPRESSED_NAMES[name][0 if naming == "torchvision" else 1]
        (raw_dir / raw_name).write_bytes(gzip.decompress((gz_dir / name).read_bytes()))
    (x_train, _), (_, t_test) = load_mnist(normalize=False, data_dir=raw_dir)
    np.testing.assert_array_equal(x_train.reshape(arrays["train_img"].shape), arrays["train_img"])
    np.testing.assert_array_equal(t_test, arrays["test_label"])
    assert all(s.startswith("verified") for s in mnist.verify_files(raw_dir).values())
    # a flipped byte in an uncompressed file is caught by the checksum
    raw_labels = raw_dir / mnist.UNCOMPRESSED_NAMES["t10k-labels-idx1-ubyte.gz"][0 if naming == "torchvision" else 1]
    payload = bytearray(raw_labels.read_bytes())
    payload[-1] ^= 1
    raw_labels.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="SHA-256"):
        load_mnist(data_dir=raw_dir)


def _serving(files_by_url, calls):
    def fake_fetch(url, out):
        calls.append(url)
        name = url.rsplit("/", 1)[-1]
        final = Path(out.name).parent / name
        assert not final.exists(), "the final name must not exist while downloading"
        assert Path(out.name).exists() and Path(out.name).parent == final.parent
        if url not in files_by_url:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        out.write(files_by_url[url])
    return fake_fetch


def test_download_verifies_then_renames(tmp_path, arrays, monkeypatch):
    source = tmp_path / "source"
    checksums = write_mnist(source, arrays)
    monkeypatch.setattr(mnist, "SHA256", checksums)
    first, second = mnist.MIRRORS[:2]
    served = {second + name: (source / name).read_bytes() for name in mnist.FILES.values()}
    # The first mirror serves a corrupt (but well-formed) image file and nothing else.
    bad = arrays["train_img"].copy()
    bad[0, 0, 0] ^= 1
    served[first + "train-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(bad))
    calls = []
    monkeypatch.setattr(mnist, "fetch_url", _serving(served, calls))

    directory = tmp_path / "cache" / "mnist"
    directory.mkdir(parents=True)
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, data_dir=directory)

    np.testing.assert_array_equal(x_train.reshape(arrays["train_img"].shape), arrays["train_img"])
    np.testing.assert_array_equal(t_test, arrays["test_label"])
    assert sorted(os.listdir(directory)) == sorted(mnist.FILES.values())  # no temp files
    for name in mnist.FILES.values():
        assert (directory / name).read_bytes() == (source / name).read_bytes()
    assert calls.count(first + "train-images-idx3-ubyte.gz") == 1
    assert all(url.startswith((first, second)) for url in calls)

    # Present files are read, not downloaded again.
    calls.clear()
    load_mnist(data_dir=directory)
    assert calls == []


def test_download_of_only_corrupt_data_fails_cleanly(tmp_path, arrays, monkeypatch):
    monkeypatch.setattr(mnist, "SHA256", write_mnist(tmp_path / "source", arrays))
    garbage = {m + n: b"\x1f\x8b garbage" for m in mnist.MIRRORS for n in mnist.FILES.values()}
    monkeypatch.setattr(mnist, "fetch_url", _serving(garbage, []))
    directory = tmp_path / "cache"
    directory.mkdir()
    with pytest.raises(FileNotFoundError, match="truncated or corrupt gzip") as info:
        load_mnist(data_dir=directory)
    assert str(directory) in str(info.value)
    assert list(directory.iterdir()) == []


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTZERO_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert mnist.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("FASTZERO_DATA")
    assert mnist.resolve_data_dir() == tmp_path / "xdg" / "fastzero" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist.resolve_data_dir() == tmp_path / "home" / ".cache" / "fastzero" / "mnist"


def _serve(directory: Path):
    """An HTTP server on 127.0.0.1 serving ``directory``; returns (server, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_from_a_local_http_server(tmp_path, arrays, cache_dir, monkeypatch, capsys):
    """The real download path (urllib, progress, verification, rename) against a
    server on loopback; a mirror that accepts connections but never answers is
    given up after TIMEOUT and not asked again for the other files."""
    source = tmp_path / "served"
    monkeypatch.setattr(mnist, "SHA256", write_mnist(source, arrays))
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)  # accepts the connection, never sends a byte
    stalled_url = f"http://127.0.0.1:{stalled.getsockname()[1]}/"
    server, url = _serve(source)
    monkeypatch.setattr(mnist, "TIMEOUT", 0.5)
    monkeypatch.setenv("FASTZERO_MNIST_MIRRORS", f"{stalled_url}, {url}")
    try:
        (x_train, _), (_, t_test) = load_mnist(normalize=False)
    finally:
        server.shutdown()
        stalled.close()
    np.testing.assert_array_equal(x_train.reshape(arrays["train_img"].shape), arrays["train_img"])
    np.testing.assert_array_equal(t_test, arrays["test_label"])
    assert sorted(os.listdir(cache_dir)) == sorted(mnist.FILES.values())
    err = capsys.readouterr().err
    assert f"downloading MNIST into {cache_dir}" in err
    assert err.count(f"from {url}") == 4
    assert err.count(stalled_url) == 1  # given up once, then skipped


def test_file_status(data_dir):
    (data_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    status = mnist.file_status(data_dir)
    assert status == {name: name != "t10k-labels-idx1-ubyte.gz" for name in mnist.FILES.values()}


@pytest.mark.skipif(REAL_MNIST is None, reason="real MNIST files not in $FASTZERO_DATA")
def test_real_mnist_checksums_and_shapes():
    (x_train, t_train), (x_test, t_test) = load_mnist(data_dir=REAL_MNIST)
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert t_train.shape == (60000,) and t_test.shape == (10000,)
    assert np.bincount(t_test).tolist()[:3] == [980, 1135, 1032]


@pytest.fixture
def kept(data_dir, tmp_path, monkeypatch):
    """The generated files count as published (their payloads are kept decompressed), the
    copies go to ``tmp_path/xdg/fastzero/idx``; yields that directory."""
    monkeypatch.setattr(mnist, "_PUBLISHED", frozenset(mnist.SHA256.values()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "fastzero" / "idx"


def _no_gunzip(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decompressed a file that has a kept copy")
    monkeypatch.setattr(mnist.gzip, "open", refuse)


def test_a_second_load_reads_the_kept_decompressed_copies(data_dir, arrays, kept, monkeypatch):
    first = load_mnist(normalize=False, data_dir=data_dir)
    names = {hashlib.sha256((data_dir / name).read_bytes()).hexdigest() for name in mnist.FILES.values()}
    assert kept == mnist.decompressed_dir() and {p.name for p in kept.iterdir()} == names
    _no_gunzip(monkeypatch)
    second = load_mnist(normalize=False, data_dir=data_dir)
    for split_first, split_second in zip(first, second):
        for a, b in zip(split_first, split_second):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second[0][0].reshape(arrays["train_img"].shape), arrays["train_img"])


def test_a_wrong_copy_is_ignored_and_replaced(data_dir, arrays, kept):
    load_mnist(normalize=False, data_dir=data_dir)
    name = hashlib.sha256((data_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    good = (kept / name).read_bytes()
    (kept / name).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one flipped bit
    (_, _), (_, t_test) = load_mnist(normalize=False, data_dir=data_dir)
    np.testing.assert_array_equal(t_test, arrays["test_label"])
    assert (kept / name).read_bytes() == good


def test_a_changed_file_is_never_answered_by_the_old_copy(data_dir, arrays, kept):
    load_mnist(normalize=False, data_dir=data_dir)
    labels = data_dir / "t10k-labels-idx1-ubyte.gz"
    changed = arrays["test_label"].copy()
    changed[0] = (changed[0] + 1) % 10
    write_gz(labels, idx_bytes(changed))  # a valid IDX file, not the one whose SHA-256 is expected
    with pytest.raises(ValueError, match="SHA-256"):
        load_mnist(data_dir=data_dir)
    assert mnist.verify_files(data_dir)["t10k-labels-idx1-ubyte.gz"].startswith("refused")


def test_an_unwritable_cache_only_costs_the_decompression(data_dir, arrays, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "_PUBLISHED", frozenset(mnist.SHA256.values()))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    for _ in range(2):
        (x_train, _), _ = load_mnist(normalize=False, data_dir=data_dir)
        np.testing.assert_array_equal(x_train.reshape(arrays["train_img"].shape), arrays["train_img"])


def test_only_the_published_files_are_kept(data_dir, tmp_path, monkeypatch):
    """Files that are not the published MNIST (the generated ones here) leave no copy."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_mnist(data_dir=data_dir)
    assert not mnist.decompressed_dir().exists()
