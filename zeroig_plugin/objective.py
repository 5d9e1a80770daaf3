"""The ZERO-IG forward passes and the published self-supervised loss.

``faithful_loss`` is the published total loss, term for term (SPEC.md). ``infer`` is the
published test-time forward giving ``enhance`` (H2) and ``denoise`` (H3).
"""
from __future__ import annotations

from statistics import NormalDist
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .acceleration import exact_convolutions
from .losses import (
    edge_aware_smoothness,
    gaussian_blur,
    local_mean,
    local_variance,
    texture_mask,
    total_variation,
)
from .networks import Statistics, ZeroIGNet, pair_downsample

__all__ = [
    "Outputs", "Forward", "infer", "first_denoised", "image_statistics", "pair_consistency", "pair_consistency_map", "stein_risk", "stein_risk_map",
    "stein_per_pixel", "stein_terms", "risk_blocks", "tied_choice", "drift_threshold", "DRIFT_TEST_LEVEL", "RISK_GRID", "training_forward",
    "faithful_loss", "faithful_loss_terms", "brightness_target", "PUBLISHED_BRIGHTNESS", "MAX_BRIGHTNESS",
    "PUBLISHED_MAX_GAIN",
]

EPS = 1e-4


class Outputs(NamedTuple):
    """``enhance`` (H2, brightened) and ``denoise`` (H3, brightened and denoised), ``(B, 3, H, W)``;
    ``linear``: H3 multiplied back by the illumination map it was brightened with, the denoised
    image at the input's own intensities (proportional to them, unlike H3, whose brightening
    varies across the image with the illumination map; capped at the map where H2 saturates)."""

    enhance: torch.Tensor
    denoise: torch.Tensor
    linear: torch.Tensor


def first_denoised(net: ZeroIGNet, image: torch.Tensor) -> torch.Tensor:
    """``L2``: the image ``(B, 3, H, W)`` after N1, the enhancer's input, ``(B, 3, H, W)``."""
    j = image + EPS
    return torch.clamp(j - net.denoise_1(j), EPS, 1)


def image_statistics(net: ZeroIGNet, image: torch.Tensor) -> Statistics:
    """The enhancer's per-repeat normalisation statistics for ``image`` ``(B, 3, H, W)``, as the
    training forward computes them (see :meth:`networks.Enhancer.image_statistics`)."""
    return net.enhance.image_statistics(first_denoised(net, image))


def infer(net: ZeroIGNet, image: torch.Tensor, statistics: Statistics | None = None) -> Outputs:
    """Published inference: ``(B, 3, H, W)`` in ``[0, 1]`` -> :class:`Outputs`.

    Uses the networks in whatever mode they are in (the published script runs them in eval mode);
    ``statistics`` from :func:`image_statistics` replace the enhancer's BatchNorm statistics.
    """
    j = image + EPS
    l2 = first_denoised(net, image)
    s2 = net.enhance(l2, statistics)
    h2 = torch.clamp(j / s2, EPS, 1)
    stacked = torch.cat([h2, s2], 1)
    h3 = torch.clamp(stacked - net.denoise_2(stacked), EPS, 1)[:, :3]
    return Outputs(h2, h3, h3 * s2)


@torch.no_grad()
def pair_consistency(net: ZeroIGNet, image: torch.Tensor, domain: str = "enhanced") -> torch.Tensor:
    """A self-supervised score of the second denoiser on ``image`` ``(B, 3, H, W)``; lower is better.

    Each pair-downsampled half of the enhanced image, denoised by N2, against the other half
    (Noise2Noise: with noise independent between neighbouring pixels, its expectation is the
    denoiser's error plus the other half's noise variance). The enhancer normalises with the
    image's own statistics, as in the fit. Returns a scalar tensor.

    ``domain="enhanced"``: the image channels of the published ``pair_second`` term (SPEC.md), the
    comparison made where N2 works and the output is read. There the other half's noise is the
    input's divided by the illumination map of the weights scored, so the constant changes with
    the weights. ``domain="input"``: each denoised half is multiplied back by its own illumination
    and compared with the other half of the input itself, whose noise is the same for every
    checkpoint; but errors are then weighted by the illumination squared, so the dark regions the
    enhancement amplifies most count least (docs/quality-log.md, "Checkpoint selection").
    """
    return pair_consistency_map(net, image, domain).mean()


