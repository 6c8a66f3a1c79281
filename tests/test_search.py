"""fastzero search on real Dask clusters: a LocalCluster of 2 worker processes, a `dask scheduler`
with two `dask worker` processes, a worker killed mid-trial, the search process killed and resumed.

Every process a test starts is stopped by that test (or its fixture). Data: the first few
hundred real MNIST training samples.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastzero.search import command
from idx_fixtures import real_mnist_dir
from fastzero.search.plan import SearchSettings, load_search_data, promote, rung_sizes, rungs
from fastzero.search.results import RESULTS, ResultsFile, read_records
from fastzero.search.space import Range, parse_range, sample, space_from_specs
from fastzero.search.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
# $FASTZERO_DATA (CI sets it), else shared/ beside the clone or above its worktree.
REAL_MNIST = real_mnist_dir() or next(
    (p / "shared" / "data" / "mnist" for p in ROOT.parents if (p / "shared" / "data" / "mnist").is_dir()),
    ROOT.parent / "shared" / "data" / "mnist")
# Small trials: 160 training and 40 validation samples, MultiLayerNet 6 x 100, SGD.
SMALL = ["--train-size", "200", "--data-dir", str(REAL_MNIST)]


def settings_for(*options: str) -> SearchSettings:
    return command.settings_from_args(command.make_parser().parse_args([*SMALL, *options]))


_DATA: dict = {}


def data_for(s: SearchSettings):
    """The search's data, loaded once per split."""
    key = (s.train_size, s.val_rate, s.seed, s.config.flat_input, s.config.dtype)
    if key not in _DATA:
        _DATA[key] = load_search_data(s, str(REAL_MNIST))
    return _DATA[key]


def in_process(settings: SearchSettings, trial: int, epochs: int | None = None) -> dict:
    """Trial ``trial`` trained here, in this process, with one thread."""
    data = data_for(settings)
    record, _ = run_trial(settings.config, trial, settings.params(trial),
                          settings.trial_seed(trial), data, epochs or settings.epochs)
    return record


