"""Data augmentation kernels (warp, bilinear resampling) on a batch of 100
MNIST images."""
import os

from . import _harness


class Augment(_harness._KernelTimes, family="augment"):
    """Seconds per call, numpy reference and numba, float64 and float32."""


class AugmentSpeedup(_harness._Speedup, family="augment"):
    """numpy time / numba time, measured in one process."""


class AugmentShareOfStep:
    """Each preset's cost on a batch of 100 as a percentage of a float32 training step
    (gradient + Adam) of SimpleConvNet and of DeepConvNet: calling-thread CPU time at
    1 thread, interleaved in one process (:mod:`benchmarks.augment_cost`)."""

    params = [["shift", "affine", "elastic"], ["SimpleConvNet", "DeepConvNet"]]
    param_names = ["preset", "net"]
    unit = "%"
    timeout = 600

    def setup_cache(self):
        from .augment_cost import measure

        return measure(rounds=15, deep=os.environ.get("FASTZERO_BENCH_FAST") != "1")

    def setup(self, median, preset, net):
        if f"{net} step" not in median:  # asv: skipped
            raise NotImplementedError("DeepConvNet steps are skipped with FASTZERO_BENCH_FAST=1")

    def track_share(self, median, preset, net):
        return 100 * median[f"augment {preset}"] / median[f"{net} step"]
