"""The report of ``fastzero bench``: measured as a JSON-ready dict, printed as tables."""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from . import timing
from .coldstart import first_call_times
from .cases import (
    CASES_BY_NAME,
    COLDSTART_CASES,
    DTYPES,
    FAST,
    FLOAT32_CASE,
    FLOAT32_TARGET,
    REFERENCE,
    Case,
)


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


def _blas_line(meta: dict) -> str:
    blas = meta["blas"]
    return (f"numpy BLAS {blas['internal_api']} {blas['version']} (kernel "
            f"{blas['architecture']}) | numba CPU {meta['numba_cpu']}")


def format_report(report: dict) -> str:
    """The human-readable tables of a report made by :func:`run_benchmarks`."""
    meta = report["meta"]
    out = [
        f"fastzero bench: median milliseconds per call of {REFERENCE} (reference) and {FAST}, "
        f"{meta['repeat']} interleaved samples each, compile time excluded",
        f"threads {meta['threads']} | numpy {meta['numpy']} | numba {meta['numba']} | "
        f"python {meta['python']} | {meta['machine']}",
        *([_blas_line(meta)] if "blas" in meta else []),
        *([_setup_line(meta)] if "clock" in meta else []),
        f"speed-up = {REFERENCE} ms / {FAST} ms; target = the least speed-up asked of a case, "
        "in float64 only",
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
        out += ["", f"first call in a fresh process ({FAST}, float64): with an empty numba cache "
                "(cold: every kernel compiles), with the cache a previous process left (warm), "
                "and the one call right after the warm one (2nd call: a single call with "
                "first-touch allocations, not a median like the table above)", ""]
        rows = [[r["case"], f"{r['cold']:.2f} s", f"{r['warm']:.2f} s",
                 f"{_fmt_ms(r['second'])} ms"] for r in cold]
        out.append(_table(["case", "cold", "warm", "2nd call"], rows, right={1, 2, 3}))
    return "\n".join(out)


def clock_name(clock: timing.Clock) -> str:
    """How a report's samples were timed."""
    return "thread CPU time" if clock is timing.CPU else "wall time"


def _setup_line(meta: dict) -> str:
    return (f"timed by {meta['clock']} | convolution vector tiles "
            f"{'on' if meta['vector_tiles'] else 'off (--no-vector)'}")


def _meta(repeat: int, clock: timing.Clock = timing.WALL) -> dict:
    import platform

    import numba

    from fastzero._threads import get_num_threads

    from .machine import numba_cpu, numpy_blas, vector_tiles

    return {
        "repeat": repeat,
        "clock": clock_name(clock),
        "vector_tiles": vector_tiles(),
        "threads": get_num_threads(),
        "numpy": np.__version__,
        "blas": numpy_blas(),
        "numba_cpu": numba_cpu(),
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
    clock: timing.Clock = timing.WALL,
) -> dict:
    """Measure ``cases`` under both backends; return a JSON-ready report."""
    rows = []
    for case in cases:
        for dtype in dtypes:
            if progress:
                progress(f"{case.name} {dtype}")
            t = timing.compare(case, dtype, repeat, min_sample, clock)
            rows.append({"case": case.name, "dtype": dtype, REFERENCE: t[REFERENCE], FAST: t[FAST],
                         "speedup": t[REFERENCE] / t[FAST], "target": case.target_for(dtype)})
    report: dict[str, Any] = {"meta": _meta(repeat, clock), "cases": rows}
    if FLOAT32_CASE in {c.name for c in cases} and {"float32", "float64"} <= set(dtypes):
        # Its own interleaved samples: two medians taken minutes apart would
        # also compare the machine's load at those two moments.
        if progress:
            progress(f"{FLOAT32_CASE} float32 vs float64")
        case = CASES_BY_NAME[FLOAT32_CASE]
        works = {dtype: timing.prepare(case, FAST, dtype) for dtype in ("float64", "float32")}
        t = timing.measure(works, repeat, min_sample, backends=dict.fromkeys(works, FAST),
                           clock=clock)
        report["float32_vs_float64"] = dict(t, ratio=t["float64"] / t["float32"])
    if coldstart:
        report["cold_start"] = []
        for case in cases:
            if case.name in COLDSTART_CASES:
                if progress:
                    progress(f"{case.name} first call")
                times = first_call_times(case.name, threads=threads)
                report["cold_start"].append({"case": case.name, **times})
    return report


def _versus(fastzero: float, pytorch: float) -> str:
    ratio = pytorch / fastzero
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def _rate(flops: int, seconds: float | None, gemm: float | None = None) -> str:
    if not flops or not seconds:
        return ""
    rate = flops / seconds
    return f"{rate / 1e9:.1f}" + (f" ({rate / gemm:.0%})" if gemm else "")


def format_peers(report: dict) -> str:
    """The tables of a report made by :func:`fastzero.bench.peers.compare`."""
    if "skipped" in report:
        return f"fastzero bench --peers: skipped: {report['skipped']}"
    meta = report["meta"]
    threads = meta["threads"]
    how = ("interleaved in one process" if threads == 1 else
           f"each system in its own process, alternating, median of {meta['rounds']} rounds")
    gemm = meta["gemm_rate"]
    out = [
        f"fastzero bench --peers: one training step (gradient + Adam), batch {meta['batch']}, "
        f"median ms of {meta['repeat']} samples, {threads} thread(s), {how}",
        f"{_blas_line(meta)} | torch {meta['torch']}",
        *([_setup_line(meta)] if "clock" in meta else []),
        "GEMM rate (numpy, 2048x2048 matmul, {} thread(s)): {}".format(
            threads, ", ".join(f"{d} {r / 1e9:.1f} GFLOP/s" for d, r in gemm.items())),
        "GFLOP/s = the step's convolution and affine operations (backward = 2x forward, the first "
        "layer's 1x: no image gradient) / its time; (%) = share of the GEMM rate",
        "",
    ]
    rows = [
        [r["net"], r["dtype"], f"{r['flops'] / 1e9:.3f}", _fmt_ms(r["fastzero"]),
         _fmt_ms(r["pytorch"]), _versus(r["fastzero"], r["pytorch"]),
         _rate(r["flops"], r["fastzero"], gemm[r["dtype"]]),
         _rate(r["flops"], r["pytorch"], gemm[r["dtype"]])]
        for r in report["steps"]
    ]
    out.append(_table(["net", "dtype", "GFLOP", "fastzero ms", "pytorch ms", "fastzero vs pytorch",
                       "fastzero GFLOP/s", "pytorch GFLOP/s"], rows, right={2, 3, 4, 5, 6, 7}))
    layers = report.get("layers")
    if layers:
        for net, dtype in dict.fromkeys((r["net"], r["dtype"]) for r in layers):
            out += ["", f"{net} {dtype}, per layer: forward (fwd) and backward (bwd) ms and GFLOP/s"
                    " (the first layer's PyTorch backward computes no image gradient)", ""]
            rows = []
            for r in (r for r in layers if r["net"] == net and r["dtype"] == dtype):
                row = [r["layer"], "x".join(map(str, r["input_shape"])),
                       f"{r['forward_flops'] / 1e9:.3f}" if r["forward_flops"] else ""]
                for way in ("forward", "backward"):
                    for system in ("fastzero", "pytorch"):
                        seconds = r[f"{system}_{way}"]
                        row += [_fmt_ms(seconds) if seconds else "-",
                                _rate(r[f"{way}_flops"], seconds)]
                rows.append(row)
            out.append(_table(
                ["layer", "input", "GFLOP fwd", "fastzero fwd ms", "GFLOP/s", "pytorch fwd ms",
                 "GFLOP/s", "fastzero bwd ms", "GFLOP/s", "pytorch bwd ms", "GFLOP/s"],
                rows, right=set(range(2, 11))))
    return "\n".join(out)
