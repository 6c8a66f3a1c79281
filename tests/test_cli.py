"""The fastzero command line, end to end on a small generated MNIST-like data set."""
import json
import os
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
    assert _train(data_dir, out, "--epochs", "3", "--lr-schedule", "constant", "--resume") == 1
    assert _train(data_dir, out, "--epochs", "3", "--resume") == 0  # continues cosine
    assert json.loads((out / "history.json").read_text())["settings"]["lr_schedule"] == "cosine"


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


@pytest.mark.parametrize("compute", fastzero.available_backends())
def test_resume_continues_to_the_same_result(data_dir, tmp_path, compute):
    args = ("--net", "multi_layer", "--optimizer", "momentum", "--backend", compute)
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
    assert not (tmp_path / "other").exists()  # nothing created for a run that is not there


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


# -- a run's settings, resume, refusals, the output directory's lock ----------

RUN = ("--net", "two_layer", "--optimizer", "momentum", "--lr", "0.05", "--dtype", "float32",
       "--train-size", "200", "--test-size", "60", "--eval-samples", "40", "--sampling", "book",
       "--lr-schedule", "cosine", "--epochs", "3")


@pytest.mark.parametrize("compute", fastzero.available_backends())
def test_ctrl_c_saves_a_checkpoint_and_resume_alone_continues_the_run(
        data_dir, tmp_path, monkeypatch, capsys, sigint_at, compute):
    assert _train(data_dir, tmp_path / "full", *RUN, "--backend", compute) == 0
    out = tmp_path / "split"
    with monkeypatch.context() as patch:
        sigint_at(patch, 6)  # mid-epoch 2 (4 steps per epoch)
        assert _train(data_dir, out, *RUN, "--backend", compute) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 6 of 12" in err
    assert f"  fastzero train --out {out} --resume\n" in err
    assert not (out / "params.npz").exists()
    # the printed command, as given: every setting comes from the checkpoint
    assert cli.main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    full = read_params(tmp_path / "full" / "params.npz")
    split = read_params(out / "params.npz")
    for key in full:
        assert split[key].dtype == np.float32
        np.testing.assert_array_equal(split[key], full[key])
    history = [json.loads((tmp_path / d / "history.json").read_text()) for d in ("full", "split")]
    for key in ("train_loss", "train_acc", "test_acc", "final_test_acc"):
        assert history[0][key] == history[1][key]
    settings = history[1]["settings"]
    assert settings == history[0]["settings"]
    assert (settings["lr"], settings["seed"], settings["train_size"], settings["test_size"],
            settings["backend"], settings["eval_samples"]) == (0.05, 0, 200, 60, compute, 40)


@pytest.mark.parametrize("flag, value", [
    ("--lr", "0.5"), ("--seed", "9"), ("--dtype", "float64"), ("--net", "multi_layer"),
    ("--batch-size", "25"), ("--optimizer", "adam"), ("--sampling", "shuffle"),
    ("--lr-schedule", "constant"), ("--train-size", "100"), ("--test-size", "40"),
    ("--eval-samples", "20"), ("--data-dir", "elsewhere"), ("--augment", "shift"),
])
def test_resume_refuses_a_flag_that_contradicts_the_run(data_dir, tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    assert _train(data_dir, out, *RUN[:-1], "1") == 0
    before = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", flag, value]) == 1
    err = capsys.readouterr().err
    assert f"{flag} {value} contradicts the run in {out}" in err
    assert (out / "checkpoint.npz").read_bytes() == before


def test_resume_accepts_the_runs_own_flags_and_a_longer_epochs(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data_dir, out, *RUN[:-1], "1") == 0
    assert _train(data_dir, out, *RUN[:-1], "2", "--resume") == 0  # same flags: fine
    assert len(json.loads((out / "history.json").read_text())["test_acc"]) == 2
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume"]) == 1  # nothing left to train
    assert "has already trained 2 epochs of 2; pass a larger --epochs" in capsys.readouterr().err


def test_checkpoint_without_run_settings_resumes_from_the_flags(data_dir, tmp_path, capsys):
    """Checkpoints written before runs recorded their settings: the flags (or defaults) fill in."""
    out = tmp_path / "run"
    args = ("--net", "two_layer", "--epochs", "1")
    assert _train(data_dir, out, *args) == 0
    path = out / "checkpoint.npz"
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["settings"], meta["run"]
    np.savez(path, **{**arrays, "meta": np.array(json.dumps(meta))})
    capsys.readouterr()
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "2", "--resume",
                  "--batch-size", "20") == 1  # the trainer still checks the checkpoint
    assert "batch_size=50, this trainer has batch_size=20" in capsys.readouterr().err
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "2", "--resume") == 0
    assert "does not record its run's settings" in capsys.readouterr().err
    assert json.loads((out / "history.json").read_text())["settings"]["seed"] == 0


