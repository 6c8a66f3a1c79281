"""Shared test configuration: opt-in slow tests, hypothesis profiles, backend fixture."""
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


@pytest.fixture(params=available_backends())
def backend(request):
    """Run the test once under each backend (the active one inside the test)."""
    with fastzero.use_backend(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
