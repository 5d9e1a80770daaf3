"""zeroig_plugin.demo: the built-in example, enhanced and scored as `zeroig enhance` would do a photo."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from zeroig_plugin.cli import cli


@pytest.mark.parametrize("mode, recorded, finished", [("default", "improved", True), ("faithful", "faithful", False)])
def test_the_demo_writes_its_images_and_scores_with_the_photo_defaults(tmp_path, mode, recorded, finished):
    result = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "--iters", "1", "--device", "cpu", "--mode", mode])
    assert result.exit_code == 0, result.output
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["denoise.png", "enhance.png", "low.png", "reference.png", "side_by_side.png"]
    scores = [line.split() for line in result.output.splitlines() if line.split()[:1] in (["low"], ["enhance"], ["denoise"])]
    assert [row[0] for row in scores] == ["low", "enhance", "denoise"]
    with Image.open(tmp_path / "denoise.png") as image:
        record = json.loads(image.text["Description"])
    assert record["finished_with_tv"] is finished  # `zeroig enhance`'s photo defaults, faithful as published
    assert record["mode"] == recorded and record["steps"] == 1


def test_a_simulated_dark_capture_puts_the_shadows_in_srgbs_toe_and_is_8_bit():
    """Darkened in linear light and encoded again, a dark capture is not its reference scaled
    down: a shadow keeps a smaller share of its level than a highlight (brightening must lift it
    more), as in LOL's real pairs; scaling the encoded values keeps the same share everywhere."""
    import numpy as np

    from zeroig_plugin.demo import simulate_dark_capture, simulate_low_light

    levels = np.array([0.3, 0.9], np.float32)
    patches = np.repeat(levels[None, :, None], 3, axis=2).repeat(16, axis=0).repeat(16, axis=1)
    dark = simulate_dark_capture(patches, full_well=1e9, read_electrons=0.0)  # noiseless: the curve alone
    shadow, highlight = (dark[:, :16].mean() / 0.3, dark[:, 16:].mean() / 0.9)
    assert highlight > 1.5 * shadow > 0
    scaled = simulate_low_light(patches, exposure=0.1, photons_at_white=1e9, read_noise=0.0)
    assert scaled[:, :16].mean() / 0.3 == pytest.approx(scaled[:, 16:].mean() / 0.9, rel=0.01)
    noisy = simulate_dark_capture(patches, seed=3)
    np.testing.assert_array_equal(noisy, simulate_dark_capture(patches, seed=3))
    np.testing.assert_allclose(noisy * 255, np.round(noisy * 255), atol=1e-4)
    assert noisy.std() > 0 and 0.01 < float(noisy.mean()) < 0.15


def test_an_unknown_mode_or_device_is_a_usage_error_before_anything_runs(tmp_path):
    for option, value in (("--mode", "bogus"), ("--device", "tpu")):
        result = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "out"), "--iters", "1", option, value])
        assert result.exit_code == 2 and f"Invalid value for {option}" in result.output and value in result.output
    assert not (tmp_path / "out").exists()


def test_the_demo_says_it_is_sized_for_a_cpu_only_at_its_own_step_count(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "--iters", "1", "--device", "cpu"])
    assert result.exit_code == 0 and "sized to finish" not in result.output
