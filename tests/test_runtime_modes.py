"""The numba backend under numba's run-time switches: NUMBA_DISABLE_JIT=1 runs the kernels as Python."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from kernel_families import FAMILIES

HERE = Path(__file__).parent


def _families(tmp_path: Path, env: dict[str, str], name: str) -> dict[str, np.ndarray]:
    out = tmp_path / f"{name}.npz"
    proc = subprocess.run(
        [sys.executable, str(HERE / "kernel_families.py"), ",".join(FAMILIES), "0.05", str(out)],
        env=env, cwd=HERE, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as data:
        return dict(data)


def test_disable_jit_runs_every_kernel_family_with_the_compiled_results(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    compiled = _families(tmp_path, env, "compiled")
    interpreted = _families(tmp_path, dict(env, NUMBA_DISABLE_JIT="1"), "interpreted")
    for family in FAMILIES:
        np.testing.assert_allclose(interpreted[family], compiled[family], rtol=1e-9, atol=1e-12,
                                   err_msg=family)
