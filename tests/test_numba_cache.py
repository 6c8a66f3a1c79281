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
    import sys
    import warnings
    import numpy as np
    from numba import prange
    from fastzero.kernels.numba._jit import pjit

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
        print("WARNINGS", len([w for w in caught if "numba cache" in str(w.message)]))
    """
)


def _run(script, cache_dir, dtypes, **kwargs):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
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


def test_two_processes_compile_different_signatures_at_once(kernel_script, tmp_path):
    cache = tmp_path / "cache"
    procs = [
        _run(kernel_script, cache, "float64,float32"),
        _run(kernel_script, cache, "float32,float64"),
    ]
    for proc in procs:
        _finish(proc)
    assert len(glob.glob(str(cache / "**" / "*.nbc"), recursive=True)) == 2
    # A third process loads both signatures from the cache and gets the right numbers.
    assert _finish(_run(kernel_script, cache, "float64,float32")) == 0


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
