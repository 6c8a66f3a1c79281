"""Benchmark cases and the ``fastzero bench`` command.

One registry, :data:`CASES`, drives both ``fastzero bench`` (a table of numpy
vs numba timings measured in one process) and the asv suites under
``benchmarks/``: add a case here and it shows up in both.

A case builds its inputs for a dtype (``setup``) and does the work on a kernel
module (``run``): forward and backward for a layer kernel, one in-place update
for an optimizer, ``net.gradient`` plus an Adam update for a training step.
Training steps call the layers, which use the *active* backend, so every
measurement runs inside :func:`fastzero.use_backend`.

Run it as ``fastzero bench`` (or ``python -m fastzero.bench``)::

    fastzero bench                      # full table, float64 and float32
    fastzero bench --quick --cases conv # a quick look at the conv cases
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from fastzero._backend import available_backends, kernels, use_backend
from fastzero.kernels._geometry import output_size

#: The backend every speed-up is measured against, and the one measured.
REFERENCE, FAST = "numpy", "numba"
DTYPES: tuple[str, ...] = ("float64", "float32")
BATCH = 100
#: Issue-3 target for the float32 / float64 speed-up of the DeepConvNet step.
FLOAT32_TARGET = 1.6
FLOAT32_CASE = "train.DeepConvNet"


@dataclass(frozen=True)
class Case:
    """One benchmark: inputs built by ``setup(dtype)``, timed work ``run(k, inputs)``.

    ``k`` is a backend's kernel module (:func:`fastzero._backend.kernels`);
    ``target`` is the minimum numpy/numba speed-up issue 3 asks for; ``slow``
    cases are left out of quick runs (``--quick``, ``FASTZERO_BENCH_FAST=1``).
    """

    family: str
    label: str
    setup: Callable[[np.dtype], Any] = field(repr=False)
    run: Callable[[ModuleType, Any], Any] = field(repr=False)
    target: float | None = None
    slow: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}.{self.label}"


# --------------------------------------------------------------------- inputs


def _randn(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _conv_inputs(dtype, *, x_shape, w_shape, pad):
    rng = np.random.default_rng(0)
    n, _, h, w = x_shape
    fn, _, fh, fw = w_shape
    out_shape = (n, fn, output_size(h, fh, 1, pad), output_size(w, fw, 1, pad))
    x, W, dout = (_randn(rng, s, dtype) for s in (x_shape, w_shape, out_shape))
    return x, W * 0.1, np.zeros(fn, dtype), dout, pad


def _conv_run(k, inputs):
    x, W, b, dout, pad = inputs
    _, cache = k.conv_forward(x, W, b, 1, pad)
    return k.conv_backward(dout, cache, W, 1, pad)


def _pool_inputs(dtype, *, x_shape):
    rng = np.random.default_rng(0)
    n, c, h, w = x_shape
    out_shape = (n, c, output_size(h, 2, 2, 0), output_size(w, 2, 2, 0))
    return _randn(rng, x_shape, dtype), _randn(rng, out_shape, dtype)


def _pool_run(k, inputs):
    x, dout = inputs
    _, argmax = k.maxpool_forward(x, 2, 2, 2, 0)
    return k.maxpool_backward(dout, argmax, x.shape, 2, 2, 2, 0)


def _affine_inputs(dtype, *, d, m):
    rng = np.random.default_rng(0)
    x, W, dout = (_randn(rng, s, dtype) for s in ((BATCH, d), (d, m), (BATCH, m)))
    return x, W * 0.01, np.zeros(m, dtype), dout


def _affine_run(k, inputs):
    x, W, b, dout = inputs
    k.affine_forward(x, W, b)
    return k.affine_backward(dout, x, W)


def _relu_inputs(dtype, *, shape):
    rng = np.random.default_rng(0)
    return _randn(rng, shape, dtype), _randn(rng, shape, dtype)


def _relu_run(k, inputs):
    x, dout = inputs
    _, mask = k.relu_forward(x)
    return k.relu_backward(dout, mask)


def _xent_inputs(dtype, *, classes):
    rng = np.random.default_rng(0)
    return _randn(rng, (BATCH, classes), dtype), rng.integers(0, classes, BATCH, dtype=np.int64)


def _xent_run(k, inputs):
    x, t = inputs
    _, y = k.softmax_cross_entropy_forward(x, t)
    return k.softmax_cross_entropy_backward(1.0, y, t)


def _batchnorm_inputs(dtype, *, d):
    rng = np.random.default_rng(0)
    x, dout = _randn(rng, (BATCH, d), dtype), _randn(rng, (BATCH, d), dtype)
    return x, np.ones(d, dtype), np.zeros(d, dtype), np.zeros(d, dtype), np.ones(d, dtype), dout


def _batchnorm_run(k, inputs):
    x, gamma, beta, running_mean, running_var, dout = inputs
    _, cache = k.batchnorm_forward_train(x, gamma, beta, running_mean, running_var, 0.9, 1e-6)
    return k.batchnorm_backward(dout, cache, gamma)


#: optimizer kernel -> (state arrays it keeps, hyper-parameters after them)
_OPTIMIZERS: dict[str, tuple[int, tuple[float, ...]]] = {
    "sgd_update": (0, (0.01,)),
    "momentum_update": (1, (0.01, 0.9)),
    "nesterov_update": (1, (0.01, 0.9)),
    "adagrad_update": (1, (0.01,)),
    "rmsprop_update": (1, (0.01, 0.99)),
    "adam_update": (2, (0.001, 0.9, 0.999)),
}


def _optim_inputs(dtype, *, n_state, shape=(1000, 1000)):
    rng = np.random.default_rng(0)
    param, grad = _randn(rng, shape, dtype), _randn(rng, shape, dtype)
    return (param, grad) + tuple(np.zeros(shape, dtype) for _ in range(n_state))


def _optim_run(k, inputs, *, kernel, hyper):
    return getattr(k, kernel)(*inputs, *hyper)


@dataclass
class TrainState:
    """A network, its optimizer and one batch: what a training step needs."""

    net: Any
    optimizer: Any
    x: np.ndarray
    t: np.ndarray


def _train_inputs(dtype, *, net):
    import fastzero.nets
    from fastzero.optimizer import Adam

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28)).astype(dtype)
    t = rng.integers(0, 10, BATCH, dtype=np.int64)
    return TrainState(getattr(fastzero.nets, net)(dtype=dtype, seed=0), Adam(), x, t)


def train_step(state: TrainState) -> None:
    """One training step: gradients by backprop, then the optimizer's update."""
    grads = state.net.gradient(state.x, state.t)
    state.optimizer.update(state.net.params, grads)


