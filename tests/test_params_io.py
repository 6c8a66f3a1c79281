"""Parameter files: npz round trips, atomic writes, the book's pickles, refused pickles."""
import os
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import fastzero
from fastzero import params_io
from fastzero.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet


@pytest.fixture(autouse=True)
def numpy_backend():
    with fastzero.use_backend("numpy"):
        yield


def _small_conv(**kw):
    return SimpleConvNet((1, 10, 10), {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
                         hidden_size=8, output_size=5, **kw)


def test_npz_round_trip_copies_into_the_same_arrays(tmp_path):
    source, target = _small_conv(seed=1), _small_conv(seed=2)
    path = tmp_path / "params.npz"
    source.save_params(path)
    arrays_before = {k: id(v) for k, v in target.params.items()}
    target.load_params(path)
    assert {k: id(v) for k, v in target.params.items()} == arrays_before
    for key in source.params:
        np.testing.assert_array_equal(target.params[key], source.params[key])
    assert target.layers["Conv1"].W is target.params["W1"]
    x = np.random.default_rng(0).standard_normal((3, 1, 10, 10))
    np.testing.assert_array_equal(target.predict(x), source.predict(x))
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(source.params)


def test_batchnorm_statistics_travel_with_the_parameters(tmp_path):
    source = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0)
    x = np.random.default_rng(0).standard_normal((16, 6))
    source.gradient(x, np.zeros(16, dtype=int))
    source.save_params(tmp_path / "bn.npz")
    target = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=1)
    target.load_params(tmp_path / "bn.npz")
    np.testing.assert_array_equal(target.buffers["running_var1"], source.buffers["running_var1"])
    assert target.layers["BatchNorm1"].running_var is target.buffers["running_var1"]
    np.testing.assert_array_equal(target.predict(x), source.predict(x))


def _net(name: str, seed: int, dtype=np.float64):
    """Every network, small where the constructor allows."""
    if name == "TwoLayerNet":
        return TwoLayerNet(6, 5, 3, seed=seed, dtype=dtype)
    if name == "MultiLayerNet":
        return MultiLayerNet(6, [5, 4], 3, seed=seed, dtype=dtype)
    if name == "MultiLayerNetExtend":
        return MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=seed, dtype=dtype)
    if name == "SimpleConvNet":
        return _small_conv(seed=seed, dtype=dtype)
    return DeepConvNet(seed=seed, dtype=dtype)


