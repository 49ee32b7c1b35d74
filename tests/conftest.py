"""Shared fixtures. Tests that need the real data in ``$ATTRLAB_DATA_DIR`` (``.ci/run`` points
it at ``../shared/data``) are skipped on a machine without it, and fail instead under CI
(``CI=true``), so that a CI run can never pass by skipping them."""

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    value = os.environ.get("ATTRLAB_DATA_DIR")
    path = Path(value) if value else None
    if path is None or not path.is_dir():
        reason = f"real data not available (ATTRLAB_DATA_DIR={value!r})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: CI must provide it")
        pytest.skip(reason)
    return path


@pytest.fixture
def one_thread():
    """Torch on one thread for a test: on 2 shared cores OpenMP spin-waiting with 2 threads
    is ~100x slower on tiny models. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
