"""One knob for the number of threads: numba's parallel kernels and BLAS."""
from __future__ import annotations

import os

_num_threads: int | None = None


def _default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in numba kernels and in BLAS (via threadpoolctl).

    Raises ValueError unless ``1 <= n <= `` the number of usable cores
    (numba cannot start more threads than it was launched with).
    """
    global _num_threads
    import numba
    from threadpoolctl import threadpool_limits

    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads: n must be in [1, {limit}], got {n}")
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")
    _num_threads = n


def get_num_threads() -> int:
    """Threads in use (the value last set, else numba's default)."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("NUMBA_NUM_THREADS")
    return int(env) if env else _default_threads()