def _train_run(k, state):
    # The layers call the active backend's kernels; the harness activates it.
    train_step(state)


# ------------------------------------------------------------------- registry


def _build_cases() -> tuple[Case, ...]:
    def conv(label, x_shape, w_shape, pad, target=None):
        setup = partial(_conv_inputs, x_shape=x_shape, w_shape=w_shape, pad=pad)
        return Case("conv", label, setup, _conv_run, target)

    def pool(label, x_shape):
        return Case("pool", label, partial(_pool_inputs, x_shape=x_shape), _pool_run, 10.0)

    cases = [
        # The book's layers, batch 100: SimpleConvNet conv1; DeepConvNet conv2
        # (16->16 at 28x28) and conv6 (64->64 at 8x8, after conv4's pad 2).
        conv("SimpleConvNet.conv1", (BATCH, 1, 28, 28), (30, 1, 5, 5), 0, 5.0),
        conv("DeepConvNet.conv2", (BATCH, 16, 28, 28), (16, 16, 3, 3), 1, 5.0),
        conv("DeepConvNet.conv6", (BATCH, 64, 8, 8), (64, 64, 3, 3), 1),
        pool("SimpleConvNet.pool1", (BATCH, 30, 24, 24)),
        pool("DeepConvNet.pool1", (BATCH, 16, 28, 28)),
        pool("DeepConvNet.pool3", (BATCH, 64, 8, 8)),
        Case("dense", "SimpleConvNet.affine1", partial(_affine_inputs, d=4320, m=100),
             _affine_run, 1.0),
        Case("activation", "SimpleConvNet.relu1", partial(_relu_inputs, shape=(BATCH, 30, 24, 24)),
             _relu_run),
        Case("loss", "softmax_cross_entropy_100x10", partial(_xent_inputs, classes=10), _xent_run),
        Case("norm", "batchnorm_100x1000", partial(_batchnorm_inputs, d=1000), _batchnorm_run),
    ]
    for kernel, (n_state, hyper) in _OPTIMIZERS.items():
        label = kernel.removesuffix("_update") + "_1M"
        run = partial(_optim_run, kernel=kernel, hyper=hyper)
        target = 4.0 if kernel == "adam_update" else None
        cases.append(Case("optim", label, partial(_optim_inputs, n_state=n_state), run, target))
    cases += [
        Case("train", "SimpleConvNet", partial(_train_inputs, net="SimpleConvNet"), _train_run, 5.0),
        Case("train", "DeepConvNet", partial(_train_inputs, net="DeepConvNet"), _train_run, 4.0,
             slow=True),
    ]
    return tuple(cases)


