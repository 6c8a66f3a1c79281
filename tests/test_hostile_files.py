"""Hostile files: every loader refuses them, runs nothing and allocates nothing huge.

* Pickles whose ``__reduce__`` would run code (``os.system``, ``exec``,
  ``eval``, ``open``, ``numpy.save``, ``pathlib.Path.touch``), placed at the
  top level, as a parameter, inside an object array or as a dict key, in
  pickle protocols 0-5, handed to ``params_io``, every network's
  ``load_params``, ``Trainer.load_checkpoint`` and the ``fastzero evaluate`` /
  ``fastzero train --resume`` commands: refused, and the file the payload
  would create never appears. The parameters stay as they were.
* ``.npz`` archives with object arrays (benign or carrying a payload), raw
  pickles as members: refused. ``.npy`` headers or zip records claiming
  gigabytes to terabytes over 64 bytes of data, and 2 GiB of zeros deflated to
  2 MiB beside the network's parameters: refused by every reader with a
  ValueError naming the file, with little memory traced (tracemalloc), never
  what the file claims.
* Checkpoint ``meta`` with numbers like ``10**400``, ``1e400`` or ``NaN``, or
  JSON nested 100,000 deep: a ValueError naming the file.
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
from typing import NamedTuple

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
        with pytest.raises(ValueError, match=re.escape(f"{path}: ")):
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


@pytest.mark.parametrize("kind", ["evaluate-hostile-pickle", "evaluate-terabyte-header",
                                  "evaluate-deflated-zeros", "resume-truncated-checkpoint",
                                  "resume-terabyte-header", "resume-meta-nested-deep"])
def test_cli_reports_refused_files_as_a_one_line_error(tmp_path, mnist_dir, capsys, kind):
    marker = tmp_path / "PWNED"
    if kind == "evaluate-hostile-pickle":
        path = tmp_path / "params.pkl"
        path.write_bytes(payloads(marker, {})["os.system-as-param-p4"])
        argv, reason = ["evaluate", str(path)], "refusing to load the global"
    elif kind.startswith("evaluate-"):
        path = tmp_path / "params.npz"
        if kind == "evaluate-terabyte-header":
            path.write_bytes(_npz({"W1.npy": _npy((2**40,), data=b"\0" * 64)}))
        else:
            path.write_bytes(_bomb_beside(TwoLayerNet(784, 50, 10, seed=0).state()))
        argv, reason = ["evaluate", str(path)], "'W1'"
    elif kind == "resume-meta-nested-deep":
        out = tmp_path / "run"
        out.mkdir()
        path = out / "checkpoint.npz"
        np.savez(path, meta=np.array("[" * 100_000 + "]" * 100_000))
        argv = ["train", "--epochs", "1", "--out", str(out), "--resume", "--quiet"]
        reason = "nested too deeply"
    elif kind == "resume-terabyte-header":
        out = tmp_path / "run"
        out.mkdir()
        path = out / "checkpoint.npz"
        path.write_bytes(_npz({"param.W1.npy": _npy((2**40,), data=b"\0" * 64)}))
        argv = ["train", "--epochs", "1", "--out", str(out), "--resume", "--quiet"]
        reason = "param.W1"
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


class _Member(NamedTuple):
    """One zip member as its records will say: ``raw`` is its stored or raw-deflated bytes."""

    name: str
    raw: bytes
    crc: int
    file_size: int
    method: int


def _raw_zip(members: list[_Member]) -> bytes:
    """A zip archive whose records say what they are told."""
    local, central = b"", b""
    for m in members:
        fname = m.name.encode()
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, m.method, 0, 0, m.crc,
                               len(m.raw), m.file_size, len(fname), 0, 0, 0, 0, 0, len(local)) + fname
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, m.method, 0, 0, m.crc, len(m.raw),
                             m.file_size, len(fname), 0) + fname + m.raw
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                      len(local), 0)
    return local + central + end


def _stored(name: str, value: np.ndarray) -> _Member:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, value)
    data = buf.getvalue()
    return _Member(f"{name}.npy", data, zlib.crc32(data), len(data), zipfile.ZIP_STORED)


def _deflated_zeros(name: str, shape: tuple[int, ...]) -> _Member:
    """An .npz member of float64 zeros of ``shape``, deflated (2 GiB take about 2 MiB)."""
    header = _npy(shape)
    nbytes = 8 * int(np.prod(shape))
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    # after a full flush no block refers back, so one compressed MiB of zeros repeats
    head = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    raw = head + block * (nbytes >> 20) + deflate.flush()
    crc = zlib.crc32(header)
    for _ in range(nbytes >> 20):
        crc = zlib.crc32(zeros, crc)
    return _Member(f"{name}.npy", raw, crc, len(header) + nbytes, zipfile.ZIP_DEFLATED)


def _bomb_beside(state: dict[str, np.ndarray], prefix: str = "") -> bytes:
    """An archive of ``state`` (names prefixed) whose first entry is 2 GiB of deflated zeros."""
    first, *rest = state
    return _raw_zip([_deflated_zeros(prefix + first, (2**28,)),
                     *(_stored(prefix + name, state[name]) for name in rest)])


def _readers(net, trainer):
    """Every reader of parameter files and checkpoints, by name."""
    return {
        "read_params": params_io.read_params,
        "read_params(like=...)": lambda p: params_io.read_params(p, like=net.state()),
        "read_npz": params_io.read_npz,
        "load_params": net.load_params,
        "load_checkpoint": trainer.load_checkpoint,
    }


def _refused_with_little_memory(read, path, most=8 << 20) -> str:
    """``read(path)`` raises a ValueError naming the file, with at most ``most`` bytes traced."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=re.escape(f"{path}: ")) as info:
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < most, f"{peak / 2**20:.0f} MiB traced: {info.value}"
    return str(info.value)


