"""fastzero installed where its user cannot write still works, caching kernels in the user's cache.

A copy of the package is made read-only (directories 555, files 444) and
imported, with ``NUMBA_CACHE_DIR`` unset and ``HOME``/``XDG_CACHE_HOME``
pointing at a fresh writable directory, by a child process running as an
unprivileged user (root ignores file permissions, so as root the child drops
to uid/gid 65534 with ``setpriv``). The child computes a few kernels on the
numba backend and compares them with the NumPy reference. The test then
checks that numba's cache files went to ``$XDG_CACHE_HOME/numba`` and none
into the package, and that a second child loads every kernel from that cache
without compiling.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import fastzero

NOBODY = 65534

CHILD = r"""
import json, sys
import numpy as np
import fastzero
from fastzero.layers import Affine, Pooling, Relu, Sigmoid
from fastzero.kernels.numba import activation, dense, pool

def run():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    W, b = rng.standard_normal((27, 4)), rng.standard_normal(4)
    pooled = Pooling(2, 2, stride=2).forward(x)
    return [pooled, Relu().forward(x), Sigmoid().forward(x), Affine(W, b).forward(pooled)]

with fastzero.use_backend("numba"):
    got = run()
with fastzero.use_backend("numpy"):
    want = run()
dispatchers = [d for m in (activation, dense, pool) for d in vars(m).values() if hasattr(d, "stats")]
print(json.dumps({
    "module": fastzero.__file__,
    "equal": all(np.allclose(g, w, rtol=1e-12, atol=1e-12) for g, w in zip(got, want)),
    "hits": sum(sum(d.stats.cache_hits.values()) for d in dispatchers),
    "misses": sum(sum(d.stats.cache_misses.values()) for d in dispatchers),
}))
"""


def _drop_privileges() -> list[str] | None:
    """The command prefix that runs a child as an unprivileged user; None if impossible."""
    if os.geteuid() != 0:
        return []  # permissions already apply to us
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return None


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = 0o555 if path.is_dir() else 0o444
        path.chmod(mode)


def _package_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox():
    """A world-traversable scratch directory (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="fastzero-readonly-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(stat.S_IRWXU)
    shutil.rmtree(path)


def test_read_only_install_caches_kernels_in_the_user_cache(sandbox):
    prefix = _drop_privileges()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")

    site = sandbox / "site"
    shutil.copytree(Path(fastzero.__file__).parent, site / "fastzero",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _make_read_only(site)
    installed = _package_files(site)

    home = sandbox / "home"
    home.mkdir()
    if os.geteuid() == 0:
        os.chown(home, NOBODY, NOBODY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(site),
               PYTHONDONTWRITEBYTECODE="1")

    def child() -> dict:
        proc = subprocess.run([*prefix, sys.executable, "-c", CHILD], env=env, cwd=str(home),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    cold = child()
    assert cold["module"] == str(site / "fastzero" / "__init__.py")  # the read-only copy
    assert cold["equal"], "numba results differ from the reference"
    assert cold["misses"] > 0 and cold["hits"] == 0

    cache_root = home / ".cache" / "numba"
    cached = [p for p in cache_root.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert any(p.suffix == ".nbi" for p in cached) and any(p.suffix == ".nbc" for p in cached)
    assert all(p.stat().st_uid == (NOBODY if os.geteuid() == 0 else os.geteuid()) for p in cached)
    assert _package_files(site) == installed, "something was written into the package"

    warm = child()
    assert warm["equal"]
    # every kernel came from the cache (callers load whole: their callees are not looked up)
    assert warm["misses"] == 0 and warm["hits"] > 0, warm
