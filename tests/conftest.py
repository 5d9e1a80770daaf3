"""Shared test fixtures: where ../shared is (skips with a reason when it is absent), a dark scene,
the benchmark scripts as modules."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="session")
def benchmark_script():
    """``load(name)``: the script ``benchmarks/<name>.py`` as a module."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Test images are tiny: a second thread gains nothing, and on a busy 2-core machine OpenMP
    threads waiting on each other make each step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dark_scene_rgb8() -> np.ndarray:
    """A gray, smoothly textured scene at 6 % exposure with a little noise, ``(32, 32, 3)`` uint8:
    structured enough that the fit's exposure rule, not the noise, sets the output's level."""
    yy, xx = np.mgrid[0:32, 0:32] / 32
    scene = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.15 * (xx > 0.5)
    noisy = scene * 0.06 + np.random.default_rng(3).normal(0, 0.005, scene.shape)
    return np.repeat((np.clip(noisy, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, -1)
