"""benchmarks/stack_exposure.py: stacks built from the microscopy pairs, read out by each plane's
own gain, by one gain for the stack, and without the gain."""
from __future__ import annotations

import json

import numpy as np
import pytest


def test_planes_are_squares_moving_across_the_pair_each_under_its_own_light(benchmark_script):
    stacks = benchmark_script("stack_exposure")
    low, high = np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)
    planes, references = stacks.stack_planes(low, high, crop=16, shift=4, light=(0.5, 1.0, 0.25))
    assert planes.shape == references.shape == (3, 16, 16)
    top, left = (40 - 24) // 2, (50 - 24) // 2  # the three squares span 16 + 2 * 4 pixels, centred
    np.testing.assert_allclose(planes[1], low[top + 4 : top + 20, left + 4 : left + 20])
    np.testing.assert_allclose(references[2], 0.25 * high[top + 8 : top + 24, left + 8 : left + 24])
    on_offset, _ = stacks.stack_planes(low, high, crop=16, shift=4, light=(0.5, 1.0, 0.25), offset=0.1)
    np.testing.assert_allclose(on_offset[2], np.clip(0.1 + 0.25 * (low[top + 8 : top + 24, left + 8 : left + 24] - 0.1), 0, 1))
    with pytest.raises(ValueError, match="too small"):
        stacks.stack_planes(low, high, crop=38, shift=4, light=(1.0, 1.0))


def test_the_camera_offset_is_the_low_images_level_where_its_reference_is_dark(benchmark_script):
    stacks = benchmark_script("stack_exposure")
    high = np.random.default_rng(1).random((64, 64))
    noise = np.random.default_rng(2).normal(0, 0.05, high.shape)
    assert stacks.camera_offset(0.2 + 0.5 * high + noise, high) == pytest.approx(0.2, abs=0.01)
    assert stacks.camera_offset(0.8 * high - 0.1, high) == 0.0


def test_one_gain_keeps_the_dim_planes_dim_where_each_planes_own_gain_lifts_them_level(benchmark_script, shared_data_dir, tmp_path):
    stacks = benchmark_script("stack_exposure")
    out = tmp_path / "stack"
    assert stacks.main(["--crop", "32", "--steps", "2", "--later-steps", "1", "--names", "FMD_R_1", "--threads", "1",
                        "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())["results"]["FMD_R_1"]
    assert set(stacks.READOUTS) <= set(result) and result["stack_gain"] > 0
    own, one = result["own gain"]["relative_levels"], result["stack gain"]["relative_levels"]
    # the stack's gain is the smallest plane's own: no plane comes out brighter, relative to the
    # brightest, than by its own gain, and the dim ones come out dimmer
    assert all(level <= alone + 1e-3 for level, alone in zip(one, own)) and one[0] < own[0] - 0.02
    assert result["stack gain"]["level_error"] < result["own gain"]["level_error"]
    assert "| stack gain |" in out.with_suffix(".md").read_text()
