"""Shared test fixtures: where ../shared is, and skips with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ZEROIG_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "SPEC.md").is_file():
        pytest.skip(f"parity fixtures not found at {REFERENCE} (set ZEROIG_SHARED to the shared/ folder)")
    return REFERENCE


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"shared data not found at {data} (set ZEROIG_SHARED to the shared/ folder)")
    return data


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Test images are tiny: a second thread gains nothing, and on a busy 2-core machine OpenMP
    threads waiting on each other make each step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
