"""Each loss building block and each faithful loss term against a slow, literal reading of SPEC.md."""
from __future__ import annotations

import warnings

import pytest
import torch

import spec_reference as spec
from zeroig_plugin import losses
from zeroig_plugin.networks import pair_downsample, published_init
from zeroig_plugin.objective import faithful_loss, faithful_loss_terms

SIZES = [(16, 16), (17, 23), (24, 19)]
TIGHT = {"rtol": 1e-5, "atol": 1e-6}


def random_image(height: int, width: int, seed: int = 0, batch: int = 1, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator) * scale


@pytest.mark.parametrize("size", SIZES)
def test_pair_downsample_matches_strided_convolutions(size):
    x = random_image(*size, batch=2)
    for ours, literal in zip(pair_downsample(x), spec.pair_downsample(x)):
        torch.testing.assert_close(ours, literal, rtol=0, atol=0)


@pytest.mark.parametrize("size", SIZES)
def test_local_mean_matches_unfolded_windows(size):
    x = random_image(*size, batch=2)
    torch.testing.assert_close(losses.local_mean(x), spec.local_mean(x), **TIGHT)


@pytest.mark.parametrize("size", SIZES)
def test_local_variance_matches_unfolded_windows(size):
    x = random_image(*size, batch=2) - 0.5
    torch.testing.assert_close(losses.local_variance(x), spec.local_variance(x), **TIGHT)


@pytest.mark.parametrize("channels_last", [False, True])
def test_shifted_box_mean_and_its_gradient_match_average_pooling(channels_last):
    x = random_image(13, 18, batch=2).double()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ours = losses.valid_box_mean(x, 5)
    pooled = torch.nn.functional.avg_pool2d(x, 5, stride=1)
    torch.testing.assert_close(ours, pooled, **TIGHT)
    upstream = torch.randn_like(pooled)
    (grad_ours,) = torch.autograd.grad(ours, x, upstream)
    (grad_pooled,) = torch.autograd.grad(pooled, x, upstream)
    torch.testing.assert_close(grad_ours, grad_pooled, **TIGHT)
    assert torch.autograd.gradcheck(lambda t: losses.valid_box_mean(t, 3), (x.detach()[:1, :1, :7, :8].requires_grad_(True),))


@pytest.mark.parametrize("size", SIZES)
def test_texture_mask_matches_thresholded_ratio(size):
    a = random_image(*size, seed=1)
    left_half = torch.arange(size[1]) < size[1] // 2
    b = torch.where(left_half, 0.8 * a + 0.1, random_image(*size, seed=2))  # same texture on the left only
    ratio = spec.texture_ratio(a, b)
    ours, literal = losses.texture_mask(a, b), spec.texture_mask(a, b)
    assert ours.shape == literal.shape == (1, 1, *size)
    assert 0 < literal.mean() < 1, "the inputs should give both mask values"
    away_from_threshold = (ratio - 0.975).abs() > 1e-4
    assert away_from_threshold.float().mean() > 0.99
    torch.testing.assert_close(ours[away_from_threshold], literal[away_from_threshold], rtol=0, atol=0)


@pytest.mark.parametrize("size", SIZES)
def test_gaussian_blur_matches_full_kernel(size):
    x = random_image(*size, batch=2)
    torch.testing.assert_close(losses.gaussian_blur(x), spec.blur(x), **TIGHT)


@pytest.mark.parametrize("size", SIZES)
def test_total_variation_matches_spec(size):
    s = random_image(*size, batch=3)
    torch.testing.assert_close(losses.total_variation(s), spec.total_variation(s), **TIGHT)


def test_ycbcr_uses_rows_of_the_contiguous_buffer():
    x = random_image(5, 7, batch=2)
    torch.testing.assert_close(losses.published_ycbcr(x), spec.ycbcr(x), **TIGHT)
    # A non-contiguous view gives what its contiguous copy gives.
    view = random_image(7, 5, batch=2).transpose(2, 3)
    torch.testing.assert_close(losses.published_ycbcr(view), spec.ycbcr(view.contiguous()), **TIGHT)


