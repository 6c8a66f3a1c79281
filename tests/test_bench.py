"""The benchmark registry, ``fastzero bench`` and the asv suites built on it."""
import importlib
import inspect
import itertools
import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastzero
from fastzero import bench
from fastzero._backend import kernels
from fastzero.kernels import KERNELS
from fastzero.kernels.cases import CASES as KERNEL_CASES

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------- registry


def test_registry_is_well_formed():
    names = [c.name for c in bench.CASES]
    assert len(names) == len(set(names))
    assert set(bench.CASES_BY_NAME) == set(names)
    for case in bench.CASES:
        assert case.family in KERNELS or case.family in {"layer", "net", "train"}, case.name
        assert case.target is None or case.target >= 1.0
    families = {c.family for c in bench.CASES}
    assert families == set(KERNELS) | {"layer", "net", "train"}
    optimizers = {c.label for c in bench.cases_of("optim")}
    assert optimizers == {f"{k}.1M" for k in KERNELS["optim"]}
    assert set(bench.cases.COLDSTART_CASES) <= set(names)


def test_every_kernel_has_a_benchmark_at_every_book_shape():
    for family, kernels_ in KERNELS.items():
        for kernel in kernels_:
            for where in KERNEL_CASES[kernel].shapes("book"):
                assert f"{family}.{kernel}.{where}" in bench.CASES_BY_NAME


def test_small_cases_cover_every_layer_and_network_at_batch_1_3_and_100():
    for where in bench.cases.LAYERS:
        for n in (1, 3, 100):
            assert f"layer.{where}.b{n}" in bench.CASES_BY_NAME
    for net in ("TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet",
                "DeepConvNet"):
        for method in ("loss", "gradient"):
            for n in (1, 3, 100):
                assert f"net.{net}.{method}.b{n}" in bench.CASES_BY_NAME
    assert bench.CASES_BY_NAME["net.TwoLayerNet.numerical_gradient.b3"].slow
    layer_classes = {type(spec.make(np.random.default_rng(0), np.dtype(np.float64))).__name__
                     for spec in bench.cases.LAYERS.values()}
    assert layer_classes == {"Convolution", "Relu", "Pooling", "Affine", "Sigmoid",
                             "BatchNormalization", "Dropout", "SoftmaxWithLoss"}


def test_chapter_script_workloads_are_training_cases():
    train = {c.label for c in bench.cases_of("train")}
    assert train == {"TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet",
                     "DeepConvNet"}
    state = bench.CASES_BY_NAME["train.MultiLayerNetExtend"].setup(np.dtype(np.float64))
    assert "gamma1" in state.net.params and type(state.optimizer).__name__ == "SGD"
    assert state.x.shape == (100, 784)


def test_targets_apply_to_float64_only():
    targets = {c.name: c.target for c in bench.CASES if c.target is not None}
    assert targets == {
        "layer.SimpleConvNet.conv1.b100": 5.0,
        "layer.DeepConvNet.conv2.b100": 5.0,
        "layer.SimpleConvNet.pool1.b100": 10.0,
        "layer.DeepConvNet.pool1.b100": 10.0,
        "layer.DeepConvNet.pool3.b100": 10.0,
        "layer.SimpleConvNet.affine1.b100": 1.0,
        "optim.adam_update.1M": 4.0,
        "train.SimpleConvNet": 5.0,
        "train.DeepConvNet": 4.0,
    }
    case = bench.CASES_BY_NAME["train.SimpleConvNet"]
    assert case.target_for("float64") == 5.0 and case.target_for("float32") is None
    assert bench.cases.FLOAT32_TARGET == 1.6


