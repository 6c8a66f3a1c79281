"""``fastzero bench``: the command line over the cases, the timing and the report."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .cases import DTYPES, select
from .report import format_peers, format_report, run_benchmarks


def main(argv: Sequence[str] | None = None) -> int:
    """``fastzero bench``: time every case under numpy and numba, print the speed-ups."""
    parser = argparse.ArgumentParser(
        prog="fastzero bench",
        description="Time each benchmark case under the numpy reference and the numba backend "
        "in this process (medians, compile time excluded) and print the speed-ups; then "
        "the first call of a training step in fresh processes with an empty and a warm "
        "numba cache. With --peers: the book's convnets beside PyTorch instead.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="3 short samples, no slow cases (DeepConvNet step, numerical gradient), "
                        "no cold start")
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
    parser.add_argument("--peers", action="store_true",
                        help="time the SimpleConvNet and DeepConvNet training steps beside the "
                        "same networks in PyTorch (pip install \"fastzero[peers]\"); --cases "
                        "train.SimpleConvNet picks one")
    parser.add_argument("--layers", action="store_true",
                        help="with --peers: also each layer's forward and backward")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --peers at 2 or more threads: rounds of alternating "
                        "processes (default 3)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by the calling thread's CPU time instead of the wall clock, "
                        "so that other processes taking the core do not count (with --threads 1)")
    parser.add_argument("--no-vector", action="store_true",
                        help="convolutions without the vector tiles (BLAS and loops), to see what "
                        "the tiles bring")
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
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time counts the calling thread only: use it with --threads 1")
    import fastzero

    from .machine import disable_vector_tiles
    from .timing import CPU, WALL

    if args.no_vector:
        disable_vector_tiles()
    clock = CPU if args.cpu_time else WALL

    if args.threads is not None:
        try:
            fastzero.set_num_threads(args.threads)
        except ValueError as exc:
            parser.error(str(exc))
    progress = None if args.json else lambda msg: print(f"  measuring {msg} ...",
                                                         file=sys.stderr, flush=True)
    if args.peers or args.layers:
        from .peers import PEER_NETS, compare

        names = {c.name for c in cases}
        nets = [net for net in PEER_NETS if f"train.{net}" in names]
        if not nets:
            parser.error(f"--peers compares {', '.join(f'train.{n}' for n in PEER_NETS)}: "
                         f"none matches {args.cases}")
        if args.rounds < 1:
            parser.error("--rounds must be >= 1")
        report = compare(nets, args.dtype, fastzero.get_num_threads(), args.layers,
                         repeat=args.repeat or (3 if args.quick else 7),
                         min_sample=0.01 if args.quick else 0.05, rounds=args.rounds,
                         progress=progress, clock=clock)
        print(json.dumps(report, indent=2) if args.json else format_peers(report))
        return 0
    report = run_benchmarks(
        cases,
        dtypes=args.dtype,
        repeat=args.repeat or (3 if args.quick else 7),
        min_sample=0.01 if args.quick else 0.05,
        coldstart=not args.quick if args.coldstart is None else args.coldstart,
        threads=args.threads or 0,
        progress=progress,
        clock=clock,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