def test_loss_constants_are_cached_per_device_and_traced_without_warnings():
    taps = losses._blur_taps(torch.float32, torch.device("cpu"))
    assert losses._blur_taps(torch.float32, torch.device("cpu")) is taps
    if not hasattr(torch.compiler, "is_compiling"):
        pytest.skip("torch < 2.3 has no torch.compiler.is_compiling")
    x = random_image(24, 24)
    traced = torch.compile(lambda x: losses.gaussian_blur(losses.published_ycbcr(x)), backend="eager", fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = traced(x)
    torch.testing.assert_close(out, losses.gaussian_blur(losses.published_ycbcr(x)), **TIGHT)


@pytest.mark.parametrize("size", SIZES)
def test_smoothness_matches_all_24_directions(size):
    guide = random_image(*size, seed=3, batch=2)
    s = random_image(*size, seed=4, batch=2).requires_grad_()
    ours = losses.edge_aware_smoothness(guide, s)
    (ours_grad,) = torch.autograd.grad(ours, s)
    literal = spec.smoothness(guide, s)
    (literal_grad,) = torch.autograd.grad(literal, s)
    torch.testing.assert_close(ours, literal, **TIGHT)
    torch.testing.assert_close(ours_grad, literal_grad, **TIGHT)


def _network(seed: int = 2) -> torch.nn.Module:
    return published_init(seed).train()


def _assert_mask_is_decided(net, image):
    """The texture mask is a hard threshold; compare losses only where no pixel sits on it."""
    with torch.no_grad():
        ratio = spec.training_forward(net, image).texture_ratio
    assert (ratio - 0.975).abs().min() > 1e-5, "pick another seed: a texture ratio sits on the threshold"


@pytest.mark.parametrize("size, scale", [((32, 32), 0.2), ((33, 45), 0.05), ((26, 31), 1.0)])
def test_each_faithful_term_matches_spec(size, scale):
    image = random_image(*size, seed=5, scale=scale)
    net = _network()
    _assert_mask_is_decided(net, image)
    with torch.no_grad():
        ours = faithful_loss_terms(net, image)
        literal = spec.loss_terms(net, image)
    assert ours.keys() == literal.keys()
    for name in literal:
        torch.testing.assert_close(ours[name], literal[name], rtol=2e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("size", [(32, 32), (27, 35)])
def test_total_loss_and_gradients_match_spec(size):
    image = random_image(*size, seed=6, scale=0.15)
    ours_net, literal_net = _network(), _network()
    _assert_mask_is_decided(literal_net, image)
    ours = faithful_loss(ours_net, image)
    ours.backward()
    literal = spec.total_loss(literal_net, image)
    literal.backward()
    torch.testing.assert_close(ours, literal, rtol=1e-5, atol=0)
    # Gradients sum many terms of both signs, so compare them as one vector, not element by element
    # (the bias of the conv before BatchNorm has a zero gradient in exact arithmetic: pure noise here).
    ours_grad = torch.cat([p.grad.flatten() for p in ours_net.parameters()])
    literal_grad = torch.cat([p.grad.flatten() for p in literal_net.parameters()])
    assert (ours_grad - literal_grad).norm() <= 1e-5 * literal_grad.norm()


def test_batch_loss_is_the_mean_of_per_image_losses():
    """With batch statistics frozen (eval mode), a batch of views is scored as the mean of its
    images: crop mode relies on this (TV's ``/ B``, the per-image brightness factor ``k``)."""
    net = published_init(2).eval()
    images = torch.cat([random_image(24, 24, seed=7, scale=0.1), random_image(24, 24, seed=8, scale=0.6)])
    with torch.no_grad():
        batch = faithful_loss_terms(net, images)
        singles = [faithful_loss_terms(net, images[i : i + 1]) for i in range(2)]
    for name, value in batch.items():
        torch.testing.assert_close(value, (singles[0][name] + singles[1][name]) / 2, rtol=1e-5, atol=1e-6)
