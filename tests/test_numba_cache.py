"""The guarded numba cache: concurrent compiles, corrupt entries, lock in use."""
import fcntl
import glob
import os
import subprocess
import sys
import textwrap
import time

import pytest

KERNEL_MODULE = textwrap.dedent(
    """
    import os
    import sys
    import time
    import warnings
    import numpy as np
    from numba import prange
    from numba.core import caching
    from fastzero.kernels.numba._jit import pjit

    if os.environ.get("SLOW_INDEX_READ"):
        # Widen the window between reading the cache index and rewriting it, so that
        # processes saving at about the same time overlap in it unless a lock orders them.
        load_index = caching.IndexDataCacheFile._load_index

        def slow_load_index(self):
            overloads = load_index(self)
            time.sleep(float(os.environ["SLOW_INDEX_READ"]))
            return overloads

        caching.IndexDataCacheFile._load_index = slow_load_index

    @pjit
    def scaled_sum(x, a):
        out = np.empty_like(x)
        for i in prange(x.shape[0]):
            out[i] = x[i] * a + i
        return out

    if __name__ == "__main__":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for dtype in sys.argv[1].split(","):
                x = np.arange(7, dtype=dtype)
                got = scaled_sum(x, x.dtype.type(3))
                assert got.dtype == x.dtype, got.dtype
                assert np.array_equal(got, x * 3 + np.arange(7)), got
        stats = scaled_sum.stats
        print("CACHE", sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
        print("WARNINGS", len([w for w in caught if "numba cache" in str(w.message)]))
    """
)


def _run(script, cache_dir, dtypes, env=(), **kwargs):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), **dict(env))
    return subprocess.Popen(
        [sys.executable, str(script), dtypes],
        env=env,
        cwd=script.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return int(out.split("WARNINGS")[-1])


@pytest.fixture
def kernel_script(tmp_path):
    script = tmp_path / "kernel_mod.py"
    script.write_text(KERNEL_MODULE)
    return script


def _cache_stats(proc, timeout=240):
    """(hits, misses) of the kernel in a finished child; it must have run without warnings."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert int(out.split("WARNINGS")[-1]) == 0, out
    hits, misses = out.split("CACHE")[-1].split()[:2]
    return int(hits), int(misses)


def test_two_processes_compile_different_signatures_at_once(
        kernel_script, tmp_path):
    """What the lock protects: the index rewrites of processes saving at once are ordered.

    Each process compiles its own signature and saves it while the others do;
    reading the index is slowed down so that their read-modify-write cycles
    overlap. Unordered, the last writer's index drops the others' entries (or
    pairs them with another signature's data file). A fourth process must then
    load every signature from the cache, compiling none, with the right numbers.
    """
    cache = tmp_path / "cache"
    dtypes = ["float64", "float32", "int64"]
    procs = [_run(kernel_script, cache, d, env={"SLOW_INDEX_READ": "2"}) for d in dtypes]
    for proc in procs:
        assert _cache_stats(proc) == (0, 1)
    assert len(glob.glob(str(cache / "**" / "*.nbc"), recursive=True)) == len(dtypes)
    assert _cache_stats(_run(kernel_script, cache, ",".join(dtypes))) == (len(dtypes), 0)


def test_corrupt_cache_is_recompiled_with_a_warning(kernel_script, tmp_path):
    cache = tmp_path / "cache"
    assert _finish(_run(kernel_script, cache, "float64")) == 0
    files = glob.glob(str(cache / "**" / "*.nb[ic]"), recursive=True)
    assert files
    for path in files:
        with open(path, "r+b") as f:
            f.seek(0)
            f.write(b"\x80garbage" * 4)
            f.truncate(40)
    assert _finish(_run(kernel_script, cache, "float64")) >= 1
    # The rewritten cache is clean again.
    assert _finish(_run(kernel_script, cache, "float64")) == 0


def test_cache_writes_wait_for_the_lock(kernel_script, tmp_path):
    cache = tmp_path / "cache"
    assert _finish(_run(kernel_script, cache, "float64")) == 0
    (lock_path,) = glob.glob(str(cache / "**" / "*.nbi.lock"), recursive=True)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = _run(kernel_script, cache, "float32")  # new signature: must save
        time.sleep(20)
        assert proc.poll() is None, "the compiling process did not wait for the cache lock"
    finally:
        os.close(fd)
    assert _finish(proc) == 0
