"""``fastzero bench``: the command line over the cases, the timing and the report."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .cases import DTYPES, select
from .report import format_report, run_benchmarks

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
