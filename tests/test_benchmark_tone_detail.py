"""benchmarks/tone_detail.py: an output's error split into tone (low-pass) and detail, across kept fits."""
from __future__ import annotations

import json

import numpy as np
import pytest


def _scene(rng: np.random.Generator, side: int = 64) -> np.ndarray:
    rows, cols = np.mgrid[0:side, 0:side] / side
    base = 0.4 + 0.2 * np.sin(6 * rows)[..., None] * np.cos(5 * cols)[..., None] * np.array([1.0, 0.8, 0.6])
    return np.clip(base + 0.05 * rng.standard_normal((side, side, 3)), 0, 1).astype(np.float32)


def test_a_brightness_ramp_is_a_tone_error_and_white_noise_a_detail_error(benchmark_script):
    split = benchmark_script("tone_detail").split
    rng = np.random.default_rng(0)
    reference = _scene(rng)
    ramp = reference + np.linspace(-0.08, 0.08, reference.shape[1])[None, :, None]
    noisy = reference + 0.03 * rng.standard_normal(reference.shape)
    ramped, noised = split(ramp, reference), split(noisy, reference)
    assert ramped["detail"] > ramped["tone"] + 15
    assert noised["tone"] > noised["detail"] + 15
    assert abs(ramped["psnr"] - ramped["tone"]) < 1 and abs(noised["psnr"] - noised["detail"]) < 1


def test_kept_fits_are_read_by_label_and_the_finished_row_is_the_engines(tmp_path, benchmark_script):
    """Two step counts of the same fit, kept by quality.py, give one row per image and label; the
    finished output is the engine's ``finish_with_tv`` result."""
    quality, script = benchmark_script("quality"), benchmark_script("tone_detail")
    common = ["--datasets", "skimage-synthetic", "--names", "astronaut", "--size", "32", "--modes", "default", "--threads", "1"]
    for steps in ("1", "3"):
        assert quality.main([*common, "--steps", steps, "--keep-outputs", str(tmp_path / f"fit_{steps}.npz"),
                             "--out", str(tmp_path / f"q{steps}")]) == 0
    assert script.main(["--kept", f"1={tmp_path / 'fit_1.npz'}", f"3={tmp_path / 'fit_3.npz'}", "--out", str(tmp_path / "split")]) == 0
    results = json.loads((tmp_path / "split.json").read_text())["results"]
    assert list(results) == ["skimage-synthetic/astronaut"] and list(results["skimage-synthetic/astronaut"]) == ["1", "3"]
    for steps in ("1", "3"):
        scored = json.loads((tmp_path / f"q{steps}.json").read_text())["results"]["skimage-synthetic"]
        (images,) = scored.values()
        last = images["astronaut"]["checkpoints"][steps]
        parts = results["skimage-synthetic/astronaut"][steps]
        assert parts["as fitted"]["psnr"] == pytest.approx(last["denoise"]["psnr"], abs=1e-4)
        assert parts["finished"]["ssim"] == pytest.approx(last["denoise_tv"]["ssim"], abs=1e-4)
    markdown = (tmp_path / "split.md").read_text()
    assert "| skimage-synthetic/astronaut | 3 |" in markdown and "| **mean** | 1 |" in markdown