NETS = ["TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "DeepConvNet"]


def test_file_name_is_kept_and_no_temporary_file_remains(tmp_path):
    net = TwoLayerNet(4, 3, 2, seed=0)
    net.save_params(tmp_path / "weights")  # no extension: npz content under exactly that name
    assert os.listdir(tmp_path) == ["weights"]
    assert (tmp_path / "weights").read_bytes()[:4] == b"PK\x03\x04"
    other = TwoLayerNet(4, 3, 2, seed=1)
    other.load_params(tmp_path / "weights")
    np.testing.assert_array_equal(other.params["W2"], net.params["W2"])


@pytest.mark.parametrize("net_name", NETS)
@pytest.mark.parametrize("file_name", ["params.pkl", "deep_convnet_params.PKL", "params.pickle"])
def test_pkl_name_writes_the_plain_pickle_the_books_load_params_reads(tmp_path, net_name, file_name):
    dtype = np.float32 if net_name == "SimpleConvNet" else np.float64
    net = _net(net_name, seed=0, dtype=dtype)
    if net_name == "MultiLayerNetExtend":  # non-trivial batch-norm statistics
        net.gradient(np.random.default_rng(0).standard_normal((8, 6)), np.arange(8) % 3)
    path = tmp_path / file_name
    net.save_params(path)
    assert os.listdir(tmp_path) == [file_name]
    with open(path, "rb") as f:  # the book's load_params
        book = pickle.load(f)
    assert type(book) is dict and list(book) == list(net.state())
    for key, value in net.state().items():
        assert type(book[key]) is np.ndarray and book[key].dtype == dtype, key
        np.testing.assert_array_equal(book[key], value, err_msg=key)
    other = _net(net_name, seed=1, dtype=dtype)
    other.load_params(path)  # fastzero's restricted loader
    for key, value in net.state().items():
        np.testing.assert_array_equal(other.state()[key], value, err_msg=key)
    assert set(params_io.read_params(path)) == set(net.state())


@pytest.mark.parametrize("net_name", NETS)
def test_npz_name_writes_an_npz_archive(tmp_path, net_name):
    net = _net(net_name, seed=0)
    net.save_params(tmp_path / "params.npz")
    with np.load(tmp_path / "params.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(net.state())
        for key, value in net.state().items():
            np.testing.assert_array_equal(npz[key], value)


def test_pkl_of_non_numeric_arrays_is_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "params.pkl"
    with pytest.raises(ValueError, match=f"{path}: parameter 'names' has non-numeric dtype"):
        params_io.save_params({"W1": np.ones(2), "names": np.array(["a", "b"])}, path)
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "params.npz"
    net = TwoLayerNet(4, 3, 2, seed=0)
    net.save_params(path)
    good = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full (test)")

    monkeypatch.setattr(params_io.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        TwoLayerNet(4, 3, 2, seed=1).save_params(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["params.npz"]


def test_atomic_write_is_invisible_until_committed(tmp_path):
    path = tmp_path / "out.bin"
    with params_io.atomic_write(path) as f:
        f.write(b"complete")
        assert not path.exists()
        assert os.path.dirname(f.name) == str(tmp_path)
    assert path.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reads_the_books_pickles(tmp_path, protocol, dtype):
    # The book's save_params: pickle.dump({name: ndarray}) of a float64 network.
    book = DeepConvNet(seed=0)
    path = tmp_path / "deep_convnet_params.pkl"
    with open(path, "wb") as f:
        pickle.dump({k: v.copy() for k, v in book.params.items()}, f, protocol=protocol)
    net = DeepConvNet(seed=1, dtype=dtype)
    net.load_params(path)
    for key in book.params:
        assert net.params[key].dtype == dtype
        np.testing.assert_array_equal(net.params[key], book.params[key].astype(dtype))


def test_reads_numpy1_pickles(tmp_path):
    # numpy 1.x pickles name numpy.core.multiarray; numpy 2 moved it to numpy._core.
    params = {"W1": np.arange(12.0).reshape(4, 3), "b1": np.ones(3),
              "W2": np.eye(3, 2), "b2": np.zeros(2)}
    data = pickle.dumps(params, protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in data
    (tmp_path / "old.pkl").write_bytes(data)
    loaded = params_io.read_params(tmp_path / "old.pkl")
    for key in params:
        np.testing.assert_array_equal(loaded[key], params[key])


def _array_zoo() -> dict[str, np.ndarray]:
    """Arrays of every numeric kind and layout a parameter pickle may hold."""
    rng = np.random.default_rng(0)
    return {"W1": rng.standard_normal((3, 2)), "b1": np.zeros(2),
            "W2": rng.standard_normal((2, 2)).astype(np.float32),
            "b2": np.asfortranarray(rng.standard_normal((2, 3))), "c": np.arange(3, dtype=np.int64),
            "u": np.ones(2, np.uint8), "h": np.ones(2, np.float16), "e": np.zeros((0, 2)),
            "s": np.array(1.5), "be": np.arange(3, dtype=">f8"), "bo": np.array([True, False]),
            "t": np.arange(24.0).reshape(2, 3, 4).transpose(1, 0, 2), "v": np.arange(10.0)[::3]}


def _same_arrays(loaded: dict, expected: dict) -> None:
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        assert loaded[key].shape == value.shape and loaded[key].dtype == value.dtype, key
        assert loaded[key].flags.writeable, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("container", [dict, OrderedDict])
def test_reads_every_array_pickle_this_numpy_writes(tmp_path, protocol, container):
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps(container(_array_zoo()), protocol=protocol))
    _same_arrays(params_io.read_params(path), _array_zoo())


NUMPY1 = Path(__file__).parent / "data" / "numpy1_pickles"


@pytest.mark.parametrize("path", sorted(NUMPY1.glob("*.pkl")), ids=lambda p: p.name)
def test_reads_the_array_pickles_numpy_1_wrote(path):
    """Pickles written by numpy 1.26.4 (numpy.core module names) of a dict or an
    OrderedDict of arrays of every numeric kind, protocols 2-5 (protocol 5:
    numpy.core.numeric._frombuffer; protocol 2: _codecs.encode and bytes() for
    the raw data), compared with what plain pickle.load makes of the same file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2 on numpy.core names
        expected = pickle.loads(path.read_bytes())
    loaded = params_io.read_params(path)
    assert list(loaded) == list(expected) and len(loaded) == 11
    for key, value in expected.items():
        assert loaded[key].shape == value.shape, key
        assert loaded[key].dtype.newbyteorder("=") == value.dtype.newbyteorder("="), key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("open('/nonexistent/should/never/run', 'w')",))


def test_pickle_with_a_forbidden_global_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "params.pkl"
    with open(path, "wb") as f:
        pickle.dump({"W1": np.ones((4, 3)), "b1": _Evil(marker)}, f)
    net = TwoLayerNet(4, 3, 2, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(params_io.UnsafePickleError, match=r"(posix|os|nt)\.system"):
        net.load_params(path)
    assert not marker.exists()
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])
    # The same pickle loaded without the guard does run the command:
    # the test above would have noticed.
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_builtins_are_not_admitted(tmp_path):
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps({"W1": _EvalEvil()}))
    with pytest.raises(params_io.UnsafePickleError, match=r"builtins\.eval"):
        params_io.read_params(path)


def test_shape_and_name_mismatches_are_refused(tmp_path):
    net = TwoLayerNet(4, 3, 2, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    TwoLayerNet(4, 5, 2, seed=1).save_params(tmp_path / "wide.npz")
    with pytest.raises(ValueError, match=r"'W1' has shape \(4, 5\), the network expects \(4, 3\)"):
        net.load_params(tmp_path / "wide.npz")
    params_io.save_params({"W1": before["W1"], "b1": before["b1"], "W9": before["W2"]},
                          tmp_path / "names.npz")
    with pytest.raises(ValueError, match=r"missing: \['W2', 'b2'\]; unexpected: \['W9'\]"):
        net.load_params(tmp_path / "names.npz")
    for key in before:  # nothing was written before the checks passed
        np.testing.assert_array_equal(net.params[key], before[key])


def test_non_parameter_files_are_refused(tmp_path):
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([np.ones(3)]))
    with pytest.raises(ValueError, match="expected a dict of parameter arrays, got list"):
        params_io.read_params(tmp_path / "list.pkl")
    (tmp_path / "text.pkl").write_bytes(pickle.dumps({"W1": np.array(["a", "b"])}))
    with pytest.raises(ValueError, match="non-numeric dtype"):
        params_io.read_params(tmp_path / "text.pkl")
    np.savez(tmp_path / "objects.npz", W1=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        params_io.read_params(tmp_path / "objects.npz")
    (tmp_path / "junk.bin").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a parameter file"):
        params_io.read_params(tmp_path / "junk.bin")


@pytest.mark.parametrize("suffix", ["npz", "pkl"])
def test_truncated_parameter_files_are_refused_naming_the_file(tmp_path, suffix):
    net = TwoLayerNet(4, 3, 2, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    good = tmp_path / f"good.{suffix}"
    if suffix == "npz":
        net.save_params(good)
    else:
        good.write_bytes(pickle.dumps(dict(net.params), protocol=4))
    data = good.read_bytes()
    bad = tmp_path / f"bad.{suffix}"
    for cut in (len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"{bad}: truncated or corrupt"):
            TwoLayerNet(4, 3, 2, seed=1).load_params(bad)
        with pytest.raises(ValueError, match=f"{bad}: truncated or corrupt"):
            net.load_params(bad)
        for key in before:
            np.testing.assert_array_equal(net.params[key], before[key])


def test_unsafe_pickle_error_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps({"W1": _EvalEvil()}))
    with pytest.raises(ValueError, match=f"{path}: refusing to load the global builtins.eval"):
        params_io.read_params(path)