def test_layer_cases_have_the_book_nets_shapes():
    """The conv, pool and affine cases are the layers of the book's nets at batch 100."""
    from fastzero.nets import DeepConvNet, SimpleConvNet

    simple, deep = SimpleConvNet().params, DeepConvNet().params

    def inputs(name):
        return bench.CASES_BY_NAME[name].setup(np.dtype(np.float64))

    x, W, *_ = inputs("conv.conv_forward.SimpleConvNet.conv1")
    assert x.shape == (100, 1, 28, 28) and W.shape == simple["W1"].shape
    x, W, *_ = inputs("conv.conv_forward.DeepConvNet.conv2")
    assert x.shape == (100, 16, 28, 28) and W.shape == deep["W2"].shape
    x, W, *_ = inputs("conv.conv_forward.DeepConvNet.conv6")
    assert W.shape == deep["W6"].shape
    # conv6 sees conv4's output (pad 2: 14 -> 16) pooled to 8x8; Affine1 flattens 64*4*4.
    assert x.shape == (100, 64, 8, 8) and deep["W7"].shape[0] == 64 * 4 * 4
    x, W, _ = inputs("dense.affine_forward.SimpleConvNet.affine1")
    assert W.shape == simple["W2"].shape == (4320, 100)
    assert inputs("pool.maxpool_forward.SimpleConvNet.pool1")[0].shape == (100, 30, 24, 24)
    layer, x, _ = inputs("layer.SimpleConvNet.affine1.b3")
    assert layer.W.shape == (4320, 100) and x.shape == (3, 30, 12, 12)
    layer, x, _ = inputs("layer.DeepConvNet.conv2.b1")
    assert layer.W.shape == deep["W2"].shape and x.shape == (1, 16, 28, 28)


def _arrays(obj):
    """The arrays a case returned or updated in place, in a fixed order."""
    if isinstance(obj, bench.TrainState):
        return [obj.net.params[k] for k in sorted(obj.net.params)]
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, float):
        return [np.array(obj)]
    if isinstance(obj, dict):
        return [a for key in sorted(obj) for a in _arrays(obj[key])]
    if isinstance(obj, (tuple, list)):
        return [a for item in obj for a in _arrays(item)]
    return []


@pytest.mark.parametrize("case", [c for c in bench.CASES if not c.slow], ids=lambda c: c.name)
def test_case_does_the_same_work_on_both_backends(case):
    """A speed-up is only meaningful if both backends compute the same thing."""
    results = {}
    for backend in fastzero.available_backends():
        np.random.seed(0)  # dropout masks
        with fastzero.use_backend(backend):
            inputs = case.setup(np.dtype(np.float64))
            out = case.run(kernels(backend), inputs)
        if case.family in KERNELS:  # a kernel's caches are its backend's own
            kernel = KERNEL_CASES[case.label.split(".")[0]]
            items = out if isinstance(out, tuple) else (out,)
            out = [o for i, o in enumerate(items) if i not in kernel.opaque]
            inputs = [inputs[i] for i in kernel.updates]
        results[backend] = _arrays(out) + _arrays(inputs)
    assert len(results["numpy"]) == len(results["numba"]) > 0
    for ref, got in zip(results["numpy"], results["numba"]):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)


def test_select():
    assert [c.name for c in bench.select(["conv.conv_backward"])] == [
        "conv.conv_backward.SimpleConvNet.conv1", "conv.conv_backward.DeepConvNet.conv2",
        "conv.conv_backward.DeepConvNet.conv6"]
    assert [c.name for c in bench.select(["optim.adam*"])] == ["optim.adam_update.1M"]
    assert "train.DeepConvNet" in [c.name for c in bench.select(None)]
    assert "train.DeepConvNet" not in [c.name for c in bench.select(None, include_slow=False)]
    assert bench.select(["no-such-case"]) == []


# ------------------------------------------------------------------ measuring


def test_measure_takes_medians_per_call(monkeypatch):
    monkeypatch.setattr(bench.timing, "SETTLE", 0.0)  # one untimed call before each sample
    calls = {"numpy": 0, "numba": 0}

    def slow():
        calls["numpy"] += 1
        time.sleep(0.003)

    def fast():
        calls["numba"] += 1

    t = bench.measure({"numpy": slow, "numba": fast}, repeat=3, min_sample=0.01)
    assert 0.003 <= t["numpy"] < 0.05
    assert t["numba"] < t["numpy"] / 10
    # one calibration call, then 3 times: one settling call, ceil(0.01 / t_once) timed
    assert 1 + 3 * 2 <= calls["numpy"] <= 1 + 3 * 5
    assert calls["numba"] > 3 * 100


def test_measure_on_the_thread_cpu_clock_leaves_out_waiting(monkeypatch):
    """--cpu-time: a call that waits (as when another process has the core) costs no CPU time."""
    monkeypatch.setattr(bench.timing, "SETTLE", 0.0)

    def waits():
        time.sleep(0.004)

    wall = bench.measure({"numba": waits}, repeat=3, min_sample=0.01)["numba"]
    cpu = bench.measure({"numba": waits}, repeat=3, min_sample=0.01, clock=bench.timing.CPU)["numba"]
    assert wall >= 0.004 and cpu < wall / 4