#: Every benchmark case, in table order.
CASES: tuple[Case, ...] = _build_cases()
CASES_BY_NAME: dict[str, Case] = {c.name: c for c in CASES}


def cases_of(family: str) -> list[Case]:
    """The cases of one family ("conv", "pool", ..., "train"), in registry order."""
    return [c for c in CASES if c.family == family]


def select(patterns: Sequence[str] | None = None, *, include_slow: bool = True) -> list[Case]:
    """Cases whose name matches any pattern (a glob, or a substring if it has no ``*?[``)."""

    def matches(name: str, pattern: str) -> bool:
        glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        return fnmatch.fnmatchcase(name, glob)

    return [
        c
        for c in CASES
        if (include_slow or not c.slow) and (not patterns or any(matches(c.name, p) for p in patterns))
    ]


# ------------------------------------------------------------------ measuring


def prepare(case: Case, backend: str, dtype: str | np.dtype) -> Callable[[], Any]:
    """Build ``case``'s inputs under ``backend`` and return the work as a 0-argument callable.

    The callable is run twice here, so JIT compilation (or loading from the
    numba cache) and first-touch allocation stay out of later timings. Call it
    with ``backend`` active: training steps go through the active backend.
    """
    with use_backend(backend):
        k = kernels(backend)
        inputs = case.setup(np.dtype(dtype))
        work = partial(case.run, k, inputs)
        work()
        work()
    return work


