"""Hostile files: every loader refuses them, runs nothing and allocates nothing huge.

* Pickles whose ``__reduce__`` would run code (``os.system``, ``exec``,
  ``eval``, ``open``, ``numpy.save``, ``pathlib.Path.touch``), placed at the
  top level, as a parameter, inside an object array or as a dict key, in
  pickle protocols 0-5, handed to ``params_io``, every network's
  ``load_params``, ``Trainer.load_checkpoint`` and the ``fastzero evaluate`` /
  ``fastzero train --resume`` commands: refused, and the file the payload
  would create never appears. The parameters stay as they were.
* ``.npz`` archives with object arrays (benign or carrying a payload), raw
  pickles as members, or ``.npy`` headers claiming terabytes: refused.
* IDX files whose header lies (2**31 images, dimensions larger than the data,
  trailing data, another element type) and gzip bombs: refused, with the
  memory used bounded by the loader's cap, never by the header's claim.
* Random mutations of valid files, loaded in a child process with a capped
  address space: the child never crashes (``FASTZERO_FUZZ_CASES`` per file,
  default 60; try 2000).
* Pickles that call the globals an array pickle names in other ways than
  numpy does (an object array over attacker bytes handed to ``OrderedDict``,
  random combinations of every admitted global with object dtypes, buffers
  and bogus ``__setstate__`` tuples), read in a child process: refused with a
  ValueError naming the file, never a crash (``FASTZERO_FUZZ_CASES`` x 5).
"""
from __future__ import annotations

import builtins
import gzip
import io
import json
import os
import pathlib
import pickle
import re
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastzero
from fastzero import cli, params_io
from fastzero.datasets import mnist
from fastzero.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from fastzero.trainer import Trainer
from idx_fixtures import idx_bytes, make_arrays, write_mnist

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def numpy_backend():
    """Loading is backend-independent; the reference backend avoids compiling kernels."""
    with fastzero.use_backend("numpy"):
        yield


class Reduce:
    """A pickle payload: unpickling calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path, template: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Pickled files that would create ``marker`` when unpickled, by name."""
    touch = {
        "os.system": Reduce(os.system, f"touch {marker}"),
        "exec": Reduce(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "eval": Reduce(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "open": Reduce(builtins.open, str(marker), "w"),
        "numpy.save": Reduce(np.save, str(marker), np.ones(1)),
        "Path.touch": Reduce(pathlib.Path.touch, pathlib.Path(marker)),
    }
    files = {}
    for name, payload in touch.items():
        for protocol in (2, 4, 5):
            files[f"{name}-as-param-p{protocol}"] = pickle.dumps({**template, "W1": payload}, protocol)
        files[f"{name}-top-level"] = pickle.dumps(payload)
    files["in-object-array"] = pickle.dumps({**template, "W1": np.array([touch["os.system"]], dtype=object)})
    files["as-dict-key"] = pickle.dumps({**template, touch["open"]: np.ones(2)})
    files["protocol-0"] = pickle.dumps({**template, "W1": touch["os.system"]}, protocol=0)
    files["protocol-1"] = pickle.dumps({**template, "W1": touch["os.system"]}, protocol=1)
    files["after-valid-arrays"] = pickle.dumps([template, touch["exec"]])
    # an .npz whose member is a pickled object array carrying the payload
    buf = io.BytesIO()
    np.savez(buf, **{**template, "W1": np.array([touch["os.system"]], dtype=object)})
    files["npz-object-array-payload"] = buf.getvalue()
    # an .npz whose member is a raw pickle, not an .npy
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for key, value in template.items():
            with z.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, value)
        z.writestr("W1", pickle.dumps(touch["os.system"]))
    files["npz-raw-pickle-member"] = buf.getvalue()
    return files


def small_nets():
    """One instance of every network, small where the constructor allows."""
    return {
        "TwoLayerNet": TwoLayerNet(6, 5, 3, seed=0),
        "MultiLayerNet": MultiLayerNet(6, [5, 4], 3, seed=0),
        "MultiLayerNetExtend": MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0),
        "SimpleConvNet": SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3, "pad": 0,
                                                   "stride": 1}, hidden_size=4, output_size=3, seed=0),
        "DeepConvNet": DeepConvNet(seed=0),
    }