def test_each_sample_follows_settling_calls_of_its_own_backend(monkeypatch):
    """After a switch of backend, SETTLE seconds of untimed calls before the timed ones."""
    monkeypatch.setattr(bench.timing, "SETTLE", 0.03)
    log = []

    def work(name):
        log.append((name, time.perf_counter()))
        time.sleep(0.002)

    bench.measure({"numpy": lambda: work("numpy"), "numba": lambda: work("numba")},
                  repeat=2, min_sample=0.004)
    runs = []  # (backend, first call, last call) of each run of consecutive calls
    for name, t in log:
        if runs and runs[-1][0] == name:
            runs[-1][2] = t
        else:
            runs.append([name, t, t])
    assert [r[0] for r in runs] == ["numpy", "numba"] * 3  # calibration, then 2 rounds
    for _, first, last in runs[2:]:
        # the timed call starts once SETTLE seconds of calls are over (a loaded
        # machine's 2 ms sleep may last 4 ms: then one timed call, not two)
        assert last - first >= 0.03


def test_format_report_marks_missed_targets():
    report = {
        "meta": {"repeat": 7, "threads": 2, "numpy": "1", "numba": "2", "python": "3",
                 "machine": "m"},
        "cases": [
            {"case": "conv.a", "dtype": "float64", "numpy": 0.010, "numba": 0.005,
             "speedup": 2.0, "target": 5.0},
            {"case": "optim.b", "dtype": "float32", "numpy": 0.0004, "numba": 0.0001,
             "speedup": 4.0, "target": None},
        ],
        "float32_vs_float64": {"float64": 0.2, "float32": 0.1, "ratio": 2.0},
        "cold_start": [{"case": "train.X", "cold": 12.5, "warm": 0.75, "second": 0.02}],
    }
    lines = bench.format_report(report).splitlines()
    row_a = next(line for line in lines if line.startswith("conv.a"))
    assert row_a.split() == ["conv.a", "float64", "10.00", "5.00", "2.00x", ">=5x", "MISSED"]
    row_b = next(line for line in lines if line.startswith("optim.b"))
    assert row_b.split() == ["optim.b", "float32", "0.400", "0.100", "4.00x"]
    assert any("float32 2.00x faster (>=1.6x ok)" in line for line in lines)
    assert any("target = the least speed-up asked of a case, in float64 only" in line
               for line in lines)
    cold_header = next(line for line in lines if line.startswith("case") and "cold" in line)
    assert cold_header.split() == ["case", "cold", "warm", "2nd", "call"]
    assert next(line for line in lines if line.startswith("train.X")).split() == [
        "train.X", "12.50", "s", "0.75", "s", "20.00", "ms"]


def test_float32_rows_carry_no_float64_target():
    report = bench.run_benchmarks(bench.select(["layer.SimpleConvNet.affine1.b100"]),
                                  repeat=1, min_sample=0.001, coldstart=False)
    assert [(r["dtype"], r["target"]) for r in report["cases"]] == [
        ("float64", 1.0), ("float32", None)]
    float32_row = next(line for line in bench.format_report(report).splitlines()
                       if "float32" in line and line.startswith("layer."))
    assert "MISSED" not in float32_row and ">=" not in float32_row


def test_bench_quick_prints_a_table(capsys):
    argv = ["--quick", "--cases", "loss.softmax_cross*", "--cases", "dense.affine_forward.Simple*",
            "--dtype", "float64"]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fastzero bench:")
    assert lines[2].startswith("numpy BLAS ") and "(kernel " in lines[2] and "numba CPU" in lines[2]
    header = next(i for i, line in enumerate(lines) if line.startswith("case"))
    assert lines[header].split() == ["case", "dtype", "numpy", "ms", "numba", "ms", "speed-up",
                                     "target"]
    rows = [line.split() for line in lines[header + 2:] if line]
    assert [r[0] for r in rows] == ["dense.affine_forward.SimpleConvNet.affine1",
                                    "loss.softmax_cross_entropy_forward.output",
                                    "loss.softmax_cross_entropy_backward.output"]
    for row in rows:
        numpy_ms, numba_ms, speedup = float(row[2]), float(row[3]), float(row[4].rstrip("x"))
        assert row[1] == "float64" and numpy_ms > 0 and numba_ms > 0

        def half_unit(printed):  # the rounding error of a printed number
            return 0.5 * 10.0 ** -len(printed.partition(".")[2])

        # the ratio of the unrounded times lies within the rounding of the printed ones
        low = (numpy_ms - half_unit(row[2])) / (numba_ms + half_unit(row[3]))
        high = (numpy_ms + half_unit(row[2])) / (numba_ms - half_unit(row[3]))
        assert low - 0.01 <= speedup <= high + 0.01


