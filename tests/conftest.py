"""Shared test configuration: opt-in slow tests, hypothesis profiles, backend fixture,
the thread count restored after each test."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastzero
from fastzero._backend import available_backends

# Hypothesis: quick by default; FASTZERO_HYPOTHESIS_PROFILE=long for a deeper search.
settings.register_profile(
    "default", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("FASTZERO_HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FASTZERO_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set FASTZERO_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _thread_count_restored():
    """Each test finds fastzero's thread count as the previous one did: an in-process
    ``fastzero train --threads 1`` would otherwise change what later tests run on."""
    threads = fastzero.get_num_threads()
    yield
    if fastzero.get_num_threads() != threads:
        fastzero.set_num_threads(threads)


@pytest.fixture(params=available_backends())
def backend(request):
    """Run the test once under each backend (the active one inside the test)."""
    with fastzero.use_backend(request.param):
        yield request.param


@pytest.fixture
def threads():
    """Set the thread count for a test, restore it after."""
    before = fastzero.get_num_threads()
    yield fastzero.set_num_threads
    fastzero.set_num_threads(before)


@pytest.fixture
def sliced_products():
    """Large affine products in slices on fastzero's threads, as in a convolutional network,
    whatever ran before in this process (see ``fastzero._threads.blas_threaded_products``)."""
    from fastzero._threads import BLAS_THREADED_PRODUCTS

    token = BLAS_THREADED_PRODUCTS.set(False)
    yield
    BLAS_THREADED_PRODUCTS.reset(token)


@pytest.fixture
def sigint_at():
    """``sigint_at(monkeypatch, step)``: a real SIGINT (Ctrl-C) to this process as the
    Trainer's training step ``step`` (counted from 1) begins."""
    import signal

    from fastzero.trainer import Trainer

    def install(monkeypatch, step):
        real_step = Trainer.train_step

        def sigint_then_step(self):
            if self.current_iter == step - 1:
                os.kill(os.getpid(), signal.SIGINT)
            return real_step(self)

        monkeypatch.setattr(Trainer, "train_step", sigint_then_step)

    return install


@pytest.fixture
def numba_backend():
    """The numba backend active in the test, for comparisons with the NumPy
    reference (their numpy-against-numpy half could never fail)."""
    with fastzero.use_backend("numba"):
        yield "numba"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
