"""The fastzero command line, end to end on a small generated MNIST-like data set."""
import json
import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import fastzero
from fastzero import cli
from fastzero.datasets import mnist
from fastzero.params_io import read_params
from idx_fixtures import real_mnist_dir, make_arrays, write_mnist


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    directory = tmp_path / "mnist"
    monkeypatch.setattr(mnist, "SHA256", write_mnist(directory, make_arrays(300, 100, seed=2)))

    def offline(url, out):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(mnist, "fetch_url", offline)
    return directory


@pytest.fixture(autouse=True)
def restore_backend():
    backend = fastzero.get_backend()
    yield
    fastzero.set_backend(backend)


def _train(data_dir, out, *extra):
    return cli.main(["train", "--data-dir", str(data_dir), "--out", str(out), "--backend", "numpy",
                     "--seed", "0", "--batch-size", "50", "--quiet", *extra])


def test_train_without_matplotlib_skips_only_the_plot(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1", "--lr", "0.01") == 0
    assert "install matplotlib for curves.png" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "history.json", "params.npz"]


def test_train_then_evaluate(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "2", "--lr", "0.01") == 0
    printed = capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert len(history["train_loss"]) == 2 * 6 and history["iter_per_epoch"] == 6
    assert len(history["train_acc"]) == len(history["test_acc"]) == 2
    assert history["final_test_acc"] > 0.8  # the generated classes are easy to learn
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert f"final test accuracy: {history['final_test_acc']:.4f} (100 samples)" in printed
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "curves.png",
                                                     "history.json", "params.npz"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(read_params(out / "params.npz")) == {"W1", "b1", "W2", "b2"}

    assert cli.main(["evaluate", str(out / "params.npz"), "--net", "two_layer", "--backend",
                     "numpy", "--data-dir", str(data_dir)]) == 0
    assert f"test accuracy: {history['final_test_acc']:.4f} (100 samples" in capsys.readouterr().out


def test_book_sampling_draws_batches_with_replacement(data_dir, tmp_path, monkeypatch):
    import fastzero.trainer

    seen = {}
    real_trainer = fastzero.trainer.Trainer

    def spy(*args, **kwargs):
        seen["replacement"] = kwargs["replacement"]
        return real_trainer(*args, **kwargs)

    monkeypatch.setattr(fastzero.trainer, "Trainer", spy)  # cmd_train imports it when run
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1", "--sampling", "book") == 0
    assert seen == {"replacement": True}
    assert json.loads((out / "history.json").read_text())["settings"]["sampling"] == "book"
    assert _train(data_dir, tmp_path / "run2", "--net", "two_layer", "--epochs", "1") == 0
    assert seen == {"replacement": False}


def test_cosine_lr_schedule(data_dir, tmp_path):
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "2", "--lr", "0.1",
                  "--optimizer", "sgd", "--lr-schedule", "cosine") == 0
    history = json.loads((out / "history.json").read_text())
    assert history["settings"]["lr_schedule"] == "cosine"
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "3", "--lr", "0.1",
                  "--optimizer", "sgd", "--resume") != 0  # the run was cosine: refused


def test_evaluate_reads_the_books_pickle(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "simple", "--epochs", "1", "--dtype", "float32",
                  "--train-size", "200", "--test-size", "50") == 0
    history = json.loads((out / "history.json").read_text())
    params = read_params(out / "params.npz")
    assert all(p.dtype == np.float32 for p in params.values())
    with open(tmp_path / "params.pkl", "wb") as f:  # the book's format, float64
        pickle.dump({k: v.astype(np.float64) for k, v in params.items()}, f)
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "params.pkl"), "--net", "simple", "--dtype",
                     "float32", "--backend", "numpy", "--data-dir", str(data_dir),
                     "--test-size", "50"]) == 0
    assert f"test accuracy: {history['final_test_acc']:.4f} (50 samples" in capsys.readouterr().out


def test_resume_continues_to_the_same_result(data_dir, tmp_path):
    args = ("--net", "multi_layer", "--optimizer", "momentum")
    assert _train(data_dir, tmp_path / "full", *args, "--epochs", "2") == 0
    assert _train(data_dir, tmp_path / "split", *args, "--epochs", "1") == 0
    assert _train(data_dir, tmp_path / "split", *args, "--epochs", "2", "--resume") == 0
    full = read_params(tmp_path / "full" / "params.npz")
    split = read_params(tmp_path / "split" / "params.npz")
    for key in full:
        np.testing.assert_array_equal(split[key], full[key])
    history = [json.loads((tmp_path / d / "history.json").read_text()) for d in ("full", "split")]
    for key in ("train_loss", "train_acc", "test_acc", "final_test_acc"):
        assert history[0][key] == history[1][key]


def test_existing_run_is_not_overwritten(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1") == 0
    before = (out / "params.npz").read_bytes()
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1", "--seed", "5") == 1
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "params.npz").read_bytes() == before
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1", "--overwrite") == 0
    assert _train(data_dir, tmp_path / "other", "--net", "two_layer", "--resume") == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_missing_data_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mnist, "fetch_url", lambda url, out: (_ for _ in ()).throw(OSError("offline")))
    empty = tmp_path / "empty"
    assert _train(empty, tmp_path / "run", "--net", "two_layer") == 1
    err = capsys.readouterr().err
    assert str(empty) in err and "t10k-labels-idx1-ubyte.gz" in err


def test_info(data_dir, capsys):
    (data_dir / "t10k-images-idx3-ubyte.gz").unlink()
    assert cli.main(["info", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    rows = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith(" "))
    assert rows["fastzero"].strip() == fastzero.__version__
    assert rows["numpy"].strip() == np.__version__
    assert rows["backend"].startswith(fastzero.get_backend())
    assert str(data_dir) in out
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if ".gz" in line}
    assert lines["t10k-images-idx3-ubyte.gz"] == "missing"
    assert lines["train-images-idx3-ubyte.gz"] == "verified (train-images-idx3-ubyte.gz)"


def test_info_says_a_truncated_file_is_refused(data_dir, capsys):
    path = data_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    assert cli.main(["info", "--data-dir", str(data_dir)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "train-labels" in x)
    assert "refused: truncated or corrupt gzip file" in line


def test_bench_is_dispatched(monkeypatch):
    from fastzero import bench

    seen = []
    monkeypatch.setattr(bench, "main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["bench", "--quick", "--dtype", "float32"]) == 7
    assert seen == [["--quick", "--dtype", "float32"]]


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "fastzero", "--version"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.strip() == f"fastzero {fastzero.__version__}"


REAL_MNIST = real_mnist_dir()


@pytest.mark.slow
def test_simple_convnet_one_epoch_on_real_mnist(tmp_path):
    # The default backend, the whole data set: the book's SimpleConvNet reaches
    # about 97 % test accuracy after one epoch of Adam.
    if REAL_MNIST is None:
        pytest.fail("real MNIST files expected in $FASTZERO_DATA")
    out = tmp_path / "run"
    assert cli.main(["train", "--net", "simple", "--epochs", "1", "--seed", "0", "--data-dir",
                     str(REAL_MNIST), "--out", str(out), "--quiet"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert history["final_test_acc"] > 0.95