def _trainer(net=None):
    x, t = np.random.default_rng(0).standard_normal((20, 6)), np.arange(20) % 3
    return Trainer(net or TwoLayerNet(6, 5, 3, seed=0), x, t, x[:10], t[:10], epochs=1,
                   mini_batch_size=5, optimizer="Adam", verbose=False, seed=1)


def snapshot(net) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in net.state().items()}


def assert_unchanged(net, before):
    for key, value in net.state().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


# ------------------------------------------------------------------ code-running pickles

@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a hostile file ran code"


def test_the_payloads_do_run_when_unpickled_naively(tmp_path):
    """Guard against a vacuous suite: plain pickle.loads creates the marker for every payload kind."""
    for kind in ("os.system", "exec", "eval", "open", "numpy.save", "Path.touch"):
        path = tmp_path / f"m-{kind}"
        data = payloads(path, {})[f"{kind}-top-level"]
        result = pickle.loads(data)
        if hasattr(result, "close"):
            result.close()
        assert path.exists() or Path(f"{path}.npy").exists(), kind


@pytest.mark.parametrize("net_name", ["TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend",
                                      "SimpleConvNet", "DeepConvNet"])
def test_every_network_load_params_refuses_code_running_pickles(tmp_path, marker, net_name):
    net = small_nets()[net_name]
    before = snapshot(net)
    for name, data in payloads(marker, before).items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        with pytest.raises((pickle.UnpicklingError, ValueError)):
            net.load_params(path)
        assert not marker.exists() and not Path(f"{marker}.npy").exists(), name
        assert_unchanged(net, before)


def test_params_io_refuses_code_running_pickles_naming_the_global(tmp_path, marker):
    template = TwoLayerNet(6, 5, 3, seed=0).state()
    for name, data in payloads(marker, template).items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=re.escape(f"{path}: ")) as info:
            params_io.read_params(path)
        if name == "in-object-array":  # refused at its dtype, before the payload's global is read
            assert "refusing non-numeric dtype 'O8'" in str(info.value)
        elif isinstance(info.value, params_io.UnsafePickleError):
            assert "refusing to load the global" in str(info.value)
        else:  # protocols 0/1 and npz members: refused before any unpickling
            assert name.startswith(("protocol-", "npz-")), (name, info.value)
    assert not Path(f"{marker}.npy").exists()


def test_trainer_load_checkpoint_refuses_code_running_pickles(tmp_path, marker):
    trainer = _trainer()
    before = snapshot(trainer.network)
    for name, data in payloads(marker, before).items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(data)
        with pytest.raises(Exception):
            trainer.load_checkpoint(path)
        assert not marker.exists() and not Path(f"{marker}.npy").exists(), name
        assert_unchanged(trainer.network, before)
        assert trainer.current_iter == 0


@pytest.fixture
def mnist_dir(tmp_path, monkeypatch):
    """Four small IDX files, their checksums in place of MNIST's."""
    directory = tmp_path / "mnist"
    monkeypatch.setattr(mnist, "SHA256", write_mnist(directory, make_arrays(n_train=20, n_test=10, size=28)))
    return directory


def _run_cli(argv):
    """``cli.main(argv)``; an exception escaping it counts as exit status 1 (a traceback)."""
    try:
        return cli.main(argv), None
    except Exception as exc:  # noqa: BLE001 - recorded for the clean-error test
        return 1, exc


def test_cli_evaluate_runs_no_code_from_a_hostile_parameter_file(tmp_path, marker, mnist_dir):
    for name, data in payloads(marker, TwoLayerNet(784, 50, 10, seed=0).state()).items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        status, _ = _run_cli(["evaluate", str(path), "--net", "two_layer", "--backend", "numpy",
                              "--data-dir", str(mnist_dir)])
        assert status != 0, name
        assert not marker.exists() and not Path(f"{marker}.npy").exists(), name


