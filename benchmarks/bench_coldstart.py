"""Cold start: what a user waits for before the first training step is done.

``FirstTrainingStep`` runs a float64 training step (numba backend) in a fresh
interpreter with an empty numba cache (``cold``: every kernel compiles), then
in another with the cache the first one wrote (``warm``: kernels load from
disk), and tracks the seconds the first step took (:func:`fastzero.bench.first_call_times`).
"""
import os

from fastzero import bench


_NETS = [name.removeprefix("train.") for name in bench.COLDSTART_CASES]


class FirstTrainingStep:
    """Seconds of the first training step in a fresh process, numba backend, float64."""

    params = [_NETS, ["cold", "warm"]]
    param_names = ["case", "numba_cache"]
    unit = "seconds"

    def setup_cache(self) -> dict:
        fast = os.environ.get("FASTZERO_BENCH_FAST") == "1"
        return {
            net: bench.first_call_times(f"train.{net}")
            for net in _NETS
            if not (fast and bench.CASES_BY_NAME[f"train.{net}"].slow)
        }

    setup_cache.timeout = 1200

    def setup(self, results: dict, case: str, numba_cache: str) -> None:
        if case not in results:
            raise NotImplementedError(f"{case} is slow: skipped with FASTZERO_BENCH_FAST=1")

    def track_first_step(self, results: dict, case: str, numba_cache: str) -> float:
        return results[case][numba_cache]


def timeraw_import_fastzero():
    """Seconds to import the public API in a fresh interpreter (no kernel compiles)."""
    return "import fastzero, fastzero.layers, fastzero.nets, fastzero.optimizer"