def pair_consistency_map(net: ZeroIGNet, image: torch.Tensor, domain: str = "enhanced") -> torch.Tensor:
    """The per-pixel terms whose mean is :func:`pair_consistency`: the squared differences of both
    comparisons summed, ``(B, 3, H // 2, W // 2)`` (one pixel per pair-downsampled cell)."""
    if domain not in ("enhanced", "input"):
        raise ValueError(f"unknown score domain {domain!r}: use 'enhanced' or 'input'")
    l2 = first_denoised(net, image)
    s2 = net.enhance(l2, net.enhance.image_statistics(l2))
    l11, l12 = pair_downsample(image + EPS)
    stacked = _enhanced_halves(l11, l12, s2)
    r3, r4 = _second_denoised(net, stacked)[:, :3].chunk(2)
    if domain == "enhanced":
        h11, h12 = stacked[:, :3].chunk(2)
        return (r3 - h12) ** 2 + (r4 - h11) ** 2
    s21, s22 = stacked[:, 3:].chunk(2)
    return (r3 * s21 - l12) ** 2 + (r4 * s22 - l11) ** 2


STEIN_STEP = 1e-4
RISK_GRID = 8  # blocks per side over which a risk's standard error is taken
DRIFT_TEST_LEVEL = 0.05  # familywise: the chance of giving up the latest weights of a fit that has not drifted


def is_gray(image: torch.Tensor) -> bool:
    """Whether the three channels of ``image`` ``(B, 3, H, W)`` are equal (a gray image, replicated)."""
    return bool((image[:, 1:] == image[:, :1]).all())


@torch.no_grad()
def stein_risk(
    net: ZeroIGNet, image: torch.Tensor, variance: torch.Tensor, probe: torch.Tensor, step: float = STEIN_STEP
) -> torch.Tensor:
    """Stein's unbiased estimate of the mean squared error of the ``linear`` output against the
    noise-free image, from ``image`` ``(1, 3, H, W)`` alone; a scalar tensor, lower is better.

    ``SURE = mean(|f(y) - y|^2 + 2 var * df/dy - var)`` for noise independent between pixels, of
    per-pixel variance ``variance`` ``(1, 3, H, W)`` (e.g. :func:`noise.noise_variance`). The
    divergence ``df/dy`` is estimated with one random ``probe`` ``(1, 3, H, W)`` (standard normal)
    by a finite difference of ``step``; pass the same probe for every checkpoint of one image, so
    that the probe's error is common to them. The convolutions run in exact float32 whatever the
    caller set: the step is below TF32's rounding of their inputs. Where the three channels of
    ``image`` are equal (a gray image), give the probe equal channels too: the output is then
    compared as gray, the mean of its channels, as it is written out. The enhancer normalises with
    the image's own statistics.

    Unlike :func:`pair_consistency`, it judges the output that is read, at full resolution, with no
    signal difference between two half-images to reward a smoother denoiser. It measures the
    network as a fixed function of the image: the noise the fit has memorised is not counted.
    """
    return stein_risk_map(net, image, variance, probe, step)[0].mean()


