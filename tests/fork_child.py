"""Fork after a kernel family ran: ``python fork_child.py FAMILY`` prints CHILD and POOL verdicts.

The process runs ``FAMILY`` (see :mod:`kernel_families`), then forks a child
that runs it again, then a ``multiprocessing`` pool (fork start method) whose
workers run it. Each compares its results with the parent's.
"""
from __future__ import annotations

import multiprocessing
import os
import sys

import numpy as np

from kernel_families import run


def same_as_parent(family: str) -> bool:
    return bool(np.array_equal(run(family), WANT))


if __name__ == "__main__":
    family = sys.argv[1]
    WANT = run(family)
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if same_as_parent(family) else 3
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("CHILD", os.waitstatus_to_exitcode(status), flush=True)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        verdicts = pool.map_async(same_as_parent, [family] * 2).get(timeout=60)
    print("POOL", all(verdicts), flush=True)
