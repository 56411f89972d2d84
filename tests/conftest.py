from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
# long searches, e.g. for the property tests (tests/test_properties.py): minutes, not seconds
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# the real files beside the checkout (``../shared/data``); XSR_TEST_DATA overrides the folder
SHARED_DATA = Path(
    os.environ.get("XSR_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture
def shared_data() -> Path:
    """The folder of real files beside the checkout; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present")
    return SHARED_DATA


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data file {path} not present")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module of tiny fits (faster than two, and robust to a busy
    machine); the thread count is restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
