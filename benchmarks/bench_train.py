"""Whole training steps, batch 100: ``net.gradient(x, t)`` then the optimizer's
update, the workloads of the book's chapter scripts: TwoLayerNet (SGD),
MultiLayerNet and MultiLayerNetExtend with batch norm (SGD), SimpleConvNet and
DeepConvNet (Adam; slow: ``FASTZERO_BENCH_FAST=1`` skips it)."""
import dataclasses

import numpy as np

import fastzero
from fastzero import bench
from fastzero._backend import DEFAULT_BACKEND

from . import _harness


class TrainStep(_harness._KernelTimes, family="train"):
    """Seconds per training step; a few long samples rather than many short ones."""

    timeout = 600
    number = 1
    repeat = (3, 10, 20.0)
    warmup_time = 0


class TrainStepSpeedup(_harness._Speedup, family="train"):
    """numpy step time / numba step time, measured in one process."""

    timeout = 600
    repeat_samples, min_sample = 5, 0.0


class TrainStepMemory:
    """Peak memory of one training step. The kernels are compiled (or loaded from
    the numba cache) in setup by a step on a 2-sample batch, so that
    ``peakmem_step - peakmem_reference`` is what the step itself allocates."""

    params = [_harness.labels("train"), _harness.BACKENDS, _harness.DTYPES]
    param_names = ["case", "backend", "dtype"]
    timeout = 600

    def setup(self, case: str, backend: str, dtype: str) -> None:
        fastzero.set_backend(backend)
        self.state = _harness.get_case("train", case).setup(np.dtype(dtype))
        small = dataclasses.replace(self.state, x=self.state.x[:2], t=self.state.t[:2])
        bench.train_step(small)

    def teardown(self, case: str, backend: str, dtype: str) -> None:
        fastzero.set_backend(DEFAULT_BACKEND)

    def peakmem_step(self, case: str, backend: str, dtype: str) -> None:
        bench.train_step(self.state)

    def peakmem_reference(self, case: str, backend: str, dtype: str) -> None:
        """Empty: the memory of the interpreter, the inputs and the compiled kernels."""
