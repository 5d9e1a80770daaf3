"""benchmarks/stein_weight.py: the weight Stein's risk picks for averaging two denoisers is the one
that is best against the noise-free image, from the noisy image alone."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def test_stein_weight_finds_the_best_average_of_two_denoisers_without_the_clean_image(benchmark_script):
    stein = benchmark_script("stein_weight")
    yy, xx = np.mgrid[0:128, 0:128] / 128
    clean = 0.4 + 0.2 * np.sin(30 * xx) * np.cos(20 * yy) + 0.1 * (xx > 0.5)
    sigma = 0.05
    image = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    probe = np.random.default_rng(1).standard_normal(clean.shape)
    variance = np.full(clean.shape, sigma**2)
    checked = 0
    for light, heavy in ((0.6, 2.0), (0.5, 3.0), (0.3, 2.5), (0.8, 1.5)):
        blur = lambda width: (lambda x: gaussian_filter(x, width))  # noqa: E731
        fit, tv = blur(light)(image), blur(heavy)(image)
        weight = stein.stein_weight(
            image, fit, tv, stein.divergence(blur(light), image, fit, probe, 1e-3),
            stein.divergence(blur(heavy), image, tv, probe, 1e-3), variance,
        )
        apart = fit - tv
        best = float(np.clip(np.mean(apart * (clean - tv)) / np.mean(apart**2), 0, 1))
        assert abs(weight - best) < 0.05, (light, heavy, weight, best)
        checked += 0 < best < 1
    assert checked == 4  # the best weights are inside (0, 1), not at an end


def test_identical_denoisers_get_half_each(benchmark_script):
    stein = benchmark_script("stein_weight")
    image = np.random.default_rng(0).random((16, 16))
    same = np.zeros_like(image)
    assert stein.stein_weight(image, image, image, same, same, same + 0.01) == 0.5


def test_the_benchmark_scores_every_weight_at_each_checkpoint_of_one_fit(benchmark_script, shared_data_dir, tmp_path):
    import json

    stein = benchmark_script("stein_weight")
    out = tmp_path / "stein"
    assert stein.main(["--crop", "32", "--steps", "4", "2", "--names", "FMD_R_1", "--threads", "1", "--out", str(out)]) == 0
    (results,) = json.loads(out.with_suffix(".json").read_text())["results"].values()
    assert [result["steps"] for result in results] == [2, 4]
    for result in results:
        weights, scores = result["weights"], result["scores"]
        assert (weights["fit"], weights["tv"], weights["half"]) == (1.0, 0.0, 0.5)
        assert 0 <= weights["stein"] <= 1
        best = scores["hindsight"]["psnr"]
        assert all(best >= scores[row]["psnr"] for row in ("fit", "tv", "half"))  # the grid holds those three
    assert "| stein |" in out.with_suffix(".md").read_text()