@pytest.mark.parametrize("flag, value, message", [
    ("--train-size", "-59000", "argument --train-size: must be a positive integer, got -59000"),
    ("--test-size", "-9999", "argument --test-size: must be a positive integer, got -9999"),
    ("--epochs", "0", "argument --epochs: must be a positive integer, got 0"),
    ("--batch-size", "0", "argument --batch-size: must be a positive integer, got 0"),
    ("--eval-samples", "-1", "argument --eval-samples: must be a positive integer, got -1"),
    ("--threads", "0", "argument --threads: must be a positive integer, got 0"),
    ("--lr", "-0.1", "argument --lr: must be a positive finite number, got -0.1"),
    ("--lr", "nan", "argument --lr: must be a positive finite number, got nan"),
    ("--seed", "-1", "argument --seed: must be an integer in [0, 2**32), got -1"),
    ("--epochs", "two", "argument --epochs: must be a positive integer, got two"),
])
def test_bad_numbers_are_refused_up_front(data_dir, tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        _train(data_dir, tmp_path / "run", flag, value)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_sizes_beyond_the_data_are_refused(data_dir, tmp_path, capsys):
    assert _train(data_dir, tmp_path / "run", "--net", "two_layer", "--train-size", "301") == 1
    assert "--train-size 301: the data has only 300 samples" in capsys.readouterr().err


def test_out_that_is_a_file_is_refused_naming_the_flag(data_dir, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert _train(data_dir, target, "--net", "two_layer") == 1
    assert f"--out {target} is a file, not a directory" in capsys.readouterr().err
    assert _train(data_dir, target / "below", "--net", "two_layer") == 1
    assert f"--out {target / 'below'}: cannot create the directory" in capsys.readouterr().err


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write into (root ignores permission bits: immutable)."""
    import os

    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o555)
    immutable = os.access(directory, os.W_OK)
    if immutable:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    yield directory
    if immutable:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    directory.chmod(0o755)


def test_read_only_out_is_refused_before_training(tmp_path, read_only_dir, capsys):
    assert cli.main(["train", "--out", str(read_only_dir), "--data-dir",
                     str(tmp_path / "no-data")]) == 1
    err = capsys.readouterr().err
    assert f"--out {read_only_dir}: the directory is not writable" in err
    assert "MNIST" not in err and not (tmp_path / "no-data").exists()  # before the data
    assert list(read_only_dir.iterdir()) == []


HOLD_LOCK = """
import sys, time
from fastzero import _rundir
with _rundir.open_run_dir(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_run_into_a_locked_out_is_refused_naming_the_holder(data_dir, tmp_path, capsys):
    import signal

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ((), ("--resume",), ("--overwrite",)):
            assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1", *extra) == 1
            err = capsys.readouterr().err
            assert f"{out} is in use by another run (pid {holder.pid})" in err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    # the dead holder's lock file (its pid still in it) does not block
    assert (out / ".lock").read_text().strip() == str(holder.pid)
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1") == 0


def test_a_failed_run_leaves_no_lock_and_no_empty_out(tmp_path, capsys):
    """The lock file goes when the run ends; an --out the failed run created goes too."""
    missing = ["--data-dir", str(tmp_path / "no-data"), "--backend", "numpy", "--quiet"]
    out = tmp_path / "new" / "run"
    assert cli.main(["train", "--out", str(out), *missing]) == 1
    assert "no-data" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert cli.main(["train", "--out", str(existing), *missing]) == 1
    assert existing.is_dir() and list(existing.iterdir()) == []


def test_a_lock_file_removed_by_the_previous_holder_is_not_trusted(tmp_path, monkeypatch):
    """A run that locked a lock file its holder has just unlinked locks the new one instead."""
    from fastzero import _rundir

    out = tmp_path / "run"
    out.mkdir()
    real_open = os.open
    stale = []

    def open_then_unlink(path, *args):
        fd = real_open(path, *args)
        if not stale:  # the first open finds a file that its holder then unlinks
            stale.append(os.fstat(fd).st_ino)
            os.unlink(path)
        return fd

    monkeypatch.setattr(_rundir.os, "open", open_then_unlink)
    with _rundir.open_run_dir(out):
        monkeypatch.undo()
        assert (out / ".lock").read_text().strip() == str(os.getpid())
    assert stale and not (out / ".lock").exists()


def test_the_lock_is_held_for_the_whole_run(data_dir, tmp_path, monkeypatch):
    """While a run trains, another process cannot take its directory."""
    from fastzero.trainer import Trainer

    out = tmp_path / "run"
    seen = []
    real_step = Trainer.train_step

    def step_and_probe(self):
        if not seen:
            probe = subprocess.run([sys.executable, "-c", HOLD_LOCK, str(out)],
                                   capture_output=True, text=True, timeout=120, check=False)
            seen.append(probe.stderr)
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_and_probe)
    assert _train(data_dir, out, "--net", "two_layer", "--epochs", "1") == 0
    import os

    assert f"is in use by another run (pid {os.getpid()})" in seen[0]


def test_seed_is_drawn_recorded_and_printed(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data-dir", str(data_dir), "--out", str(out), "--backend", "numpy",
                     "--net", "two_layer", "--epochs", "1", "--batch-size", "50"]) == 0
    printed = capsys.readouterr().out
    seed = json.loads((out / "history.json").read_text())["settings"]["seed"]
    assert isinstance(seed, int)
    assert f"seed {seed} (drawn; --seed {seed} repeats this run)" in printed
    assert "1 epoch of 6 steps" in printed
    assert printed.count("final test accuracy") == 1 and "Final Test Accuracy" not in printed


def test_history_json_is_written_atomically(data_dir, tmp_path, monkeypatch):
    import os

    renamed_in_a_run = []
    with monkeypatch.context() as patch:
        real = os.replace
        patch.setattr(os, "replace", lambda src, dst: renamed_in_a_run.append(Path(dst).name)
                      or real(src, dst))
        assert _train(data_dir, tmp_path / "run", "--net", "two_layer", "--epochs", "1") == 0
    assert {"history.json", "params.npz", "checkpoint.npz", "curves.png"} <= set(renamed_in_a_run)

    direct = tmp_path / "direct"
    direct.mkdir()
    path = direct / "history.json"
    path.write_text('{"old": 1}')
    renamed = []
    real_replace = os.replace

    def replace(src, dst):
        renamed.append((Path(src).parent, Path(dst), json.loads(Path(src).read_text())))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    cli._write_json(path, {"new": 2})
    assert renamed == [(direct, path, {"new": 2})]  # a complete file, renamed into place
    monkeypatch.setattr(json, "dumps", lambda *a, **k: "\udc80")  # fails while writing
    with pytest.raises(UnicodeEncodeError):
        cli._write_json(path, {"newer": 3})
    assert json.loads(path.read_text()) == {"new": 2}
    assert sorted(p.name for p in direct.iterdir()) == ["history.json"]


class _SlowStep:
    """A trainer stand-in whose one step takes ``seconds``."""

    def __init__(self, seconds):
        self.seconds = seconds

    def train_step(self):
        import time

        time.sleep(self.seconds)


@pytest.mark.parametrize("compiles, step_seconds, expected", [
    (True, 0.6, True),    # a slow first step that compiles: say so, with the time
    (False, 0.6, False),  # slow, but nothing compiled (kernels loaded from the cache)
    (True, 0.05, False),  # compiled, but quickly: nothing to explain
])
def test_first_step_says_when_it_is_compiling(monkeypatch, capsys, compiles, step_seconds,
                                              expected):
    import itertools

    counter = itertools.count() if compiles else itertools.repeat(0)
    monkeypatch.setattr(cli, "_kernel_compilations", lambda: next(counter))
    cli._first_step(_SlowStep(step_seconds), notice_after=0.2, poll=0.05)
    out = capsys.readouterr().out
    if expected:
        assert out.startswith("compiling kernels (first run only, cached afterwards)... ")
        assert out.endswith(" s\n") and float(out.split("... ")[1][:-3]) >= 0.6
    else:
        assert out == ""


def test_kernel_compilations_counts_what_numba_compiles_not_what_it_loads(tmp_path):
    code = ("import numpy as np, fastzero; from fastzero import cli; "
            "from fastzero.layers import Relu; fastzero.set_backend('numba'); "
            "Relu().forward(np.random.default_rng(0).standard_normal((256, 512))); "
            "print(cli._kernel_compilations())")
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    counts = [int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=env, timeout=300, check=True).stdout) for _ in range(2)]
    assert counts[0] > 0 and counts[1] == 0  # cold cache: compiled; then loaded


