"""The bounds-checked CI job really checks bounds.

CI runs the bad-input, property and numba-kernel tests under
``NUMBA_BOUNDSCHECK=1`` with a fresh ``NUMBA_CACHE_DIR``, so that a numba
kernel reached with arguments that make it index out of range raises instead
of reading or writing someone else's memory. That job is only worth its time
if the flag actually reaches the kernels (numba's cache key does not include
it: kernels cached without checks would be reused silently). Here a child
process with the same environment

* calls raw numba kernels (the backend's contract functions, which never
  validate, straight into their jitted bodies) out of range -- max-pool
  backward with an ``argmax`` smaller than ``dout``, and the affine forward's
  bias add (on its serial path) with a bias shorter than the rows -- and sees
  ``IndexError`` (raised inside a parallel region, numba re-raises it as the
  cause of a ``SystemError``);
* calls the same max-pool backward in range, with the result equal to the
  NumPy reference (so the error above is the out-of-range access, nothing
  else);
* feeds the public ``Pooling`` layer the bad input and gets the layer's own
  ``ValueError`` naming the layer and both shapes: validation stops it before
  any kernel runs, so no IndexError is reachable from the public API there.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

#: also run by CI's bounds-checked job (NUMBA_BOUNDSCHECK=1)
pytestmark = pytest.mark.boundscheck

CHILD = textwrap.dedent(r"""
    import json
    import numba
    import numpy as np

    import fastzero
    from fastzero.kernels import numpy as ref
    from fastzero.kernels.numba import dense, pool
    from fastzero.layers import Pooling

    def outcome(call):
        try:
            call()
        except Exception as exc:
            chain = []
            while exc is not None:  # numba's parallel regions wrap the kernel's error in SystemError
                chain.append([type(exc).__name__, str(exc)])
                exc = exc.__cause__ or exc.__context__
            return chain
        return None

    report = {"boundscheck": numba.config.BOUNDSCHECK}
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    out, argmax = pool.maxpool_forward(x, 2, 2, 2, 0)
    dout = np.random.default_rng(1).standard_normal(out.shape)

    dx = pool.maxpool_backward(dout, argmax, x.shape, 2, 2, 2, 0)  # in range: must not raise
    _, ref_argmax = ref.maxpool_forward(x, 2, 2, 2, 0)
    report["in_range_matches_reference"] = bool(np.array_equal(
        dx, ref.maxpool_backward(dout, ref_argmax, x.shape, 2, 2, 2, 0)))

    short_argmax = np.ascontiguousarray(argmax[:, :, :1, :1])  # dout is (2, 3, 2, 2)
    report["pool_short_argmax"] = outcome(
        lambda: pool.maxpool_backward(dout, short_argmax, x.shape, 2, 2, 2, 0))
    # the serial bias kernel (no parallel region): a plain IndexError
    report["serial_bias_too_short"] = outcome(
        lambda: dense._add_row_vector_body(np.ones((3, 4)), np.ones(3)))

    with fastzero.use_backend("numba"):
        layer = Pooling(2, 2, stride=2)
        layer.forward(x)
        layer.arg_max = short_argmax  # the book's attribute is a view for users, not the kernel's input
        report["layer_after_tampering"] = outcome(lambda: layer.backward(dout))
        report["layer_short_dout"] = outcome(lambda: layer.backward(dout[:, :, :1, :1]))
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cache = tmp_path_factory.mktemp("numba-cache")  # fresh: the cache key ignores the flag
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _index_error(chain) -> bool:
    return chain is not None and any(
        name == "IndexError" and "out of bounds" in message for name, message in chain
    )


def test_the_flag_reaches_numba(report):
    assert report["boundscheck"] == 1


@pytest.mark.parametrize("case", ["pool_short_argmax", "serial_bias_too_short"])
def test_raw_kernels_called_out_of_range_raise_index_error(report, case):
    assert _index_error(report[case]), report[case]


def test_the_same_kernel_in_range_is_unaffected(report):
    assert report["in_range_matches_reference"]


def test_the_public_layer_refuses_the_bad_input_before_any_kernel(report):
    assert report["layer_after_tampering"] is None, report["layer_after_tampering"]
    ((name, message),) = report["layer_short_dout"]
    assert name == "ValueError"
    assert "Pooling" in message and "(2, 3, 2, 2)" in message and "(2, 3, 1, 1)" in message