def same_numbers(a: dict, b: dict) -> bool:
    keys = ("trial", "params", "seed", "epochs", "status", "train_loss", "train_acc", "val_acc")
    return all(a[k] == b[k] for k in keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, and everything it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    else:
        try:  # children of a process that already exited
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", **kwargs.pop("env", {})}
    return subprocess.Popen(args, start_new_session=True, env=env, cwd=ROOT, **kwargs)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (as `fastzero search` starts it) and its client."""
    from fastzero.search.runner import dask_client

    saved = dict(os.environ)  # Dask's nannies export OMP_NUM_THREADS=1 etc. into this process
    try:
        with dask_client(threads_per_trial=1, workers=2, dashboard_address=":0") as c:
            c.wait_for_workers(2, timeout=60)
            yield c
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- pure parts ---------------------------------------------------------------------------

def test_trial_values_follow_from_seed_and_index_only():
    space = space_from_specs(["lr=1e-6:1e-2", "batch_size=50:200:int", "dropout=0:0.5:linear"])
    assert sample(space, 3, 7) == sample(space, 3, 7)
    assert sample(space, 3, 7) != sample(space, 3, 8) != sample(space, 4, 7)
    draws = [sample(space, 0, i) for i in range(200)]
    lrs = np.log10([d["lr"] for d in draws])
    assert lrs.min() >= -6 and lrs.max() <= -2 and lrs.min() < -5.5 and lrs.max() > -2.5
    assert all(isinstance(d["batch_size"], int) and 50 <= d["batch_size"] <= 200 for d in draws)
    assert parse_range("hidden_size=64") == Range("hidden_size", 64, 64, "int")
    for bad in ("lr", "lr=0:1:log", "momentum=1:2", "lr=2:1", "batch_size=10:20:linear"):
        with pytest.raises(ValueError):
            parse_range(bad)


def test_the_book_experiment_by_default():
    s = command.settings_from_args(command.make_parser().parse_args([]))
    assert (s.trials, s.epochs, s.train_size, s.val_rate) == (100, 50, 500, 0.2)
    assert {r.spec() for r in s.space} == {"lr=1e-06:0.01:log", "weight_decay=1e-08:0.0001:log"}
    assert (s.config.net, s.config.hidden_layers, s.config.optimizer) == ("multi_layer", 6, "sgd")
    assert s.config.fixed["batch_size"] == 100 and s.config.fixed["hidden_size"] == 100
    with pytest.raises(ValueError, match="weight_decay"):
        command.settings_from_args(command.make_parser().parse_args(
            ["--net", "simple", "--param", "weight_decay=1e-6:1e-4"]))


def test_rungs_and_promotion():
    s = SearchSettings(trials=100, epochs=50, halving=True)
    assert rungs(s) == [1, 3, 9, 27, 50] and rung_sizes(s) == [100, 33, 11, 3, 1]
    assert rungs(SearchSettings(epochs=50)) == [50]
    recs = [{"trial": i, "status": "ok", "val_acc": [acc]}
            for i, acc in enumerate([0.5, 0.9, 0.7, 0.9, 0.1])]
    recs.append({"trial": 5, "status": "diverged", "val_acc": [0.99]})
    assert promote(recs, 2) == [1, 3] and promote(recs, 3) == [1, 2, 3]


def test_results_file_cuts_an_unfinished_last_line(tmp_path):
    path = tmp_path / RESULTS
    path.write_bytes(b'{"trial": 0}\n{"trial": 1, "par')  # a crash in the middle of a write
    assert read_records(path) == [{"trial": 0}]
    with ResultsFile(path) as f:
        f.append({"trial": 2})
    assert read_records(path) == [{"trial": 0}, {"trial": 2}]
    assert path.read_bytes().endswith(b"\n")


def test_resume_refuses_another_search(tmp_path):
    from fastzero.search.results import write_settings
    from fastzero.search.runner import run_search

    s = settings_for("--trials", "4")
    write_settings(tmp_path, s.to_dict())
    (tmp_path / RESULTS).write_text("")
    with pytest.raises(FileExistsError, match="--resume"):
        run_search(s, None, tmp_path, client=None)
    with pytest.raises(ValueError, match="epochs=50"):
        run_search(settings_for("--trials", "4", "--epochs", "3"), None, tmp_path, client=None,
                   resume=True)
    with pytest.raises(ValueError, match="seed=0"):
        run_search(settings_for("--seed", "1"), None, tmp_path, client=None, resume=True)


def test_continued_trial_equals_trial_trained_at_once():
    """Successive halving continues a promoted trial: same numbers as training it longer
    from the start, also with dropout (the np.random state travels with the trial)."""
    s = settings_for("--param", "dropout=0.1:0.3:linear", "--param", "lr=0.05:0.1")
    data = data_for(s)
    args = (s.config, 2, s.params(2), s.trial_seed(2), data)
    whole, _ = run_trial(*args, 3)
    first, state = run_trial(*args, 1, keep_state=True)
    np.random.seed(12345)  # another trial ran on this worker in between
    np.random.random(100)
    rest, _ = run_trial(*args, 3, state=state)
    assert first["train_loss"] == whole["train_loss"][:1]
    assert same_numbers(rest, whole)
    assert len(set(whole["train_loss"])) == 3  # it learns


def test_without_dask_a_message_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert command.main(["--out", str(tmp_path / "s"), *SMALL]) == 1
    err = capsys.readouterr().err
    assert "fastzero[search]" in err and "dask" in err


def test_report_redraws_table_and_figure(tmp_path, capsys):
    records = [{"trial": i, "params": {"lr": 10.0 ** -i}, "seed": i, "epochs": 3, "status": "ok",
                "train_acc": [0.1, 0.2, 0.3 + i / 10], "val_acc": [0.1, 0.2, 0.25 + i / 10],
                "time": 1.0} for i in range(4)]
    records.append({"trial": 4, "params": {"lr": 9.0}, "seed": 4, "epochs": 2,
                    "status": "diverged", "train_acc": [0.1], "val_acc": [0.1], "time": 0.5})
    (tmp_path / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in records))
    from fastzero import cli

    assert cli.main(["search", "--report", str(tmp_path), "--top", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "5 trials finished (1 diverged)" in lines[0] and "0.5500" in lines[0]
    assert [line.split()[1] for line in lines[2:5]] == ["3", "2", "1"]
    assert (tmp_path / "best_trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- LocalCluster --------------------------------------------------------------------------

def test_local_cluster_two_workers(client, tmp_path):
    """Both worker processes run trials, each on one numba thread; records are the ones
    computed here, in-process; diverged trials are recorded as such."""
    import numba

    from fastzero.search.runner import check_workers, run_search

    workers = client.run(lambda: numba.config.NUMBA_NUM_THREADS)
    assert len(workers) == 2 and set(workers.values()) == {1}
    import dask

    assert set(client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
               .values()) == {False}
    assert check_workers(client, 1) == []
    s = settings_for("--trials", "8", "--epochs", "2", "--param", "lr=1e-3:1e4")
    data = data_for(s)
    records = run_search(s, data, tmp_path, client, progress=False)
    assert sorted(r["trial"] for r in records) == list(range(8))
    assert {r["worker"] for r in records} == set(workers)
    assert {r["threads"] for r in records} == {1}
    statuses = {r["status"] for r in records}
    assert statuses == {"ok", "diverged"}
    for r in records:
        assert same_numbers(r, in_process(s, r["trial"]))
    assert read_records(tmp_path / RESULTS) == records


def test_successive_halving_keeps_the_best_third(client, tmp_path):
    from fastzero.search.runner import run_search

    s = settings_for("--trials", "9", "--epochs", "9", "--halving", "--param", "lr=1e-2:1")
    records = run_search(s, data_for(s), tmp_path, client,
                         progress=False)
    by_epochs = {e: {r["trial"]: r for r in records if r["epochs"] == e} for e in (1, 3, 9)}
    assert [len(by_epochs[e]) for e in (1, 3, 9)] == [9, 3, 1] and len(records) == 13
    assert sorted(by_epochs[3]) == promote(by_epochs[1].values(), 3)
    assert sorted(by_epochs[9]) == promote(by_epochs[3].values(), 1)
    for e in (3, 9):  # continued on the workers from the rung before: same numbers
        for trial, r in by_epochs[e].items():
            assert same_numbers(r, in_process(s, trial, e))


def test_worker_killed_mid_trial(client, tmp_path):
    """SIGKILL to a worker process in the middle of a trial: the search completes, every
    trial recorded once, the killed one by another worker process."""
    from fastzero.search.runner import run_search

    s = settings_for("--trials", "6", "--epochs", "20", "--train-size", "1000")
    data = data_for(s)
    out: dict = {}
    search = threading.Thread(target=lambda: out.setdefault(
        "records", run_search(s, data, tmp_path, client, progress=False)))
    search.start()
    try:
        def executing(dask_worker):
            return os.getpid(), [ts.key for ts in dask_worker.state.executing]

        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            running = client.run(executing)
            started = {(a, keys[0]) for a, (_, keys) in running.items() if keys}
            time.sleep(0.3)  # into the trial (a trial takes a second or more)
            # still on the same trial 0.3 s later: kill it now, a round trip after this check
            running = client.run(executing)
            victim = next(((a, keys[0], pid) for a, (pid, keys) in running.items()
                           if keys and (a, keys[0]) in started), None)
        assert victim is not None, "no trial started"
        address, key, pid = victim
        os.kill(pid, signal.SIGKILL)
        recorded_before_kill = {r["trial"] for r in read_records(tmp_path / RESULTS)}
    finally:
        search.join(timeout=300)
    records = out["records"]
    assert sorted(r["trial"] for r in records) == list(range(6))
    killed_trial = int(key.split("-")[1])
    assert killed_trial not in recorded_before_kill
    rerun = next(r for r in records if r["trial"] == killed_trial)
    assert rerun["status"] == "ok" and rerun["pid"] != pid
    assert same_numbers(rerun, in_process(s, killed_trial))
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


# -- the command line: search process killed and resumed; a real dask scheduler -----------

def test_resume_after_the_search_process_is_killed(tmp_path):
    out = tmp_path / "search"
    options = ["--trials", "8", "--epochs", "10", "--train-size", "1000", "--workers", "2"]
    cmd = [sys.executable, "-m", "fastzero", "search", "--out", str(out), *SMALL, *options]
    proc = start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len(read_records(out / RESULTS)) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no trial finished"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the search and its LocalCluster
        proc.wait()
    finally:
        stop(proc)
    before = read_records(out / RESULTS)
    assert 2 <= len(before) < 8
    resumed = subprocess.run([*cmd, "--resume", "--quiet"], capture_output=True, text=True,
                             timeout=300, cwd=ROOT, start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"ran {8 - len(before)} trials" in resumed.stdout
    after = read_records(out / RESULTS)
    assert after[:len(before)] == before
    assert sorted(r["trial"] for r in after) == list(range(8))
    assert (out / "best_trials.png").is_file()


def test_real_dask_scheduler_and_two_workers(tmp_path):
    import distributed

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    config = tmp_path / "dask-config"  # as docs/search.md advises for dask worker
    config.mkdir()
    (config / "fastzero.yaml").write_text(
        "distributed:\n  nanny:\n    pre-spawn-environ:\n      MALLOC_TRIM_THRESHOLD_: null\n"
        "  worker:\n    profile:\n      enabled: false\n")
    procs = [start([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                    "--port", str(port), "--no-dashboard"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(start([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                                "--host", "127.0.0.1", "--no-dashboard"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={"DASK_CONFIG": str(config)}))
        with distributed.Client(address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
            workers = set(c.scheduler_info()["workers"])
        out = tmp_path / "search"
        result = subprocess.run(
            [sys.executable, "-m", "fastzero", "search", "--scheduler", address, "--out", str(out),
             "--trials", "6", "--epochs", "2", "--quiet", *SMALL],
            capture_output=True, text=True, timeout=300, cwd=ROOT, start_new_session=True)
        assert result.returncode == 0, result.stderr
        assert "Dask: 2 workers, 2 task threads" in result.stdout
        assert "warning" not in result.stderr
        records = read_records(out / RESULTS)
        assert sorted(r["trial"] for r in records) == list(range(6))
        assert {r["worker"] for r in records} == workers
        s = settings_for("--trials", "6", "--epochs", "2")
        for r in records:  # same seed, same numbers, whichever worker ran the trial
            assert same_numbers(r, in_process(s, r["trial"]))
    finally:
        for proc in reversed(procs):
            stop(proc)
