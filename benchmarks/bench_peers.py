"""fastzero beside PyTorch: the book's convnets' training step (batch 100, Adam), as
``fastzero bench --peers`` measures it at this process's thread count (at 1 thread
interleaved in one process, at more in alternating processes). Needs
``pip install "fastzero[peers]"``; without torch the suite is skipped."""
import os

import fastzero
from fastzero.bench import peers

from . import _harness


class VsTorch:
    """PyTorch step time / fastzero step time: above 1, fastzero is faster."""

    params = [list(peers.PEER_NETS), _harness.DTYPES]
    param_names = ["case", "dtype"]
    unit = "x"
    timeout = 900
    #: samples per system, the least seconds a sample lasts, rounds of processes
    repeat_samples, min_sample, rounds = 5, 0.02, 2

    def setup(self, case: str, dtype: str) -> None:
        missing = peers.torch_missing()
        if missing:
            raise NotImplementedError(missing)
        if _harness.get_case("train", case).slow and os.environ.get("FASTZERO_BENCH_FAST") == "1":
            raise NotImplementedError(f"{case} is slow: skipped with FASTZERO_BENCH_FAST=1")

    def track_vs_torch(self, case: str, dtype: str) -> float:
        t = peers.measure_pair(case, dtype, fastzero.get_num_threads(), repeat=self.repeat_samples,
                               min_sample=self.min_sample, rounds=self.rounds)
        return round(t["pytorch"]["step"] / t["fastzero"]["step"], 3)