LYING_SHAPES = [(2**28,), (2**31,), (2**40,), (2**20, 2**20)]


@pytest.mark.parametrize("shape", LYING_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("member", ["W1", "param.W1"])
def test_npz_member_with_a_lying_header_is_refused_without_using_the_memory(tmp_path, shape, member):
    """``.npy`` headers claiming 2 GiB .. 8 TiB over 64 bytes of data: every reader refuses
    them with a ValueError naming the file before allocating what they claim (tracemalloc
    sees numpy's allocations, touched or not)."""
    net = TwoLayerNet(6, 5, 3, seed=0)
    before = snapshot(net)
    path = tmp_path / "lie.npz"
    path.write_bytes(_npz({f"{member}.npy": _npy(shape, data=b"\0" * 64)}))
    for name, read in _readers(net, _trainer(net)).items():
        _refused_with_little_memory(read, path)
    assert_unchanged(net, before)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_record_lying_about_the_member_size_is_refused_without_using_the_memory(tmp_path, method):
    """The zip's own size record (4 GiB, the most it holds without zip64) agrees with a lying
    header; the compressed data is 64 bytes."""
    n = (2**32 - 256) // 8
    header = _npy((n,))
    data = header + b"\0" * 64
    raw = data if method == zipfile.ZIP_STORED else zlib.compress(data)[2:-4]
    path = tmp_path / "lie.npz"
    path.write_bytes(_raw_zip([_Member("W1.npy", raw, zlib.crc32(data), len(header) + 8 * n, method)]))
    net = TwoLayerNet(6, 5, 3, seed=0)
    for name, read in _readers(net, _trainer(net)).items():
        _refused_with_little_memory(read, path)


@pytest.mark.parametrize("reader", ["read_params(like=...)", "load_params", "load_checkpoint"])
def test_deflated_gigabytes_of_zeros_are_refused_before_inflating(tmp_path, reader):
    """2 GiB of zeros in a 2 MiB archive, whose size records are all true, beside the
    network's other parameters: a reader that knows the network's shapes refuses it from
    the header, without inflating it."""
    net = TwoLayerNet(6, 5, 3, seed=0)
    path = tmp_path / "bomb.npz"
    path.write_bytes(_bomb_beside(net.state(), "param." if reader == "load_checkpoint" else ""))
    assert path.stat().st_size < 4 << 20
    message = _refused_with_little_memory(_readers(net, _trainer(net))[reader], path)
    assert "W1" in message and "268435456" in message, message


def test_reading_only_the_meta_entry_leaves_the_rest_uninflated(tmp_path):
    """What a caller that wants one entry (a checkpoint's settings) reads of a bomb."""
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(_raw_zip([_stored("meta", np.array('{"format": 1}')),
                               _deflated_zeros("param.W1", (2**28,))]))
    tracemalloc.start()
    try:
        arrays = params_io.read_npz(path, only={"meta"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(arrays) == ["meta"] and str(arrays["meta"]) == '{"format": 1}'
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB traced"


def test_the_bomb_is_a_valid_archive_of_two_gibibytes():
    """Guard against a vacuous bomb test: zipfile inflates the crafted member to its CRC."""
    with zipfile.ZipFile(io.BytesIO(_bomb_beside({"W1": None}))) as z:
        with z.open("W1.npy") as member:
            total = sum(len(chunk) for chunk in iter(lambda: member.read(64 << 20), b""))
    assert total == 128 + 8 * 2**28


def _pickle_claiming(shape_op: bytes = b"K\x01", data_op: bytes = b"C\x08") -> bytes:
    """The protocol-3 pickle of ``{'W1': np.zeros(1)}`` with its shape (1,) and its 8-byte
    data opcode replaced."""
    data = pickle.dumps({"W1": np.zeros(1)}, protocol=3)
    shape, raw = b"(K\x01K\x01\x85", b"\x89C\x08" + bytes(8)
    assert data.count(shape) == 1 and data.count(raw) == 1
    return data.replace(shape, b"(K\x01" + shape_op + b"\x85").replace(raw, b"\x89" + data_op + bytes(8))


@pytest.mark.parametrize("lie", ["shape of 2**30 numbers", "bytes8 of 2**40 bytes"])
def test_pickle_with_lying_sizes_is_refused_without_using_the_memory(tmp_path, lie):
    """Protocol fields the C unpickler would allocate before reading, and a BUILD shape
    beyond the data, over 8 bytes of data."""
    path = tmp_path / "lie.pkl"
    if lie == "shape of 2**30 numbers":
        path.write_bytes(_pickle_claiming(shape_op=b"J" + struct.pack("<i", 2**30)))
    else:
        path.write_bytes(_pickle_claiming(data_op=pickle.BINBYTES8 + struct.pack("<Q", 2**40)))
    net = TwoLayerNet(6, 5, 3, seed=0)
    readers = _readers(net, _trainer(net))
    for name in ("read_params", "read_params(like=...)", "load_params"):
        _refused_with_little_memory(readers[name], path)
    assert pickle.loads(_pickle_claiming())["W1"].shape == (1,)  # the template is valid


def test_pickle_far_larger_than_the_network_is_refused_before_it_is_read(tmp_path):
    """A 64 MiB pickle offered to a network of 48 numbers: refused from its size alone."""
    path = tmp_path / "big.pkl"
    path.write_bytes(pickle.dumps({"W1": np.zeros(8 << 20)}, protocol=4))
    net = TwoLayerNet(6, 5, 3, seed=0)
    readers = _readers(net, _trainer(net))
    for name in ("read_params(like=...)", "load_params"):
        message = _refused_with_little_memory(readers[name], path)
        assert "more than a pickle of the network's parameters can take" in message, message


def _checkpoint_with_meta(tmp_path, edit) -> Path:
    """A valid checkpoint whose 'meta' JSON text is replaced by ``edit(meta_dict)``."""
    trainer = _trainer()
    trainer.train_step()
    path = tmp_path / "checkpoint.npz"
    trainer.save_checkpoint(path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["meta"] = np.array(edit(json.loads(str(arrays["meta"]))))
    np.savez(path, **arrays)
    return path


def _set(path: list, value):
    def edit(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return json.dumps(meta)
    return edit


META_EDITS = {
    "lr 10**400": _set(["optimizer_scalars", "lr"], 10**400),
    "cached gauss 10**400": _set(["np_random", 3], 10**400),
    "rng state 10**400": _set(["rng", "state", "state"], 10**400),
    "current_iter 10**400": _set(["current_iter"], 10**400),
    "lr 1e400": lambda meta: json.dumps({**meta, "optimizer_scalars": {"lr": "LR"}}).replace(
        '"LR"', "1e400"),
    "lr NaN": _set(["optimizer_scalars", "lr"], float("nan")),
    "nested 100,000 deep": lambda meta: "[" * 100_000 + "]" * 100_000,
    "nested object 100,000 deep": lambda meta: '{"a":' * 100_000 + "1" + "}" * 100_000,
}


@pytest.mark.parametrize("edit", META_EDITS)
def test_checkpoint_meta_with_huge_numbers_or_deep_nesting_is_a_value_error(tmp_path, edit):
    path = _checkpoint_with_meta(tmp_path, META_EDITS[edit])
    trainer = _trainer()
    before = snapshot(trainer.network)
    with pytest.raises(ValueError, match=re.escape(f"{path}: ")):
        trainer.load_checkpoint(path)
    assert_unchanged(trainer.network, before)
    assert trainer.current_iter == 0


def test_parse_json_refuses_what_would_fail_later():
    assert params_io.parse_json('{"a": [1, 2.5, -3], "b": 340282366920938463463374607431768211455}') == {
        "a": [1, 2.5, -3], "b": 2**128 - 1}
    for text, reason in [("2" + "0" * 400, "out of range"), ("-1e400", "not finite"),
                         ("[NaN]", "NaN"), ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                         ("[1,", "Expecting value")]:
        with pytest.raises(ValueError, match=reason):
            params_io.parse_json(text)


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
        assert outcome.get("refused", 0) + outcome.get("accepted", 0) == cases, (name, outcome)  # no other exception
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
        with pytest.raises(ValueError, match=re.escape(f"{bad}: ") + ".*(CRC|corrupt|checksum)"):
            params_io.read_params(bad)
    for cut in (len(data) // 2, len(data) - 1, 10):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=re.escape(f"{bad}: ")):
            params_io.read_params(bad)
        with pytest.raises(ValueError, match=re.escape(f"{bad}: ")):
            net.load_params(bad)
    assert zlib.crc32(data) == zlib.crc32((tmp_path / "good.npz").read_bytes())