def _seconds_per_call(work: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        work()
    return (time.perf_counter() - start) / number


#: Seconds of untimed calls before each sample. A training run uses one
#: backend; here the two alternate, and the reference's multi-threaded BLAS
#: products leave OpenBLAS's workers spinning for about 0.1 s afterwards
#: (:mod:`fastzero.kernels.numba._slices`), which took a core from the next
#: numba sample (SimpleConvNet conv1: 22 ms instead of 11).
SETTLE = 0.15


def _settle(work: Callable[[], Any], seconds: float) -> None:
    start = time.perf_counter()
    work()
    while time.perf_counter() - start < seconds:
        work()


def measure(
    works: dict[str, Callable[[], Any]], repeat: int = 7, min_sample: float = 0.05,
    backends: dict[str, str] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each prepared work.

    ``works`` maps a label to a work prepared by :func:`prepare`, and runs it
    under the backend ``backends[label]`` (default: the label is the backend).
    Samples of the works are interleaved, so that load from other processes
    hits them alike; each follows :data:`SETTLE` seconds of untimed calls of
    its own work and loops long enough to last ``min_sample`` seconds (at
    least one call).
    """
    backend_of = backends or {label: label for label in works}
    numbers = {}
    for label, work in works.items():
        with use_backend(backend_of[label]):
            once = _seconds_per_call(work, 1)
        numbers[label] = max(1, math.ceil(min_sample / max(once, 1e-9)))
    samples: dict[str, list[float]] = {label: [] for label in works}
    for _ in range(repeat):
        for label, work in works.items():
            with use_backend(backend_of[label]):
                _settle(work, SETTLE)
                samples[label].append(_seconds_per_call(work, numbers[label]))
    return {label: statistics.median(s) for label, s in samples.items()}


def compare(
    case: Case, dtype: str, repeat: int = 7, min_sample: float = 0.05
) -> dict[str, float]:
    """Median seconds per call of ``case`` under every backend, measured in this process."""
    works = {b: prepare(case, b, dtype) for b in available_backends()}
    return measure(works, repeat, min_sample)


# ------------------------------------------------------------------ cold start

_CHILD = "import sys; from fastzero.bench import _first_call_child; _first_call_child(*sys.argv[1:])"


def _first_call_child(case_name: str, dtype: str, threads: str) -> None:
    """In a fresh interpreter: time the first and second call of a case (numba), print JSON."""
    import fastzero

    if int(threads):
        fastzero.set_num_threads(int(threads))
    case = CASES_BY_NAME[case_name]
    with use_backend(FAST):
        inputs = case.setup(np.dtype(dtype))
        times = []
        for _ in range(2):
            start = time.perf_counter()
            case.run(kernels(FAST), inputs)
            times.append(time.perf_counter() - start)
    print(json.dumps({"first": times[0], "second": times[1]}))


def first_call_times(case_name: str, dtype: str = "float64", threads: int = 0) -> dict[str, float]:
    """First-call seconds of a case (numba backend) in fresh interpreters.

    Runs the case in a subprocess whose ``NUMBA_CACHE_DIR`` is a new empty
    directory (``cold``: every kernel compiles), then again in another
    subprocess with the cache the first one left (``warm``: kernels load from
    disk). ``steady`` is the second call of the warm run. ``threads=0`` keeps
    the default thread count.
    """
    with tempfile.TemporaryDirectory(prefix="fastzero-numba-cache-") as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        runs = []
        for _ in ("cold", "warm"):
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, case_name, str(dtype), str(threads)],
                env=env, capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"first-call run of {case_name} failed:\n{proc.stderr}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"cold": runs[0]["first"], "warm": runs[1]["first"], "steady": runs[1]["second"]}


# ------------------------------------------------------------------ reporting


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def _verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f">={target:g}x {'ok' if value >= target else 'MISSED'}"


def _table(header: Sequence[str], rows: list[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(r):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_report(report: dict) -> str:
    """The human-readable tables of a report made by :func:`run_benchmarks`."""
    meta = report["meta"]
    out = [
        f"fastzero bench: median seconds per call of {REFERENCE} (reference) and {FAST}, "
        f"{meta['repeat']} interleaved samples each, compile time excluded",
        f"threads {meta['threads']} | numpy {meta['numpy']} | numba {meta['numba']} | "
        f"python {meta['python']} | {meta['machine']}",
        "",
    ]
    rows = [
        [r["case"], r["dtype"], _fmt_ms(r[REFERENCE]), _fmt_ms(r[FAST]),
         f"{r['speedup']:.2f}x", _verdict(r["speedup"], r["target"])]
        for r in report["cases"]
    ]
    out.append(_table(["case", "dtype", f"{REFERENCE} ms", f"{FAST} ms", "speed-up", "target"],
                      rows, right={2, 3, 4}))
    f32 = report.get("float32_vs_float64")
    if f32:
        out += ["", f"{FLOAT32_CASE} ({FAST}): float64 {_fmt_ms(f32['float64'])} ms, float32 "
                f"{_fmt_ms(f32['float32'])} ms -> float32 {f32['ratio']:.2f}x faster "
                f"({_verdict(f32['ratio'], FLOAT32_TARGET)})"]
    cold = report.get("cold_start")
    if cold:
        out += ["", f"first call in a fresh process ({FAST}, float64): empty numba cache (cold), "
                "cache left by a previous process (warm), and the second call (steady)", ""]
        rows = [[r["case"], f"{r['cold']:.2f} s", f"{r['warm']:.2f} s",
                 f"{_fmt_ms(r['steady'])} ms"] for r in cold]
        out.append(_table(["case", "cold", "warm", "steady"], rows, right={1, 2, 3}))
    return "\n".join(out)


def _meta(repeat: int) -> dict:
    import platform

    import numba

    from fastzero._threads import get_num_threads

    return {
        "repeat": repeat,
        "threads": get_num_threads(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }


def run_benchmarks(
    cases: Sequence[Case],
    dtypes: Sequence[str] = DTYPES,
    repeat: int = 7,
    min_sample: float = 0.05,
    coldstart: bool = True,
    threads: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure ``cases`` under both backends; return a JSON-ready report."""
    rows = []
    for case in cases:
        for dtype in dtypes:
            if progress:
                progress(f"{case.name} {dtype}")
            t = compare(case, dtype, repeat, min_sample)
            rows.append({"case": case.name, "dtype": dtype, REFERENCE: t[REFERENCE], FAST: t[FAST],
                         "speedup": t[REFERENCE] / t[FAST], "target": case.target})
    report: dict[str, Any] = {"meta": _meta(repeat), "cases": rows}
    if FLOAT32_CASE in {c.name for c in cases} and {"float32", "float64"} <= set(dtypes):
        # Its own interleaved samples: two medians taken minutes apart would
        # also compare the machine's load at those two moments.
        if progress:
            progress(f"{FLOAT32_CASE} float32 vs float64")
        case = CASES_BY_NAME[FLOAT32_CASE]
        works = {dtype: prepare(case, FAST, dtype) for dtype in ("float64", "float32")}
        t = measure(works, repeat, min_sample, backends=dict.fromkeys(works, FAST))
        report["float32_vs_float64"] = dict(t, ratio=t["float64"] / t["float32"])
    if coldstart:
        report["cold_start"] = []
        for case in cases:
            if case.family == "train":
                if progress:
                    progress(f"{case.name} first call")
                times = first_call_times(case.name, threads=threads)
                report["cold_start"].append({"case": case.name, **times})
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``fastzero bench``: time every case under numpy and numba, print the speed-ups."""
    parser = argparse.ArgumentParser(
        prog="fastzero bench",
        description="Time each benchmark case under the numpy reference and the numba backend "
        "in this process (medians, compile time excluded) and print the speed-ups; then "
        "the first call of a training step in fresh processes with an empty and a warm "
        "numba cache.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="3 short samples, no slow cases (DeepConvNet step), no cold start")
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES),
                        help="dtypes to measure (default: both)")
    parser.add_argument("--repeat", type=int, help="samples per backend (default 7, quick 3)")
    parser.add_argument("--threads", type=int, help="threads for numba and BLAS (default: all)")
    parser.add_argument("--cases", action="append", metavar="PATTERN",
                        help="only cases whose name contains PATTERN or matches it as a glob; "
                        "repeatable (see --list)")
    parser.add_argument("--coldstart", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the first training step in fresh processes "
                        "(default: on, off with --quick)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")
    cases = select(args.cases, include_slow=not args.quick)
    if args.list:
        for case in cases:
            print(f"{case.name}{'  (slow)' if case.slow else ''}")
        return 0
    if not cases:
        parser.error(f"no case matches {args.cases}; see --list")
    if args.threads is not None:
        import fastzero

        try:
            fastzero.set_num_threads(args.threads)
        except ValueError as exc:
            parser.error(str(exc))
    report = run_benchmarks(
        cases,
        dtypes=args.dtype,
        repeat=args.repeat or (3 if args.quick else 7),
        min_sample=0.01 if args.quick else 0.05,
        coldstart=not args.quick if args.coldstart is None else args.coldstart,
        threads=args.threads or 0,
        progress=None if args.json else lambda msg: print(f"  measuring {msg} ...",
                                                           file=sys.stderr, flush=True),
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
