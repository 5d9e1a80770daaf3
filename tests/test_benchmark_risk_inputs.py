"""benchmarks/risk_inputs.py: its per-bin estimators and its TF32 emulation compute what they say."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroig_plugin.noise import noise_variance, trimmed_variance


def test_binned_variance_with_the_trimmed_mean_square_is_the_packages_noise_variance(benchmark_script):
    risk_inputs = benchmark_script("risk_inputs")
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.1, 0.5, 64), (64, 1))
    image = torch.from_numpy((clean + rng.standard_normal(clean.shape) * np.sqrt(0.003 * clean)).astype(np.float32))[None, None]
    np.testing.assert_allclose(risk_inputs.binned_variance(image, trimmed_variance), noise_variance(image), rtol=1e-6)


def test_emulated_tf32_rounds_inputs_and_weights_to_ten_mantissa_bits_then_restores_them(benchmark_script):
    risk_inputs = benchmark_script("risk_inputs")
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    conv.weight.data.fill_(1 + 2**-12)  # rounds to 1
    pixel = torch.full((1, 1, 1, 1), 1 + 3 * 2**-12)  # rounds to 1 + 2^-10
    exact = float(conv(pixel))
    with risk_inputs.EmulatedTF32(conv):
        assert float(conv(pixel)) == 1 + 2**-10
    assert float(conv.weight) == np.float32(1 + 2**-12)
    assert float(conv(pixel)) == exact != 1 + 2**-10


def test_clipped_variance_drops_only_gross_outliers(benchmark_script):
    risk_inputs = benchmark_script("risk_inputs")
    details = torch.from_numpy(np.random.default_rng(1).standard_normal(20000) * 0.1)
    plain = float(details.var(unbiased=False))
    assert float(risk_inputs.clipped_variance(details)) == pytest.approx(plain, rel=0.02)
    with_outliers = torch.cat([details, torch.full((40,), 5.0)])  # 0.2 % of the details at 50 standard deviations
    assert float(with_outliers.var(unbiased=False)) > 5 * plain
    assert float(risk_inputs.clipped_variance(with_outliers)) == pytest.approx(plain, rel=0.02)