def test_cli_train_resume_runs_no_code_from_a_hostile_checkpoint(tmp_path, marker, mnist_dir):
    out = tmp_path / "run"
    out.mkdir()
    for name, data in payloads(marker, {}).items():
        (out / "checkpoint.npz").write_bytes(data)
        status, _ = _run_cli(["train", "--net", "two_layer", "--backend", "numpy", "--epochs", "1",
                              "--data-dir", str(mnist_dir), "--out", str(out), "--resume", "--quiet"])
        assert status != 0, name
        assert not marker.exists() and not Path(f"{marker}.npy").exists(), name
        assert not (out / "params.npz").exists()


@pytest.mark.parametrize("kind", ["evaluate-hostile-pickle", "resume-truncated-checkpoint"])
def test_cli_reports_refused_files_as_a_one_line_error(tmp_path, mnist_dir, capsys, kind):
    marker = tmp_path / "PWNED"
    if kind == "evaluate-hostile-pickle":
        path = tmp_path / "params.pkl"
        path.write_bytes(payloads(marker, {})["os.system-as-param-p4"])
        argv, reason = ["evaluate", str(path)], "refusing to load the global"
    else:
        out = tmp_path / "run"
        out.mkdir()
        buf = io.BytesIO()
        np.savez(buf, W1=np.ones(3))
        path = out / "checkpoint.npz"
        path.write_bytes(buf.getvalue()[:-30])
        argv = ["train", "--epochs", "1", "--out", str(out), "--resume", "--quiet"]
        reason = "truncated or corrupt"
    status, escaped = _run_cli([*argv, "--net", "two_layer", "--backend", "numpy",
                                "--data-dir", str(mnist_dir)])
    assert escaped is None, f"traceback: {type(escaped).__name__}: {escaped}"
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(f"fastzero {argv[0]}: error: {path}: ") and reason in err, err
    assert err.count("\n") == 1, err
    assert not marker.exists()


# ------------------------------------------------------------------ pickles that misuse numpy

# OrderedDict(numpy.ndarray((1,), numpy.dtype('O'), b'AAAAAAAA')): an object array
# whose element pointer is attacker bytes, dereferenced when OrderedDict iterates it.
OBJECT_ARRAY_OVER_BYTES = (
    b"\x80\x02ccollections\nOrderedDict\ncnumpy\nndarray\nK\x01\x85"
    b"cnumpy\ndtype\nX\x01\x00\x00\x00O\x85RC\x08AAAAAAAA\x87R\x85R."
)


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("reader", ["read_params", "load_params", "fastzero evaluate"])
def test_object_array_over_attacker_bytes_is_refused_without_a_crash(tmp_path, reader):
    path = tmp_path / "evil.pkl"
    path.write_bytes(OBJECT_ARRAY_OVER_BYTES)
    call = {
        "read_params": "from fastzero import params_io; params_io.read_params(path)",
        "load_params": "from fastzero.nets import TwoLayerNet; TwoLayerNet(6, 5, 3).load_params(path)",
        "fastzero evaluate": (
            "from fastzero import cli; from fastzero.datasets import mnist; "
            "from idx_fixtures import make_arrays, write_mnist; "
            "from pathlib import Path; mnist.SHA256 = write_mnist(Path(data), make_arrays(n_train=20, n_test=10, size=28)); "
            "raise SystemExit(cli.main(['evaluate', path, '--net', 'two_layer', '--backend', "
            "'numpy', '--data-dir', data]))"),
    }[reader]
    proc = _child(f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
                  f"path, data = {str(path)!r}, {str(tmp_path / 'mnist')!r}\n"
                  f"try:\n    {call}\nexcept ValueError as exc:\n    print('ValueError:', exc)\n")
    assert proc.returncode in (0, 1), f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    said = proc.stdout + proc.stderr
    assert f"{path}: " in said and "Traceback" not in said, said


