"""fastzero's time over the book's own code, in one process, on the small calls of
``book_small_calls.py``: every layer's forward + backward and every network's ``loss``
and ``gradient`` at batch 1, 3 and 100 (below 1: fastzero is faster; the numba backend).

The book's repository is imported from the checkout named by the environment
variable ``FASTZERO_BOOK`` (it is never part of fastzero); without it every case
is skipped (NotImplementedError, asv's skip).
"""
from __future__ import annotations

import functools
import os

from . import book_small_calls as small


@functools.lru_cache(maxsize=1)
def _pairs(n: int) -> dict:
    path = os.environ.get("FASTZERO_BOOK")
    if not path:
        raise NotImplementedError("set FASTZERO_BOOK to a checkout of the book's repository")
    return {name: (ours, theirs) for name, ours, theirs in small.cases(small.import_book(path), n)}


class VsBook:
    """``track_vs_book``: median fastzero seconds / median book seconds, sampled alternately."""

    params = [list(small.CASES), [1, 3, 100]]
    param_names = ["case", "batch"]
    unit = "ratio"
    timeout = 600

    def setup(self, case: str, batch: int) -> None:
        self.ours, self.theirs = _pairs(batch)[case]

    def track_vs_book(self, case: str, batch: int) -> float:
        ours, theirs = small.compare(self.ours, self.theirs)
        return round(ours / theirs, 3)
