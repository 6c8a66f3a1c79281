"""What the machine offers: numpy's BLAS and its kernel, numba's CPU, the GEMM rate.

The GEMM rate is the floor a training step is measured against: a step of F
operations cannot take less than F / rate seconds on these cores.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np


def numpy_blas() -> dict[str, Any]:
    """numpy's BLAS as threadpoolctl sees it: library, version, kernel ("architecture")."""
    from threadpoolctl import threadpool_info

    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    mine = [i for i in infos if "numpy" in i.get("filepath", "")] or infos
    if not mine:
        return {"internal_api": "unknown", "version": "?", "architecture": "?"}
    info = mine[0]
    return {key: info.get(key) or "?" for key in ("internal_api", "version", "architecture")}


def numba_cpu() -> str:
    """The CPU numba compiles for (``NUMBA_CPU_NAME`` if set, else the host's)."""
    from numba.core import config

    if config.CPU_NAME:
        return str(config.CPU_NAME)
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


def gemm_rate(dtype: Any, threads: int, n: int = 2048, repeat: int = 3) -> float:
    """Operations per second of numpy's ``n x n`` matrix product at ``threads`` BLAS threads
    (the best of ``repeat`` products, after one untimed)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)
        for _ in range(repeat):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def disable_vector_tiles() -> None:
    """Send every convolution of this process to BLAS and loops instead of the vector
    tiles of :mod:`fastzero.kernels.numba.conv_vector` (to see what the tiles bring)."""
    from fastzero.kernels.numba import conv

    conv.VECTOR_MIN_TAPS = 1 << 62


def vector_tiles() -> bool:
    """False once :func:`disable_vector_tiles` ran in this process."""
    from fastzero.kernels.numba import conv

    return conv.VECTOR_MIN_TAPS < 1 << 62