def test_bench_cpu_time_and_no_vector(capsys, monkeypatch):
    from fastzero.kernels.numba import conv

    monkeypatch.setattr(conv, "VECTOR_MIN_TAPS", conv.VECTOR_MIN_TAPS)  # restored afterwards
    argv = ["--quick", "--json", "--cases", "loss.softmax.*", "--dtype", "float32", "--repeat", "1"]
    assert bench.main(argv) == 0
    meta = json.loads(capsys.readouterr().out)["meta"]
    assert (meta["clock"], meta["vector_tiles"]) == ("wall time", True)
    assert bench.main([*argv, "--threads", "1", "--cpu-time", "--no-vector"]) == 0
    meta = json.loads(capsys.readouterr().out)["meta"]
    assert (meta["clock"], meta["vector_tiles"]) == ("thread CPU time", False)
    assert not conv._vector_path(144, 3, 3, 1, 1)  # the 3x3 filters of DeepConvNet use BLAS
    with pytest.raises(SystemExit):
        bench.main(["--cpu-time", "--cases", "loss.softmax.*"])
    assert "--cpu-time counts the calling thread only" in capsys.readouterr().err


def test_bench_json(capsys):
    argv = ["--quick", "--json", "--cases", "loss.softmax.*", "--dtype", "float32", "float64",
            "--repeat", "2"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["meta"]["repeat"] == 2
    assert [(r["case"], r["dtype"]) for r in report["cases"]] == [
        ("loss.softmax.output", "float32"), ("loss.softmax.output", "float64")]
    for row in report["cases"]:
        assert row["speedup"] == pytest.approx(row["numpy"] / row["numba"])
    assert "cold_start" not in report and "float32_vs_float64" not in report


def test_float32_vs_float64_is_measured_interleaved(monkeypatch):
    """The float32 / float64 ratio comes from one interleaved measurement of
    both dtypes under numba, not from two medians taken minutes apart."""
    case = "loss.softmax.output"
    monkeypatch.setattr(bench.report, "FLOAT32_CASE", case)
    calls = []
    real = bench.timing.measure

    def spy(works, *args, **kwargs):
        calls.append((list(works), kwargs.get("backends")))
        return real(works, *args, **kwargs)

    monkeypatch.setattr(bench.timing, "measure", spy)
    report = bench.run_benchmarks(bench.select([case]), repeat=2, min_sample=0.001, coldstart=False)
    assert calls[-1] == (["float64", "float32"], {"float64": "numba", "float32": "numba"})
    f32 = report["float32_vs_float64"]
    assert f32["ratio"] == f32["float64"] / f32["float32"] and f32["float32"] > 0


def test_bench_rejects_bad_arguments(capsys):
    for argv in (["--cases", "no-such-case"], ["--repeat", "0"], ["--dtype", "float16"]):
        with pytest.raises(SystemExit) as exc:
            bench.main(argv)
        assert exc.value.code == 2


def test_first_call_times_cold_cache_compiles():
    """A fresh cache compiles (slow first call); the cache it leaves loads (fast first call)."""
    t = bench.first_call_times("loss.softmax.output")
    assert t["cold"] > t["warm"] > t["second"] > 0


# ------------------------------------------------------------------ asv suites

_PREFIXES = ("time_", "track_", "peakmem_", "mem_", "timeraw_")


def _asv_modules():
    sys.path.insert(0, str(ROOT))
    try:
        package = importlib.import_module("benchmarks")
        names = [m.name for m in pkgutil.iter_modules(package.__path__, "benchmarks.")]
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(ROOT))


def _asv_benchmarks():
    """(module, class or None, method name) of every benchmark, found as asv finds them:
    public classes and functions of every module, methods named time_, track_ ..."""
    found = []
    for module in _asv_modules():
        for name, obj in vars(module).items():
            if name.startswith("_"):
                continue
            if inspect.isclass(obj):
                found += [(module, obj, m) for m in dir(obj) if m.startswith(_PREFIXES)]
            elif inspect.isfunction(obj) and name.startswith(_PREFIXES):
                found.append((module, None, name))
    return found