def test_crafted_pickles_from_the_admitted_globals_never_crash_the_reader(tmp_path):
    cases = 5 * int(os.environ.get("FASTZERO_FUZZ_CASES", "60"))
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", str(TESTS / "hostile_fuzz.py"), "pickles", str(tmp_path),
         str(cases), "20240611"],
        capture_output=True, text=True, timeout=60 + cases,
    )
    assert proc.returncode == 0, f"fuzz child died with {proc.returncode}:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\ncrafted pickles: {cases} cases: {report}")
    assert report["bad"] == [], report
    assert report.get("refused", 0) > cases // 2, report


# ------------------------------------------------------------------ hostile npz archives

def _npz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy(shape, descr="<f8", data=b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def test_npz_with_object_arrays_is_refused_by_every_loader(tmp_path):
    net = TwoLayerNet(6, 5, 3, seed=0)
    before = snapshot(net)
    for label, value in (("ints", np.array([1, 2], dtype=object)),
                         ("dict", np.array([{"a": 1}], dtype=object)),
                         ("ragged", np.array([np.ones(2), np.ones(3)], dtype=object))):
        path = tmp_path / f"{label}.npz"
        np.savez(path, **{**before, "W1": value})
        with pytest.raises(ValueError, match="allow_pickle"):
            params_io.read_params(path)
        with pytest.raises(ValueError, match="allow_pickle"):
            net.load_params(path)
        assert_unchanged(net, before)
        trainer = _trainer(net)
        with pytest.raises(ValueError):
            trainer.load_checkpoint(path)
        assert_unchanged(net, before)


def test_npz_member_with_a_lying_header_is_refused_without_using_the_memory(tmp_path):
    """``.npy`` headers claiming 2 GiB .. 8 TiB over 64 bytes of data, in a child process
    so that its peak RSS is its own."""
    for i, shape in enumerate([(2**28,), (2**31,), (2**40,), (2**20, 2**20)]):
        (tmp_path / f"lie{i}.npz").write_bytes(_npz({"W1.npy": _npy(shape, data=b"\0" * 64)}))
    code = f"""
import json, resource, pathlib
from fastzero import params_io
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = []
for path in sorted(pathlib.Path({str(tmp_path)!r}).glob("lie*.npz")):
    try:
        params_io.read_params(path)
        out.append("accepted")
    except (ValueError, MemoryError) as exc:
        out.append(type(exc).__name__)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({{"outcomes": out, "grown_kib": grown}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "accepted" not in report["outcomes"], report
    assert report["grown_kib"] < 64 * 1024, report  # less than 64 MiB resident


# ------------------------------------------------------------------ hostile IDX files

def _idx_header(ndim, dims, type_code=0x08) -> bytes:
    return bytes([0, 0, type_code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)


IDX_LIES = {
    "2**31 images": (_idx_header(3, (2**31, 28, 28)) + b"\0" * 784 * 3, 3),
    "2**32-1 labels": (_idx_header(1, (2**32 - 1,)) + b"\0" * 100, 1),
    "rows larger than data": (_idx_header(3, (3, 2**16, 28)) + b"\0" * 784 * 3, 3),
    "product overflows 32 bits": (_idx_header(3, (2**16, 2**16, 2)) + b"\0" * 16, 3),
    "more data than declared": (_idx_header(3, (2, 28, 28)) + b"\0" * 784 * 3, 3),
    "fewer dims than expected": (_idx_header(2, (3, 784)) + b"\0" * 784 * 3, 3),
    "int32 elements": (_idx_header(3, (3, 28, 28), 0x0C) + b"\0" * 784 * 3 * 4, 3),
    "float elements": (_idx_header(1, (3,), 0x0D) + b"\0" * 12, 1),
    "bad magic": (b"\x01\x02" + _idx_header(1, (3,))[2:] + b"\0" * 3, 1),
    "header only, truncated": (_idx_header(3, (3, 28, 28))[:9], 3),
    "empty": (b"", 1),
}


@pytest.mark.parametrize("name", IDX_LIES)
def test_lying_idx_header_is_refused_with_bounded_memory(tmp_path, name):
    payload, ndim = IDX_LIES[name]
    path = tmp_path / "lie.gz"
    path.write_bytes(gzip.compress(payload))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
            mnist.read_idx(path, ndim)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the loader reads at most MAX_IDX_BYTES + 1 decompressed bytes, whatever the header says
    assert peak < mnist.MAX_IDX_BYTES + (16 << 20), f"peak {peak / 2**20:.0f} MiB"


def test_gzip_bomb_is_cut_off_at_the_size_cap(tmp_path):
    """256 MiB of zeros in ~250 KiB of gzip (256 concatenated gzip members of 1 MiB each):
    refused after MAX_IDX_BYTES (64 MiB) with memory bounded by that cap plus the
    reader's buffers, never inflated whole."""
    path = tmp_path / "bomb.gz"
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    path.write_bytes(gzip.compress(_idx_header(3, (2**20, 16, 16))) + member * 256)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="more than"):
            mnist.read_idx(path, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * mnist.MAX_IDX_BYTES, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("corruption", ["not gzip", "truncated gzip", "bad crc"])
def test_corrupt_gzip_is_refused(tmp_path, corruption):
    good = gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    data = {"not gzip": b"hello world" * 10, "truncated gzip": good[: len(good) // 2],
            "bad crc": good[:-8] + bytes(a ^ 0xFF for a in good[-8:-4]) + good[-4:]}[corruption]
    path = tmp_path / "bad.gz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="bad.gz"):
        mnist.read_idx(path, 3)


def test_load_mnist_refuses_a_lying_file_among_valid_ones(mnist_dir):
    """The whole loader, not just read_idx: a lying train-images file stops load_mnist."""
    (mnist_dir / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(_idx_header(3, (2**31, 28, 28)) + b"\0" * 784 * 20))
    with pytest.raises(ValueError, match="train-images"):
        mnist.load_mnist(data_dir=mnist_dir)


# ------------------------------------------------------------------ mutation fuzzing

@pytest.fixture
def valid_files(tmp_path):
    """The four valid files the fuzzer mutates."""
    net = TwoLayerNet(6, 5, 3, seed=0)
    (tmp_path / "params.pkl").write_bytes(pickle.dumps(net.state()))
    net.save_params(tmp_path / "params.npz")
    x, t = np.random.default_rng(0).standard_normal((10, 6)), np.arange(10) % 3
    trainer = Trainer(net, x, t, x, t, epochs=1, mini_batch_size=5, optimizer="Adam",
                      verbose=False, seed=0, checkpoint=tmp_path / "checkpoint.npz")
    trainer.train()
    (tmp_path / "images.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8))))
    return tmp_path


def test_mutated_files_never_crash_a_loader(valid_files):
    cases = int(os.environ.get("FASTZERO_FUZZ_CASES", "60"))
    proc = subprocess.run(
        [sys.executable, str(TESTS / "hostile_fuzz.py"), str(valid_files), str(cases), "20240611"],
        capture_output=True, text=True, timeout=60 + cases,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 0, f"fuzz child died with {proc.returncode}:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nfuzz: {cases} mutations per file: {report}")
    for name, outcome in report.items():
        assert outcome.get("refused", 0) + outcome.get("accepted", 0) == cases, (name, outcome)
        assert outcome.get("refused", 0) > 0, (name, outcome)  # the mutations did bite
        assert "MemoryError" not in outcome["errors"], (name, outcome)


def test_zip_crc_and_truncation_are_detected_in_parameter_files(tmp_path):
    """A flipped byte inside an array's data or a cut-off file never loads as parameters."""
    net = TwoLayerNet(6, 5, 3, seed=0)
    net.save_params(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "good.npz") as z:
        infos = z.infolist()
    bad = tmp_path / "bad.npz"
    for info in infos:
        data_start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        flipped = bytearray(data)
        flipped[data_start + info.compress_size - 1] ^= 0x40  # the last data byte of the member
        bad.write_bytes(bytes(flipped))
        with pytest.raises(Exception, match="CRC|corrupt|checksum"):
            params_io.read_params(bad)
    for cut in (len(data) // 2, len(data) - 1, 10):
        bad.write_bytes(data[:cut])
        with pytest.raises(Exception):
            params_io.read_params(bad)
    assert zlib.crc32(data) == zlib.crc32((tmp_path / "good.npz").read_bytes())