@torch.no_grad()
def stein_risk_map(
    net: ZeroIGNet, image: torch.Tensor, variance: torch.Tensor, probe: torch.Tensor, step: float = STEIN_STEP
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-pixel terms whose mean is :func:`stein_risk`, and the divergence estimate among them
    (its mean is the output's degrees of freedom per pixel), ``(1, C, H, W)`` each, ``C`` 3 or 1
    for a gray image."""
    squared_residual, divergence = stein_terms(net, image, probe, step)
    return stein_per_pixel(squared_residual, divergence, variance), divergence


def stein_per_pixel(squared_residual: torch.Tensor, divergence: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Stein's per-pixel risk ``|f(y) - y|^2 + 2 var df/dy - var`` from the terms of
    :func:`stein_terms` ``(1, C, H, W)`` and the noise variance (its first ``C`` channels are used)."""
    variance = variance[:, : divergence.shape[1]]
    return squared_residual + 2 * variance * divergence - variance


def risk_blocks(per_pixel: torch.Tensor, grid: int = RISK_GRID) -> torch.Tensor:
    """``per_pixel`` ``(1, C, H, W)`` averaged over its channels and a ``grid`` x ``grid`` grid of
    blocks, ``(grid * grid,)`` float64, row by row."""
    return F.adaptive_avg_pool2d(per_pixel.mean(1, keepdim=True).double(), grid).flatten()


def tied_choice(
    scores: torch.Tensor, blocks: torch.Tensor, tiebreak: torch.Tensor, standard_errors: float = 1.0
) -> int:
    """Which of ``N`` checkpoints to keep, given each one's score ``(N,)`` (lower is better:
    Stein's risk, or the pair score), its score on a grid of blocks ``(N, B)``
    (:func:`risk_blocks`) and a ``tiebreak`` ``(N,)``: of those whose score exceeds the lowest by at
    most ``standard_errors`` standard errors of the mean of their blockwise difference from it, the
    one with the smallest ``tiebreak``. The blockwise differences are paired (one image, one
    probe), so the error common to both checkpoints cancels.

    The engine uses it two ways. By Stein's risk, the one-standard-error rule of cross-validation
    (Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning*, 7.10): a difference
    within one standard error is not evidence that either checkpoint is the better one, so the
    simplest estimate is kept (tiebreak: the mean divergence, the most strongly smoothing). By the
    pair score, a test for drift (tiebreak: minus the step): the latest checkpoint not
    significantly worse than the lowest is kept, at the threshold of :func:`drift_threshold`."""
    best = int(scores.argmin())
    difference = blocks - blocks[best]
    tied = difference.mean(1) <= standard_errors * difference.std(1) / difference.shape[1] ** 0.5  # the lowest included
    candidates = tied.nonzero().flatten()
    return int(candidates[tiebreak[candidates].argmin()])


def drift_threshold(checks: int, level: float = DRIFT_TEST_LEVEL) -> float:
    """How many standard errors above the lowest pair score a checkpoint must be before the fit is
    taken to have drifted away from it: the one-sided normal quantile at ``level`` shared among the
    ``checks`` comparisons (Bonferroni): 1.64 for one check, 2.73 for 16 (1000 steps), 2.99 for 36
    (2000 steps). Each comparison is against the lowest of all checks, itself biased low, and a
    fit has many; at one standard error the latest weights were given up on fits that had not
    drifted (BENCHMARKS.md, "The drift test")."""
    return NormalDist().inv_cdf(1 - level / max(checks, 1))


@torch.no_grad()
def stein_terms(
    net: ZeroIGNet, image: torch.Tensor, probe: torch.Tensor, step: float = STEIN_STEP
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-pixel terms of :func:`stein_risk` that do not depend on the noise variance (the risk
    is linear in it): ``|f(y) - y|^2`` and the divergence estimate ``probe * (f(y + step probe) -
    f(y)) / step`` of the ``linear`` output ``f``, ``(1, 3, H, W)`` each, ``(1, 1, H, W)`` for a gray
    image (compared as gray). In exact float32 whatever the caller set."""
    with exact_convolutions():
        statistics = image_statistics(net, image)
        output = infer(net, image, statistics).linear
        nudged = infer(net, (image + step * probe).clamp(0, 1), statistics).linear
    if is_gray(image):
        output, nudged = output.mean(1, keepdim=True), nudged.mean(1, keepdim=True)
        image, probe = image[:, :1], probe[:, :1]
    return (output - image) ** 2, probe * (nudged - output) / step


def _enhanced_halves(l11: torch.Tensor, l12: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """The pair-downsampled halves ``l11, l12`` ``(B, 3, h, w)`` of the input, enhanced by the
    matching halves of ``s2``, each beside its illumination: ``[H11, s21]`` then ``[H12, s22]``
    on the batch axis, ``(2B, 6, h, w)``."""
    s21, s22 = pair_downsample(s2)
    h11 = torch.clamp(l11 / s21, EPS, 1)
    h12 = torch.clamp(l12 / s22, EPS, 1)
    return torch.cat([torch.cat([h11, s21], 1), torch.cat([h12, s22], 1)])


def _second_denoised(net: ZeroIGNet, stacked: torch.Tensor) -> torch.Tensor:
    """N2's residual removed from ``stacked`` ``(B, 6, h, w)`` (its gradient flows through N2 only)."""
    return torch.clamp(stacked.detach() - net.denoise_2(stacked), EPS, 1)


PUBLISHED_BRIGHTNESS = 0.5
PUBLISHED_MAX_GAIN = 25.0
MAX_BRIGHTNESS = 0.8  # the exposure term clamps the enhanced image at 0.8


def brightness_target(
    l2: torch.Tensor, brightness: float = PUBLISHED_BRIGHTNESS, max_gain: float = PUBLISHED_MAX_GAIN
) -> torch.Tensor:
    """The published exposure factor ``k = clamp(brightness / (mean(Y) + 1e-9), 1, max_gain)``,
    ``(B, 1, 1, 1)``, with ``Y = 0.299 B + 0.587 G + 0.144 R`` (the published, swapped weights).
    Published: ``brightness`` 0.5 (the enhanced image is aimed at mid-grey mean luminance) and
    ``max_gain`` 25 (so images darker than 0.02 mean are aimed lower)."""
    y = 0.299 * l2[:, 2] + 0.587 * l2[:, 1] + 0.144 * l2[:, 0]
    return torch.clamp(brightness / (y.mean(dim=(1, 2)) + 1e-9), 1, max_gain).view(-1, 1, 1, 1)


class Forward(NamedTuple):
    """Intermediates of the published training forward (SPEC.md, "Training forward")."""

    image: torch.Tensor  # I, (B, 3, H, W)
    p1: torch.Tensor  # I's pair views after N1, (B, 3, H/2, W/2)
    p2: torch.Tensor
    l2: torch.Tensor  # N1-denoised, (B, 3, H, W)
    s2: torch.Tensor  # illumination, (B, 3, H, W)
    r3: torch.Tensor  # N2 on [H11, s21], (B, 6, H/2, W/2)
    r4: torch.Tensor  # N2 on [H12, s22]
    target_from_h11: torch.Tensor  # detached [H11, s21]
    target_from_h12: torch.Tensor  # detached [H12, s22]
    h2: torch.Tensor  # enhanced, (B, 3, H, W)
    h3: torch.Tensor  # enhanced and denoised, (B, 3, H, W)
    s3: torch.Tensor  # N2's illumination, (B, 3, H, W)


def training_forward(net: ZeroIGNet, image: torch.Tensor) -> Forward:
    """The published training forward on ``image`` ``(B, 3, H, W)`` in ``[0, 1]``.

    Each denoiser runs once per resolution: the two half-resolution views share one batched call
    (the denoisers have no batch statistics, so this is the published arithmetic with fewer,
    larger kernels).
    """
    j = image + EPS
    l11, l12 = pair_downsample(j)
    halves = torch.cat([l11, l12])
    p1, p2 = (halves - net.denoise_1(halves)).chunk(2)
    l2 = torch.clamp(j - net.denoise_1(j), EPS, 1)

    s2 = net.enhance(l2.detach())
    h2 = torch.clamp(j / s2, EPS, 1)
    stacked_halves = _enhanced_halves(l11, l12, s2)
    r3, r4 = _second_denoised(net, stacked_halves).chunk(2)
    target_from_h11, target_from_h12 = stacked_halves.detach().chunk(2)
    r5 = _second_denoised(net, torch.cat([h2, s2], 1))
    return Forward(image, p1, p2, l2, s2, r3, r4, target_from_h11, target_from_h12, h2, r5[:, :3], r5[:, 3:])


def faithful_loss_terms(
    net: ZeroIGNet, image: torch.Tensor, brightness: float = PUBLISHED_BRIGHTNESS
) -> dict[str, torch.Tensor]:
    """The published training forward on ``image`` ``(B, 3, H, W)`` and its weighted loss terms.

    Returns a dict of scalar tensors whose sum is the published total loss (with the published
    ``brightness``, 0.5; another value moves the exposure target of :func:`brightness_target`).
    """
    f = training_forward(net, image)
    l2, s2, h2, h3, s3, p1, p2, r3, r4 = f.l2, f.s2, f.h2, f.h3, f.s3, f.p1, f.p2, f.r3, f.r4
    target_from_h11, target_from_h12 = f.target_from_h11, f.target_from_h12
    ld = l2.detach()
    h1_half, h2_half = pair_downsample(h3)
    mask = texture_mask(h1_half, h2_half)
    h1 = torch.clamp(l2 / s2, 0, 1)

    k = brightness_target(ld, brightness)
    ratio = torch.pow(0.7, -k) / k
    mse = F.mse_loss
    a1, a2 = pair_downsample(image + 1e-9)
    b1, b2 = pair_downsample(l2)
    c1 = (1 - mask) * local_mean(h1_half) + h1_half * mask
    c2 = (1 - mask) * local_mean(h2_half) + h1_half * mask  # sic: h1 in both, as published
    return {
        "illumination": 700 * mse(s2, torch.clamp(torch.pow(ld * k, k) * ratio, 1e-9, 1)),
        "exposure": 1000 * mse(torch.clamp(ld / s2, 1e-9, 0.8), torch.clamp(ld * k, 1e-9, 1)),
        "smoothness": 5 * edge_aware_smoothness(ld, s2),
        "tv": 1600 * total_variation(s2),
        "pair_input": 1000 * mse(a1, p2) + 1000 * mse(a2, p1),
        "pair_denoised": 1000 * mse(p1, b1) + 1000 * mse(p2, b2),
        "pair_second": 1000 * mse(r3, target_from_h12) + 1000 * mse(r4, target_from_h11),
        "pair_output": 1000 * mse(r3[:, :3], h1_half) + 1000 * mse(r4[:, :3], h2_half),
        "colour": 10000 * mse(gaussian_blur(h1).detach(), gaussian_blur(h3)),
        "illumination_consistency": 1000 * mse(s2.detach(), s3),
        "texture_consistency": 10000 * mse(h1_half, c1) + 10000 * mse(h2_half, c2),
        "noise_variance": 1000 * mse(local_variance(h2), local_variance(h3 - h2)),
    }


def faithful_loss(net: ZeroIGNet, image: torch.Tensor, brightness: float = PUBLISHED_BRIGHTNESS) -> torch.Tensor:
    """The published total loss (a scalar) for one training step on ``image`` ``(B, 3, H, W)``."""
    return torch.stack(list(faithful_loss_terms(net, image, brightness).values())).sum()
