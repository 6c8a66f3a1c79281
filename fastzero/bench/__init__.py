"""Benchmarks of fastzero: the cases, their timing, the report and ``fastzero bench``.

One registry of cases drives both ``fastzero bench`` (a table of numpy vs
numba timings measured in one process) and the asv suites under
``benchmarks/``: add a case and it shows up in both.

* :mod:`.cases`: what is timed (inputs by dtype, the work on a backend);
* :mod:`.timing`: interleaved samples and their medians;
* :mod:`.coldstart`: the first call in fresh interpreters;
* :mod:`.tail`: single calls' spread (median/p90/max) and empty parallel regions;
* :mod:`.report`: the measurements as a JSON-ready dict and as tables;
* :mod:`.command`: the ``fastzero bench`` command line.

Run it as ``fastzero bench`` (or ``python -m fastzero.bench``)::

    fastzero bench                      # full table, float64 and float32
    fastzero bench --quick --cases conv # a quick look at the conv cases
"""
from .cases import (
    BATCH,
    CASES,
    CASES_BY_NAME,
    COLDSTART_CASES,
    DTYPES,
    FAST,
    REFERENCE,
    Case,
    TrainState,
    cases_of,
    select,
    train_step,
)
from .coldstart import first_call_times
from .command import main
from .report import format_report, run_benchmarks
from .timing import compare, measure, prepare

__all__ = [
    "BATCH", "CASES", "CASES_BY_NAME", "COLDSTART_CASES", "DTYPES", "FAST", "REFERENCE", "Case", "TrainState",
    "cases_of", "compare", "first_call_times", "format_report", "main", "measure", "prepare",
    "run_benchmarks", "select", "train_step",
]
