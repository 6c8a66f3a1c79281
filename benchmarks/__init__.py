"""asv benchmark suites of fastzero, one module per kernel family.

Every suite is a view of the one case registry, :data:`fastzero.bench.CASES`
(the same cases ``fastzero bench`` prints), parameterised by case (the book's
layer shapes), backend ("numpy" reference, "numba") and dtype:

* ``time_*``: one case's work, JIT compilation kept out (warmed in setup);
* ``track_speedup``: numpy time / numba time measured in the same process
  (unit "x"), so the dashboard plots the speed-up itself;
* ``peakmem_*`` (training steps) beside an empty ``peakmem_reference``;
* ``bench_coldstart``: first training step in a fresh interpreter with an
  empty and with a warm numba cache, and the import time.

``FASTZERO_BENCH_FAST=1`` skips the slow cases (the DeepConvNet training step).
"""
