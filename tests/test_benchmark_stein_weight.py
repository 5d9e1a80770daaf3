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
            image, fit, tv, stein.divergence(blur(light), image, probe, 1e-3),
            stein.divergence(blur(heavy), image, probe, 1e-3), variance,
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
