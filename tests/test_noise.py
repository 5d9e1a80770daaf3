"""The noise variance estimated from one image, and Stein's risk estimate built on it."""
import numpy as np
import pytest
import torch

from zeroig_plugin import ZeroIG
from zeroig_plugin.networks import published_init
from zeroig_plugin.noise import noise_curve, noise_variance, trimmed_variance
from zeroig_plugin.objective import image_statistics, infer, risk_blocks, stein_risk, tied_choice


def _shot_and_read_noise(clean: np.ndarray, shot: float, read: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (clean + rng.standard_normal(clean.shape) * np.sqrt(shot * clean + read)).astype(np.float32)


def _ramp_with_edges(size: int) -> np.ndarray:
    """Intensity rising from 0.1 to 0.6 across the image, crossed by sharp-edged bright squares."""
    clean = np.tile(np.linspace(0.1, 0.6, size), (size, 1))
    for top in range(8, size - 16, 32):
        clean[top : top + 9, top : top + 9] += 0.3
    return clean


def test_noise_curve_recovers_shot_and_read_noise_despite_edges():
    clean = _ramp_with_edges(256)
    noisy = _shot_and_read_noise(clean, shot=0.004, read=1e-4)
    curve = noise_curve(torch.from_numpy(noisy))
    for level in (0.15, 0.3, 0.5):
        truth = 0.004 * level + 1e-4
        assert float(curve(torch.tensor(level))) == pytest.approx(truth, rel=0.15)


def test_noise_variance_reads_each_pixel_at_its_local_intensity():
    clean = np.full((128, 128), 0.1)
    clean[:, 64:] = 0.5
    noisy = torch.from_numpy(_shot_and_read_noise(clean, shot=0.01, read=0.0))
    variance = noise_variance(noisy[None, None])
    assert variance.shape == (1, 1, 128, 128)
    assert float(variance[0, 0, :, 8:56].mean()) == pytest.approx(0.001, rel=0.15)
    assert float(variance[0, 0, :, 72:120].mean()) == pytest.approx(0.005, rel=0.15)


def test_a_noiseless_image_has_no_noise_variance_even_quantised():
    flat = torch.full((1, 3, 32, 32), 0.25)
    steps = torch.arange(64.0).repeat(64, 1)[None, None] / 255  # a smooth 8-bit ramp
    assert float(noise_variance(flat).abs().max()) == 0
    assert float(noise_variance(steps).max()) < 1e-6


@pytest.mark.parametrize("gray", [True, False])
def test_stein_risk_estimates_the_error_of_the_linear_output_against_the_clean_image(gray):
    torch.manual_seed(0)
    shape = (64, 64) if gray else (64, 64, 3)
    clean = 0.25 + 0.15 * np.sin(np.linspace(0, 6, 64))[:, None] * np.cos(np.linspace(0, 4, 64))[None, :]
    clean = np.broadcast_to(clean[..., None], shape).copy() if not gray else clean
    noisy = _shot_and_read_noise(clean, shot=0.0, read=0.02 ** 2, seed=1)
    model = ZeroIG(device="cpu", brightness="headroom", exposure_gain=False)
    model.fit(noisy, 150)
    net = model._current_net()
    layout = (lambda a: torch.from_numpy(np.ascontiguousarray(a)).float())
    image = layout(noisy)[None, None].expand(1, 3, -1, -1) if gray else layout(noisy).permute(2, 0, 1)[None]
    truth = layout(clean)[None, None] if gray else layout(clean).permute(2, 0, 1)[None]
    variance = torch.full_like(image, 0.02 ** 2)
    probe = torch.randn(image.shape, generator=torch.Generator().manual_seed(3))
    if gray:
        probe = probe[:, :1].expand_as(probe)
    with torch.no_grad():
        output = infer(net, image, image_statistics(net, image)).linear
    output = output.mean(1, keepdim=True) if gray else output
    error = float(((output - truth) ** 2).mean())
    assert error < 0.5 * 0.02 ** 2, "the fit has denoised: the divergence term matters"
    estimate = float(stein_risk(net, image, variance, probe))
    assert estimate == pytest.approx(error, abs=0.05 * 0.02 ** 2)


def test_stein_risk_holds_for_a_network_before_any_fit():
    net = published_init(2)  # its output is further from the clean image than the input is
    rng = np.random.default_rng(4)
    clean = torch.full((1, 3, 48, 48), 0.3)
    image = clean + 0.03 * torch.from_numpy(rng.standard_normal((1, 3, 48, 48))).float()
    probe = torch.randn(image.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        error = float(((infer(net, image, image_statistics(net, image)).linear - clean) ** 2).mean())
    assert error > 0.03 ** 2
    estimate = float(stein_risk(net, image, torch.full_like(image, 0.03 ** 2), probe))
    assert estimate == pytest.approx(error, rel=0.1)


def test_stein_risk_runs_its_convolutions_in_exact_float32_whatever_the_caller_set():
    """Its finite difference (a step of 1e-4) is below TF32's rounding of the convolutions'
    inputs, so the cuDNN TF32 switch is off within it, and restored after."""
    net = published_init(2)
    image = torch.full((1, 3, 16, 16), 0.3)
    switch_seen = []
    for conv in (net.denoise_1.conv1, net.enhance.in_conv[0], net.denoise_2.conv1):
        conv.register_forward_hook(lambda *_: switch_seen.append(torch.backends.cudnn.allow_tf32))
    saved = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        stein_risk(net, image, torch.full_like(image, 1e-3), torch.randn(image.shape))
        assert switch_seen and not any(switch_seen)
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("grey_levels", [1.0, 2.0, 2.5])
def test_noise_curve_holds_on_quantised_intensities(grey_levels):
    """8-bit noise a few grey levels wide: the rounding error counts as noise (a twelfth of a level
    squared), and the estimate does not snap to the levels' lattice."""
    sigma = grey_levels / 255
    ramp = np.tile(np.linspace(0.2, 0.4, 256), (256, 1))
    noisy = np.round((ramp + sigma * np.random.default_rng(0).standard_normal(ramp.shape)) * 255) / 255
    truth = sigma**2 + (1 / 255) ** 2 / 12
    curve = noise_curve(torch.from_numpy(noisy.astype(np.float32)))
    assert float(curve.variances.mean()) == pytest.approx(truth, rel=0.04)


def test_trimmed_variance_is_a_normal_samples_variance_and_bounded_by_a_few_outliers():
    sample = torch.from_numpy(np.random.default_rng(6).normal(0.2, 0.1, 100_000))
    assert float(trimmed_variance(sample)) == pytest.approx(0.01, rel=0.02)
    sample[:2_000] = 5.0  # 2 % gross outliers (cells across sharp edges)
    assert float(sample.var()) > 0.4
    assert float(trimmed_variance(sample)) == pytest.approx(0.01, rel=0.1)


def test_one_standard_error_rule_takes_the_fewest_degrees_of_freedom_among_checkpoints_tied_with_the_lowest_risk():
    rng = torch.Generator().manual_seed(2)
    lowest = 1 + torch.randn(64, generator=rng, dtype=torch.float64) * 0.1
    spread = torch.randn(64, generator=rng, dtype=torch.float64)
    spread = (spread - spread.mean()) / spread.std() * 0.05  # a standard error of 0.05 / 8 = 0.00625
    blocks = torch.stack([lowest, lowest + 0.002 + spread, lowest + 0.05 + spread])  # 0.32 and 8 standard errors above
    risks = blocks.mean(1)
    assert tied_choice(risks, blocks, torch.tensor([0.12, 0.08, 0.04])) == 1
    assert tied_choice(risks, blocks, torch.tensor([0.12, 0.20, 0.04])) == 0
    assert tied_choice(risks, blocks[:, :1].expand(-1, 64), torch.tensor([0.12, 0.08, 0.04])) == 0, (
        "without spread between the blocks any difference is clear"
    )


def test_risk_blocks_average_channels_then_each_block_of_the_grid():
    per_pixel = torch.zeros(1, 3, 16, 16)
    per_pixel[:, 0, :2, :2] = 3.0  # the top-left block of a 8x8 grid, in one channel of three
    blocks = risk_blocks(per_pixel)
    assert blocks.shape == (64,) and blocks.dtype == torch.float64
    assert float(blocks[0]) == 1.0 and float(blocks[1:].abs().max()) == 0.0
