"""benchmarks/finish_calibration.py: the rules that choose TV's strength for a photo's denoise, against the best strength."""
from __future__ import annotations

import json

import numpy as np
import pytest


def _noisy_photo(correlated: bool, side: int = 96) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage
    from skimage import data, transform

    clean = transform.resize(data.astronaut(), (side, side), anti_aliasing=True).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    if correlated:  # each pixel's noise shared with its neighbours, as the noise the networks leave
        noise = np.stack([ndimage.uniform_filter(noise[..., c], 2) for c in range(3)], -1)
    return (clean + noise * (0.05 / noise.std())).astype(np.float32), clean


@pytest.mark.parametrize("correlated", [False, True])
def test_one_pixel_masks_find_the_strength_for_independent_noise_and_block_masks_for_correlated(benchmark_script, correlated):
    script = benchmark_script("finish_calibration")
    noisy, clean = _noisy_photo(correlated)
    picks = script.study({"photos/astronaut/denoise": noisy, "photos/astronaut/high": clean})["photos"]["astronaut"]["picks"]
    best, one_pixel, block = (picks[rule] for rule in (script.BOUND, script.ONE_PIXEL_RULE, "Noise2Self, 3x3-block masks"))
    if correlated:  # the one-pixel loss sees the neighbours' share of the noise and keeps it
        assert one_pixel <= best - 3 and abs(block - best) <= 1
    else:
        assert abs(one_pixel - best) <= 1


@pytest.mark.parametrize("correlated", [False, True])
def test_sub_images_come_near_the_strength_for_independent_and_correlated_noise(benchmark_script, correlated):
    script = benchmark_script("finish_calibration")
    noisy, clean = _noisy_photo(correlated, side=192)  # sub-images of 64 pixels at stride 3
    picks = script.study({"photos/astronaut/denoise": noisy, "photos/astronaut/high": clean})["photos"]["astronaut"]["picks"]
    best, one_pixel = picks[script.BOUND], picks[script.ONE_PIXEL_RULE]
    shuffled = [picks[script.DEFAULT_RULE]] + [picks[f"Noise2Self on pixel-shuffled sub-images, stride {stride}"]
                                               for stride in script.OTHER_STRIDES]
    if correlated:  # the sub-images' neighbours share less of the noise than the image's
        assert one_pixel <= best - 3 and all(one_pixel + 3 <= pick and best - 2 <= pick <= best for pick in shuffled)
    else:
        assert all(abs(pick - best) <= 1 for pick in shuffled)


def test_saved_fits_are_tabled_with_each_rule_read_off_the_strength_curve(benchmark_script, tmp_path):
    from skimage.metrics import structural_similarity
    from skimage.restoration import denoise_tv_chambolle

    from zeroig_plugin.classical import noise_level

    fitted = tmp_path / "fit.npz"
    assert benchmark_script("photo_finish").main(["--datasets", "skimage-synthetic", "--names", "astronaut", "--size", "32",
                                                  "--steps", "2", "--threads", "1", "--keep-outputs", str(fitted),
                                                  "--out", str(tmp_path / "finish")]) == 0
    script = benchmark_script("finish_calibration")
    assert script.main([str(fitted), "--out", str(tmp_path / "rules")]) == 0
    result = json.loads((tmp_path / "rules.json").read_text())["results"]["skimage-synthetic"]["astronaut"]
    saved = np.load(fitted)
    denoise, high = saved["skimage-synthetic/astronaut/denoise"], saved["skimage-synthetic/astronaut/high"]
    at_the_level = np.clip(denoise_tv_chambolle(denoise, weight=noise_level(denoise), channel_axis=-1), 0, 1)
    curve_ssim = result["curve"][result["picks"]["1x the noise level"]][1]
    assert curve_ssim == pytest.approx(structural_similarity(high, at_the_level, channel_axis=-1, data_range=1), abs=1e-5)
    assert max(ssim for _, ssim in result["curve"]) == result["curve"][result["picks"][script.BOUND]][1]
    markdown = (tmp_path / "rules.md").read_text()
    assert all(f"| {rule} |" in markdown for rule in result["picks"])
