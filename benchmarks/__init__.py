"""asv benchmark suites of fastzero, one module per family of cases.

Every suite is a view of the one case registry, :data:`fastzero.bench.CASES`
(the same cases, by the same names, as ``fastzero bench`` prints; its kernel
cases come from :data:`fastzero.kernels.cases.CASES`), parameterised by case,
backend ("numpy" reference, "numba") and dtype. Kernel families (``bench_conv``
... ``bench_optim``) time each kernel at the book's layer shapes;
``bench_layer`` each layer's forward + backward and ``bench_net`` each
network's loss and gradient at batch 1, 3 and 100; ``bench_train`` the
training steps of the book's chapter scripts:

* ``time_*``: one case's work, JIT compilation kept out (warmed in setup);
* ``track_speedup``: numpy time / numba time measured in the same process
  (unit "x"), so the dashboard plots the speed-up itself;
* ``peakmem_*`` (training steps) beside an empty ``peakmem_reference``;
* ``bench_coldstart``: first training step in a fresh interpreter with an
  empty and with a warm numba cache, and the import time;
* ``track_vs_torch`` (``bench_peers``): PyTorch step time / fastzero step time of
  the two convnets (NotImplementedError, i.e. skipped, without torch).

``FASTZERO_BENCH_FAST=1`` skips the slow cases (the DeepConvNet training step,
the numerical gradient).
"""
