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
import json, warnings
import numpy as np

def run():
    from fastzero.layers import Affine, Pooling, Relu, Sigmoid
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    W, b = rng.standard_normal((27, 4)), rng.standard_normal(4)
    pooled = Pooling(2, 2, stride=2).forward(x)
    return [pooled, Relu().forward(x), Sigmoid().forward(x), Affine(W, b).forward(pooled)]

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastzero
    from fastzero.kernels.numba import activation, dense, pool
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
    "cache_warnings": [str(w.message) for w in caught if "numba" in str(w.message)],
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


def _install(sandbox: Path, read_only: bool = True) -> Path:
    """A copy of the package under ``sandbox/site``: read-only, or owned by the child's user."""
    site = sandbox / "site"
    shutil.copytree(Path(fastzero.__file__).parent, site / "fastzero",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if read_only:
        _make_read_only(site)
    else:
        _give_to_child(site)
    return site


def _give_to_child(root: Path) -> None:
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)


def _child_env(site: Path, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(site),
               PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _run_child(prefix: list[str], env: dict[str, str], cwd: Path) -> dict:
    proc = subprocess.run([*prefix, sys.executable, "-c", CHILD], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _why_the_child_cannot_run(prefix: list[str]) -> str | None:
    """Why the child's user cannot run this interpreter with numpy and numba; None if it can.

    As root the child runs as ``nobody``, which cannot use a virtual environment
    created inside a private directory (``python -m venv "$(mktemp -d)/venv"``
    makes one of mode 700).
    """
    if not prefix:
        return None  # the child is this user
    probe = subprocess.run([*prefix, sys.executable, "-c", "import numba, numpy"], cwd="/",
                           capture_output=True, text=True, timeout=300)
    if probe.returncode == 0:
        return None
    import numba
    import numpy

    for target in (Path(sys.executable), Path(numpy.__file__), Path(numba.__file__)):
        for directory in reversed(target.absolute().parents):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                return (f"{directory} (mode {stat.S_IMODE(mode):o}) is not searchable by uid "
                        f"{NOBODY}, which runs the child, and {target} lies below it")
    return f"uid {NOBODY} cannot run {sys.executable} with numpy and numba: {probe.stderr[-500:]}"


@pytest.fixture
def prefix():
    prefix = _drop_privileges()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
    reason = _why_the_child_cannot_run(prefix)
    if reason:
        pytest.skip(f"{reason}; create the environment in a world-readable directory "
                    "(CI makes its directory 755) to run this test")
    return prefix


def test_read_only_install_caches_kernels_in_the_user_cache(sandbox, prefix):
    site = _install(sandbox)
    installed = _package_files(site)
    home = sandbox / "home"
    home.mkdir()
    _give_to_child(home)
    env = _child_env(site, home)

    def child() -> dict:
        return _run_child(prefix, env, home)

    cold = child()
    assert cold["module"] == str(site / "fastzero" / "__init__.py")  # the read-only copy
    assert cold["equal"], "numba results differ from the reference"
    assert cold["misses"] > 0 and cold["hits"] == 0
    assert cold["cache_warnings"] == []

    cache_root = home / ".cache" / "numba"
    cached = [p for p in cache_root.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert any(p.suffix == ".nbi" for p in cached) and any(p.suffix == ".nbc" for p in cached)
    assert all(p.stat().st_uid == (NOBODY if os.geteuid() == 0 else os.geteuid()) for p in cached)
    assert _package_files(site) == installed, "something was written into the package"

    warm = child()
    assert warm["equal"]
    # every kernel came from the cache (callers load whole: their callees are not looked up)
    assert warm["misses"] == 0 and warm["hits"] > 0, warm


def test_no_writable_cache_anywhere_compiles_without_a_cache_after_one_warning(sandbox, prefix):
    """Read-only package, unwritable NUMBA_CACHE_DIR and home: the kernels still run."""
    site = _install(sandbox)
    installed = _package_files(site)
    home, cache_dir = sandbox / "home", sandbox / "numba-cache"
    home.mkdir(mode=0o555)
    cache_dir.mkdir(mode=0o555)
    env = _child_env(site, home, NUMBA_CACHE_DIR=str(cache_dir))
    for _ in range(2):  # nothing is cached: the second process compiles again, warns again
        got = _run_child(prefix, env, home)
        assert got["equal"], "numba results differ from the reference"
        assert got["hits"] == 0
        assert len(got["cache_warnings"]) == 1, got["cache_warnings"]
        assert "without a cache" in got["cache_warnings"][0]
    assert _package_files(site) == installed
    assert list(cache_dir.iterdir()) == [] and list(home.iterdir()) == []


def test_an_unwritable_numba_cache_dir_is_reported_with_where_the_cache_goes(sandbox, prefix):
    site = _install(sandbox, read_only=False)
    home, cache_dir = sandbox / "home", sandbox / "numba-cache"
    home.mkdir()
    _give_to_child(home)
    cache_dir.mkdir(mode=0o555)
    got = _run_child(prefix, _child_env(site, home, NUMBA_CACHE_DIR=str(cache_dir)), home)
    assert got["equal"]
    (warning,) = got["cache_warnings"]
    assert f"NUMBA_CACHE_DIR={str(cache_dir)!r} is not writable" in warning
    assert str(site / "fastzero") in warning  # where numba put the cache instead