@pytest.mark.parametrize("net, augment", [("simple", "elastic"), ("resnet", "affine")])
def test_train_with_augmentation_and_the_resnet(data_dir, tmp_path, net, augment):
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", net, "--epochs", "1", "--train-size", "100",
                  "--test-size", "50", "--augment", augment) == 0
    history = json.loads((out / "history.json").read_text())
    assert augment in json.dumps(history)
    assert (out / "params.npz").is_file()



@pytest.mark.parametrize("what", ["filters", "misclassified", "gradcam"])
def test_show_draws_a_png(data_dir, tmp_path, capsys, what):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "simple", "--epochs", "1", "--train-size", "100") == 0
    png = tmp_path / f"{what}.png"
    assert cli.main(["show", what, str(out / "params.npz"), "--data-dir", str(data_dir),
                     "--count", "5", "--out", str(png), "--backend", "numpy"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    assert f"wrote {png}" in capsys.readouterr().out


def test_show_gradcam_of_a_resnet_over_layers_inside_blocks(data_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "resnet", "--epochs", "1", "--train-size", "100",
                  "--test-size", "50") == 0
    png = tmp_path / "gradcam.png"
    assert cli.main(["show", "gradcam", str(out / "params.npz"), "--net", "resnet",
                     "--data-dir", str(data_dir), "--count", "3", "--out", str(png),
                     "--layer", "block1_1.conv2,block2_1,3"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    assert cli.main(["show", "gradcam", str(out / "params.npz"), "--net", "resnet",
                     "--data-dir", str(data_dir), "--count", "3", "--out", str(png),
                     "--layer", "block1_1.conv9"]) != 0
    assert "layers of block1_1: conv1, bn1" in capsys.readouterr().err


def test_evaluate_names_the_network_a_file_belongs_to(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data_dir, out, "--net", "simple", "--epochs", "1", "--train-size", "100") == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out / "params.npz"), "--net", "deep",
                     "--data-dir", str(data_dir), "--backend", "numpy"]) == 1
    assert "holds the parameters of --net simple" in capsys.readouterr().err
