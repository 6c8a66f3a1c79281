"""A process forked after any kernel family ran on the numba backend still runs fastzero.

Each family runs in a fresh interpreter (:mod:`fork_child`), so that the
fork follows that family alone; the interpreter then forks a child and a
``multiprocessing`` pool (fork start method, Linux's default), which run the
family again and must get the parent's numbers. A child that dies or a pool
that never returns fails the test within the timeout.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_families import FAMILIES

HERE = Path(__file__).parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.mark.parametrize("family", FAMILIES)
def test_fork_child_and_fork_pool_after_a_kernel_family(family):
    proc = subprocess.Popen([sys.executable, str(HERE / "fork_child.py"), family], cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the pool's workers too
        out, err = proc.communicate()
        pytest.fail(f"{family}: no answer in 240 s (a forked process hung)\n{out}\n{err[-2000:]}")
    assert "CHILD 0" in out, f"{family}: the forked child failed\n{out}\n{err[-2000:]}"
    assert "POOL True" in out, f"{family}: the fork pool failed\n{out}\n{err[-2000:]}"
    assert proc.returncode == 0, err[-2000:]