def test_asv_suites_cover_every_family():
    modules = {m.__name__ for m in _asv_modules()}
    families = {c.family for c in bench.CASES}
    assert {f"benchmarks.bench_{f}" for f in families} | {"benchmarks.bench_coldstart"} <= modules
    suites = {(m.__name__, cls.__name__ if cls else None, name) for m, cls, name in _asv_benchmarks()}
    for family in families:
        kinds = {name for m, _, name in suites if m == f"benchmarks.bench_{family}"}
        assert {"time_case", "track_speedup"} <= kinds, family
    assert ("benchmarks.bench_train", "TrainStepMemory", "peakmem_reference") in suites
    # the bases in _harness are not benchmarks themselves
    assert not any(m.endswith("_harness") for m, _, _ in suites)


def _smallest_params(cls):
    """The first value of every parameter, except both backends."""
    params = getattr(cls, "params", [])
    names = getattr(cls, "param_names", [])
    choices = [p if n == "backend" else p[:1] for p, n in zip(params, names)]
    return list(itertools.product(*choices))


@pytest.mark.parametrize(
    "module, cls, method",
    [b for b in _asv_benchmarks() if b[1] is not None and not hasattr(b[1], "setup_cache")],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_asv_benchmark_runs_once(module, cls, method):
    for params in _smallest_params(cls):
        suite = cls()
        suite.repeat_samples = 1  # track_speedup: one sample per backend is enough here
        try:
            suite.setup(*params)
        except NotImplementedError as exc:  # asv's skip: an optional peer is not installed
            pytest.skip(str(exc))
        try:
            value = getattr(suite, method)(*params)
        finally:
            if hasattr(suite, "teardown"):
                suite.teardown(*params)
        if method.startswith("track_"):
            assert value > 0
        assert fastzero.get_backend() == "numba"


def test_asv_cold_start_suite(monkeypatch):
    from benchmarks import bench_coldstart

    fake = {"cold": 9.0, "warm": 0.5, "second": 0.01}
    monkeypatch.setattr(bench, "first_call_times", lambda case: dict(fake))
    suite = bench_coldstart.FirstTrainingStep()
    results = suite.setup_cache()
    assert set(results) == {"SimpleConvNet", "DeepConvNet"}
    for case, cache in _smallest_params(bench_coldstart.FirstTrainingStep):
        suite.setup(results, case, cache)
        assert suite.track_first_step(results, case, cache) == fake[cache]
    monkeypatch.setenv("FASTZERO_BENCH_FAST", "1")
    results = suite.setup_cache()
    assert set(results) == {"SimpleConvNet"}
    with pytest.raises(NotImplementedError):
        suite.setup(results, "DeepConvNet", "cold")


def test_asv_import_benchmark_code_runs():
    from benchmarks import bench_coldstart

    code = bench_coldstart.timeraw_import_fastzero()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_fast_env_skips_slow_cases(monkeypatch):
    from benchmarks import _harness

    monkeypatch.setenv("FASTZERO_BENCH_FAST", "1")
    with pytest.raises(NotImplementedError):
        _harness.get_case("train", "DeepConvNet")
    assert _harness.get_case("train", "SimpleConvNet").slow is False


def test_offline_html_has_a_local_copy_of_every_cdn_file():
    """benchmarks/offline_html.py must know every CDN file the installed asv's page loads
    (a new asv release may change them), and strip the integrity attributes."""
    asv = pytest.importorskip("asv")
    from benchmarks import offline_html

    page = (Path(asv.__file__).parent / "www" / "index.html").read_text(encoding="utf-8")
    urls = [url for _, url in offline_html._TAG.findall(page)]
    assert len(urls) == len(offline_html.FILES)
    assert {url.rsplit("/", 1)[-1] for url in urls} == set(offline_html.FILES)
    tag = ('<script src="https://cdn/x.js" integrity="sha256-abc" crossorigin="anonymous" '
           'onerror="js_load_failure()"></script>')
    assert offline_html._local_tag(tag, "https://cdn/x.js", "vendor/x.js") == (
        '<script src="vendor/x.js" onerror="js_load_failure()"></script>')
