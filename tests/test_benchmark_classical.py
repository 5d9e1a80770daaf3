"""benchmarks/classical.py: the classical baselines do what they say, and their results merge with the fits'."""
from __future__ import annotations

import json

import numpy as np
import pytest


def _ramp_with_shot_noise(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 256x256 horizontal ramp from 0.05 to 0.9 and a copy with noise of variance ``0.01 x + 1e-5``."""
    clean = np.tile(np.linspace(0.05, 0.9, 256, dtype=np.float32), (256, 1))
    noise = np.random.default_rng(seed).standard_normal(clean.shape).astype(np.float32)
    return clean, clean + np.sqrt(0.01 * clean + 1e-5) * noise


def test_the_variance_stabiliser_leaves_noise_of_unit_spread_at_every_level(benchmark_script):
    classical = benchmark_script("classical")
    clean, noisy = _ramp_with_shot_noise()
    forward, inverse = classical.stabiliser(noisy)
    raw = noisy - clean
    stabilised = forward(noisy) - forward(clean)
    dark, bright = slice(0, 64), slice(192, 256)
    assert raw[:, bright].std() > 2 * raw[:, dark].std()  # shot noise: the spread grows with the signal
    for band in (dark, bright):
        assert 0.85 < stabilised[:, band].std() < 1.15
    assert np.allclose(inverse(forward(clean)), clean, atol=1e-3)


def test_calibrated_denoisers_remove_most_of_the_noise_and_the_gain_reaches_the_level(benchmark_script):
    from zeroig_plugin.classical import STRENGTHS

    classical = benchmark_script("classical")
    yy, xx = np.mgrid[0:96, 0:96] / 96
    clean = (0.3 + 0.2 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)
    noisy = clean + 0.05 * np.random.default_rng(1).standard_normal(clean.shape).astype(np.float32)
    noisy_error = np.mean((noisy - clean) ** 2)
    for method in ("tv", "nl-means", "vst+nl-means"):
        result, strength = classical.denoised(method, noisy)
        assert np.mean((result - clean) ** 2) < 0.3 * noisy_error, method
        assert STRENGTHS[0] < strength < STRENGTHS[-1], method  # calibrated inside the range
    assert np.array_equal(classical.denoised("gain", noisy)[0], noisy)
    dark = np.stack([clean * 0.04, clean * 0.05, clean * 0.03], -1)  # needs about 14x: above the fits' 8x cap
    brightened = classical.gained(dark, 0.5)
    luminance = brightened @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert abs(luminance.mean() - 0.5) < 0.005


def test_averaging_two_outputs_with_independent_errors_beats_either(benchmark_script):
    classical = benchmark_script("classical")
    rng = np.random.default_rng(2)
    clean = rng.uniform(0.2, 0.8, (64, 64)).astype(np.float32)
    fit, other = (clean + 0.05 * rng.standard_normal(clean.shape).astype(np.float32) for _ in range(2))
    rows = classical.blends(fit, {"tv": other}, clean, match=False)
    assert list(rows) == ["fit"] + [f"fit x {w} + tv x {1 - w}" for w in classical.BLEND_WEIGHTS]
    halves = rows["fit x 0.5 + tv x 0.5"]["psnr"]
    assert halves > rows["fit"]["psnr"] + 2.5  # half the variance: +3 dB
    assert halves > rows["fit x 0.25 + tv x 0.75"]["psnr"] and halves > rows["fit x 0.75 + tv x 0.25"]["psnr"]


def test_results_are_in_the_quality_format_and_merge_into_one_table(benchmark_script, tmp_path):
    classical = benchmark_script("classical")
    quality = benchmark_script("quality")
    out = tmp_path / "classical"
    assert classical.main([
        "--datasets", "skimage-synthetic", "--size", "32", "--methods", "gain", "tv", "--blend-steps", "2",
        "--out", str(out),
    ]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    methods = report["results"]["skimage-synthetic"]
    assert list(methods) == ["gain", "tv"]
    for name, result in methods["tv"].items():
        outputs = result["checkpoints"]["0"]
        assert set(outputs) == {"enhance", "denoise", "linear"}
        assert outputs["denoise"]["psnr"] > methods["gain"][name]["checkpoints"]["0"]["denoise"]["psnr"]
    table = quality.table(quality.merge([str(out.with_suffix(".json"))] * 2))
    assert "| tv | 0 |" in table and "| gain | 0 |" in table
    blended = report["blends"]["skimage-synthetic"]
    assert list(blended) == ["fit"] + [f"fit x {w} + tv x {1 - w}" for w in classical.BLEND_WEIGHTS]  # gain is no denoiser
    assert set(blended["fit"]) == set(methods["tv"])
    assert "| fit x 0.5 + tv x 0.5 |" in out.with_suffix(".md").read_text()


def test_the_gain_reaches_the_level_on_the_values_or_on_the_light_they_encode(benchmark_script):
    """``--linear-light`` brightens as the default's output gain does: the same level, the shadows
    multiplied by more than the highlights; the plain gain multiplies every value alike."""
    classical = benchmark_script("classical")
    image = np.repeat(np.linspace(0.01, 0.12, 40, dtype=np.float32)[None, :, None], 3, axis=2).repeat(8, axis=0)
    rec601 = np.array([0.299, 0.587, 0.114])
    for linear_light in (False, True):
        brightened = classical.gained(image, 0.5, linear_light)
        assert float((brightened @ rec601).mean()) == pytest.approx(0.5, abs=1e-4)
        ratios = brightened[0, :, 0] / image[0, :, 0]
        if linear_light:
            assert ratios[0] > 1.5 * ratios[-1]
        else:
            np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)
