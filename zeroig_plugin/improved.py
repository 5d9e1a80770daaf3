"""The improved zero-shot mode: the published fit, read out with the statistics it was fitted with.

Still zero-shot: one image, no training data, no reference at run time. The networks, the loss and
the optimiser are the published ones (SPEC.md); what changes is how the fit is read out (1, 2, 4, 5),
its learning rate late in the fit (3) and the level its exposure rule aims at (6):

1. **The image's own normalisation statistics at inference** (``Recipe.inference_statistics =
   "image"``). The enhancer applies one BatchNorm'd block three times. In training each use
   normalises with its own batch statistics, on the one image; the published inference switches to
   eval mode, where all three uses share one pair of running averages, a blend of three different
   distributions that also lags the last steps. The fit optimises one function and the published
   inference evaluates another; that mismatch, not the fit, causes most of the colour casts and the
   late collapse (docs/quality.md). Here inference normalises each use with the statistics of the
   image being enhanced, exactly as the training forward does (exact when tiled, too).
2. **Weight averaging** (``weight_average``): an exponential moving average of the weights for
   inference, which smooths the step-to-step jitter of the fit.
3. **A lower learning rate late in the fit** (``late_learning_rate`` 1e-4 after ``late_after``
   250 steps; published: 3e-4 throughout): the fast start is kept, and the denoisers stop
   oscillating on very noisy images later on.
4. **Checkpoint selection by a self-supervised score** (``select_after`` 250, every 50 steps):
   on very noisy images the denoising strength still drifts slowly over hundreds of steps. The
   weights are scored by :func:`objective.pair_consistency`, the image channels of the published
   loss's own Noise2Noise term (N2 on one pair-downsampled half against the other), read with its
   standard error (paired, over an 8x8 grid of blocks): inference uses the latest checkpoint not
   significantly worse than the lowest (a 5 % test shared among the checks:
   :func:`objective.drift_threshold`, :func:`objective.tied_choice`). On the noisiest W2S crops at
   2000 steps it kept weights above the collapsing final ones; the lowest score alone stopped early
   where the fit kept improving (held-out photos, GigaDB at full size: step 250, 2.3 dB of
   ``denoise`` below the last weights; docs/quality.md, item 4).
   A fit whose only output is ``linear`` (``ZeroIG(select_for="linear")``: the napari plugin's and
   ``--for microscopy``'s default) ranks them instead by Stein's unbiased estimate of that output's
   error (:func:`objective.stein_risk`), which kept ``linear`` better on the traced microscopy fits.
5. **Geometric self-ensemble at inference** (``inference_ensemble`` 8): the outputs for the 8
   flips and transposes of the image, mapped back and averaged (:mod:`ensemble`). The networks
   are not equivariant to those, so the views' errors partly cancel; each view is normalised with
   its own statistics. Inference only: the fit and the selection are unchanged.
6. **Exposure after the fit** (``fit_brightness_ratio`` 0.7): the fit's exposure rule aims at 0.7
   of the brightness asked for, and inference multiplies both outputs by the one gain that brings
   the denoised output's mean luminance to it (:func:`exposure_gain`). Aimed at the full level,
   the fit pushes highlights into the loss's clamps, where the denoisers learn from clipped
   noise; and the published gain cap of 25 leaves images darker than 2 % mean under-exposed. The
   last part of the exposure is now one global gain, applied to the light the sRGB values encode
   (``gain_in_linear_light``: decoded, multiplied, encoded again, as a longer exposure would
   record it), which lifts the shadows more than the highlights, as the normal-light photos of
   real dark captures show; and it is a global tone (``global_tone``): ``denoise`` is the fit's
   ``linear`` (the denoised image at the input's intensities) brought up by that one gain, not the
   illumination map's local tone, which on real and camera-simulated dark photos was further from
   the references.

:class:`ImprovedOptions` also offers changes to the *loss* that were measured and not adopted
(a shared gamma-style exposure target, Rec.601/YCbCr quirk fixes, a chroma-consistency term,
gray-world white balance): :func:`ablation_recipes` builds them as variants for docs/quality.md.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .losses import (
    edge_aware_smoothness,
    gaussian_blur,
    local_mean,
    local_variance,
    published_gray,
    published_ycbcr,
    texture_mask,
    total_variation,
)
from .networks import ZeroIGNet, pair_downsample
from .objective import PUBLISHED_BRIGHTNESS, PUBLISHED_MAX_GAIN, brightness_target, faithful_loss, training_forward

__all__ = [
    "ImprovedOptions",
    "luma",
    "rec601_ycbcr",
    "exposure_gamma",
    "exposure_gain",
    "apply_gain",
    "srgb_to_linear",
    "linear_to_srgb",
    "MAX_OUTPUT_GAIN",
    "illumination_target",
    "chroma_consistency",
    "illuminant_colour",
    "gamma_targets",
    "improved_loss_terms",
    "make_loss",
    "improved_recipe",
    "ablation_recipes",
    "IMPROVED_MODE",
]

IMPROVED_MODE = "improved"
REC601 = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ImprovedOptions:
    """Changes to the published loss (the defaults are the published loss; all measured in the ablation).

    Attributes:
        exposure: ``"published"`` (the capped ``brightness / mean`` rule and its per-channel
            power-law target) or ``"gamma"`` (one shared gamma-style target lifting the mean
            luminance to ``brightness``).
        max_gain: the cap on the published rule's gain ``k`` (published: 25, which aims images
            darker than ``brightness / 25`` mean luminance below ``brightness``).
        chroma_weight: weight of :func:`chroma_consistency` on ``s2`` (0 switches it off).
        fix_quirks: Rec.601 luma in the texture mask and the exposure statistics, and per-pixel
            YCbCr in the smoothness weight.
        fix_texture_pair: ``h2`` instead of ``h1`` in the second texture-consistency term.
        white_balance: multiply the shared target by a gray-world illuminant colour
            (:func:`illuminant_colour`), one constant per channel.
    """

    exposure: str = "published"
    max_gain: float = PUBLISHED_MAX_GAIN
    chroma_weight: float = 0.0
    fix_quirks: bool = False
    fix_texture_pair: bool = False
    white_balance: bool = False


PUBLISHED_LOSS = ImprovedOptions()


def luma(x: torch.Tensor) -> torch.Tensor:
    """Rec.601 luma ``0.299 R + 0.587 G + 0.114 B``: ``(B, 3, H, W) -> (B, 1, H, W)``."""
    r, g, b = REC601
    return (r * x[:, 0] + g * x[:, 1] + b * x[:, 2]).unsqueeze(1)


# published_gray computes 0.144 x0 + 0.587 x1 + 0.299 x2; scaling the channels by these factors
# first turns it into Rec.601 luma, so the published texture mask can be reused with correct weights.
_TO_REC601 = (REC601[0] / 0.144, 1.0, REC601[2] / 0.299)


def _rec601_texture_mask(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`losses.texture_mask` on Rec.601 luma instead of the published 0.144/swapped weights."""
    scale = torch.tensor(_TO_REC601, dtype=a.dtype, device=a.device).view(1, 3, 1, 1)
    return texture_mask(a * scale, b * scale)


def rec601_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel BT.601 YCbCr (studio range, as the published matrix intends):
    ``(B, 3, H, W)`` RGB -> ``(B, 3, H, W)`` YCbCr. Drop-in ``colour`` for ``edge_aware_smoothness``."""
    matrix = torch.tensor(
        ((0.257, 0.504, 0.098), (-0.148, -0.291, 0.439), (0.439, -0.368, -0.071)), dtype=x.dtype, device=x.device
    )
    bias = torch.tensor((16 / 255, 128 / 255, 128 / 255), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return torch.einsum("oc,bchw->bohw", matrix, x) + bias


SAMPLES_FOR_A_MEAN = 65536  # the mean of a strided subsample is plenty for one scalar


def _pixel_sample(x: torch.Tensor) -> torch.Tensor:
    """The pixels of ``x`` ``(B, C, H, W)`` as ``(B, C, N, 1)``, strided down to about
    ``SAMPLES_FOR_A_MEAN`` of them (still an image to :func:`luma`)."""
    pixels = x.flatten(2)
    if pixels.shape[2] > SAMPLES_FOR_A_MEAN:
        pixels = pixels[:, :, :: pixels.shape[2] // SAMPLES_FOR_A_MEAN]
    return pixels.unsqueeze(-1)


def _bisect(too_dark, low: torch.Tensor, high: torch.Tensor, brighter_upwards: bool, iterations: int) -> torch.Tensor:
    """Bisection per image for the parameter ``(B, 1, 1, 1)`` in ``[low, high]`` where
    ``too_dark(parameter)`` (a ``(B, 1, 1, 1)`` bool) flips; ``brighter_upwards``: a larger
    parameter gives a brighter image."""
    for _ in range(iterations):
        mid = (low + high) / 2
        dark = too_dark(mid)
        if brighter_upwards:
            low, high = torch.where(dark, mid, low), torch.where(dark, high, mid)
        else:
            low, high = torch.where(dark, low, mid), torch.where(dark, mid, high)
    return (low + high) / 2


@torch.no_grad()
def exposure_gamma(y: torch.Tensor, target_mean: float = 0.5, iterations: int = 24) -> torch.Tensor:
    """The gamma that lifts luminance ``y`` ``(B, 1, H, W)`` in ``[0, 1]`` to mean ``target_mean``.

    Solves ``mean(y ** gamma) = target_mean`` per image by bisection on ``gamma`` in
    ``[0.05, 1]`` (``mean(y ** gamma)`` falls as ``gamma`` grows). Images whose mean is already
    at or above the target get ``gamma = 1`` (left alone). Returns ``(B, 1, 1, 1)``.
    """
    pixels = _pixel_sample(y.clamp(1e-4, 1))
    low = torch.full((y.shape[0], 1, 1, 1), 0.05, dtype=y.dtype, device=y.device)
    return _bisect(
        lambda gamma: pixels.pow(gamma).mean(dim=(1, 2, 3), keepdim=True) < target_mean,
        low, torch.ones_like(low), brighter_upwards=False, iterations=iterations,
    )


MAX_OUTPUT_GAIN = 8.0
HEADROOM = 0.9  # where the highlights of an image aimed by headroom_brightness sit, as a share of the clip
HIGHLIGHT_QUANTILE = 0.999
MIN_BRIGHTNESS = 0.05  # the least headroom_brightness answers (a lone star on black)
HEADROOM_BRIGHTNESS = "headroom"  # ZeroIG(brightness=...): set by headroom_brightness from the first image


@torch.no_grad()
def headroom_brightness(image: torch.Tensor, ceiling: float = PUBLISHED_BRIGHTNESS) -> float:
    """The mean luminance at which ``image``'s highlights, the 99.9th percentile of its 3x3-mean
    Rec.601 luminance (the mean averages the noise down), sit at 0.9 of the clip; at most ``ceiling``:
    ``(1, 3, H, W)`` in ``[0, 1]`` -> a brightness for the exposure rule.

    For images whose level is a display setting (microscopy): a sparse fluorescence sample aimed at
    mid-grey has its structures clipped in the brightened image that N2 learns from and that
    ``linear`` is capped by, while a dense field keeps ``ceiling``.
    """
    local_mean = F.avg_pool2d(luma(image), 3, stride=1, padding=1, count_include_pad=False).flatten()
    highlight = local_mean.kthvalue(max(1, round(HIGHLIGHT_QUANTILE * local_mean.numel()))).values
    if highlight <= 0:
        return ceiling
    return float(min(ceiling, max(HEADROOM * local_mean.mean() / highlight, MIN_BRIGHTNESS)))


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in ``[0, 1]`` to linear light (IEC 61966-2-1), any shape."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light in ``[0, 1]`` (clipped) to sRGB-encoded values, any shape: the inverse of :func:`srgb_to_linear`."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def apply_gain(image: torch.Tensor, gain: torch.Tensor, linear_light: bool = False) -> torch.Tensor:
    """``image`` ``(B, C, H, W)`` in ``[0, 1]`` brightened by ``gain`` ``(B, 1, 1, 1)``, clipped:
    on its values, or with ``linear_light`` on the light they encode (sRGB decoded, multiplied,
    encoded again), as a longer exposure of the scene would: the shadows rise more than the
    highlights."""
    if linear_light:
        return linear_to_srgb(gain * srgb_to_linear(image))
    return (gain * image).clamp(0, 1)


@torch.no_grad()
def exposure_gain(
    image: torch.Tensor, brightness: float, max_gain: float = MAX_OUTPUT_GAIN, iterations: int = 24, linear_light: bool = False
) -> torch.Tensor:
    """The gain ``g`` for which ``apply_gain(image, g, linear_light)`` has mean Rec.601 luminance
    ``brightness``: ``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 1, 1, 1)``, by bisection on ``g`` in
    ``[0, max_gain]`` (the mean rises with ``g``; clipped highlights make ``g`` larger than
    ``brightness / mean``). In linear light the cap is ``max_gain ** 2.4``, the same brightening
    in sRGB's mid-tones."""
    pixels = _pixel_sample(image)
    low = torch.zeros((image.shape[0], 1, 1, 1), dtype=image.dtype, device=image.device)
    cap = max_gain ** 2.4 if linear_light else max_gain
    return _bisect(
        lambda gain: luma(apply_gain(pixels, gain, linear_light)).mean(dim=(1, 2, 3), keepdim=True) < brightness,
        low, torch.full_like(low, cap), brighter_upwards=True, iterations=iterations,
    )


def illumination_target(y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Shared illumination target ``t = y ** (1 - gamma)`` in ``(0, 1]``: ``(B, 1, H, W)`` luminance
    and ``(B, 1, 1, 1)`` gamma -> ``(B, 1, H, W)``; ``y / t = y ** gamma``."""
    return y.clamp(1e-4, 1).pow(1 - gamma)


@torch.no_grad()
def illuminant_colour(image: torch.Tensor, limit: float = 1.5) -> torch.Tensor:
    """Gray-world estimate of the illuminant's colour: ``(B, 3, H, W) -> (B, 3, 1, 1)``.

    Each channel's mean over the luma mean, clamped to ``[1 / limit, limit]`` so that a scene
    that really is mostly one colour is only partly corrected; ``1`` for a neutral image. Dividing
    by it (von Kries) makes the channel means equal.
    """
    means = image.mean(dim=(2, 3), keepdim=True)
    return (means / luma(means).clamp_min(1e-6)).clamp(1 / limit, limit)


def gamma_targets(
    ld: torch.Tensor, options: ImprovedOptions = ImprovedOptions(), brightness: float = PUBLISHED_BRIGHTNESS
) -> torch.Tensor:
    """The illumination target of the gamma rule for the N1-denoised image ``ld`` ``(B, 3, H, W)``,
    aiming its mean luminance at ``brightness``.

    One luminance map ``y ** (1 - gamma)`` for all channels (times the gray-world illuminant colour
    when ``options.white_balance``): ``(B, 3, H, W)`` in ``(0, 1]``.
    """
    y = luma(ld) if options.fix_quirks else published_gray(ld)
    t = illumination_target(y, exposure_gamma(y, brightness)).expand_as(ld)
    if options.white_balance:
        t = (t * illuminant_colour(ld)).clamp(1e-4, 1)
    return t


def chroma_consistency(s: torch.Tensor) -> torch.Tensor:
    """Spread of an illumination map across channels: ``MSE(s, mean_c s)`` for ``(B, 3, H, W)``; a scalar."""
    return F.mse_loss(s, s.mean(1, keepdim=True).expand_as(s))


def improved_loss_terms(
    net: ZeroIGNet,
    image: torch.Tensor,
    options: ImprovedOptions = ImprovedOptions(),
    brightness: float = PUBLISHED_BRIGHTNESS,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms of the improved mode on ``image`` ``(B, 3, H, W)``; their sum is the loss.
    ``brightness`` is the mean luminance the exposure rule aims the enhanced image at.

    With ``ImprovedOptions(exposure="published", chroma_weight=0, fix_quirks=False)`` (and
    ``fix_texture_pair=False``, the default) the terms
    equal the published ones (``objective.faithful_loss_terms``).
    """
    f = training_forward(net, image)
    ld = f.l2.detach()
    mse = F.mse_loss
    fix = options.fix_quirks

    if options.exposure == "gamma":
        t = gamma_targets(ld, options, brightness)
        illumination = 700 * mse(f.s2, t)
        exposure = 1000 * mse(torch.clamp(ld / f.s2, 1e-9, 1), torch.clamp(ld / t, 1e-9, 1))
    elif options.exposure == "published":
        if fix:
            k = torch.clamp(brightness / (luma(ld).mean(dim=(1, 2, 3)) + 1e-9), 1, options.max_gain).view(-1, 1, 1, 1)
        else:
            k = brightness_target(ld, brightness, options.max_gain)
        ratio = torch.pow(0.7, -k) / k
        illumination = 700 * mse(f.s2, torch.clamp(torch.pow(ld * k, k) * ratio, 1e-9, 1))
        exposure = 1000 * mse(torch.clamp(ld / f.s2, 1e-9, 0.8), torch.clamp(ld * k, 1e-9, 1))
    else:
        raise ValueError(f"unknown exposure rule {options.exposure!r}: use 'gamma' or 'published'")

    h1_half, h2_half = pair_downsample(f.h3)
    mask = _rec601_texture_mask(h1_half, h2_half) if fix else texture_mask(h1_half, h2_half)
    h1 = torch.clamp(f.l2 / f.s2, 0, 1)
    a1, a2 = pair_downsample(image + 1e-9)
    b1, b2 = pair_downsample(f.l2)
    c1 = (1 - mask) * local_mean(h1_half) + h1_half * mask
    c2 = (1 - mask) * local_mean(h2_half) + (h2_half if options.fix_texture_pair else h1_half) * mask
    terms = {
        "illumination": illumination,
        "exposure": exposure,
        "smoothness": 5 * edge_aware_smoothness(ld, f.s2, colour=rec601_ycbcr if fix else published_ycbcr),
        "tv": 1600 * total_variation(f.s2),
        "pair_input": 1000 * mse(a1, f.p2) + 1000 * mse(a2, f.p1),
        "pair_denoised": 1000 * mse(f.p1, b1) + 1000 * mse(f.p2, b2),
        "pair_second": 1000 * mse(f.r3, f.target_from_h12) + 1000 * mse(f.r4, f.target_from_h11),
        "pair_output": 1000 * mse(f.r3[:, :3], h1_half) + 1000 * mse(f.r4[:, :3], h2_half),
        "colour": 10000 * mse(gaussian_blur(h1).detach(), gaussian_blur(f.h3)),
        "illumination_consistency": 1000 * mse(f.s2.detach(), f.s3),
        "texture_consistency": 10000 * mse(h1_half, c1) + 10000 * mse(h2_half, c2),
        "noise_variance": 1000 * mse(local_variance(f.h2), local_variance(f.h3 - f.h2)),
    }
    if options.chroma_weight:
        terms["chroma"] = options.chroma_weight * chroma_consistency(f.s2)
    return terms


def _loss(
    net: ZeroIGNet, image: torch.Tensor, brightness: float = PUBLISHED_BRIGHTNESS, *, options: ImprovedOptions
) -> torch.Tensor:
    return torch.stack(list(improved_loss_terms(net, image, options, brightness).values())).sum()


def make_loss(options: ImprovedOptions = ImprovedOptions()):
    """The total loss ``(net, image, brightness) -> scalar`` for ``options``, as a :class:`Recipe` takes it."""
    return functools.partial(_loss, options=options)


DEFAULT_WEIGHT_AVERAGE = 0.995
DEFAULT_LATE_LEARNING_RATE = 1e-4
DEFAULT_LATE_AFTER = 250
PLATEAU_PATIENCE = 4  # selection checks without a new best: the ablation variant improved+plateau-rate
DEFAULT_ENSEMBLE = 8
DEFAULT_FIT_BRIGHTNESS_RATIO = 0.7


def improved_recipe(name: str = IMPROVED_MODE, options: ImprovedOptions = PUBLISHED_LOSS, **settings):
    """A :class:`recipes.Recipe` for ``options``: image statistics at inference and weight
    averaging unless overridden, Adam settings as published."""
    from .recipes import Recipe  # recipes imports this module at its bottom

    settings.setdefault("weight_average", DEFAULT_WEIGHT_AVERAGE)
    settings.setdefault("inference_statistics", "image")
    settings.setdefault("late_learning_rate", DEFAULT_LATE_LEARNING_RATE)
    settings.setdefault("late_after", DEFAULT_LATE_AFTER)
    settings.setdefault("select_after", DEFAULT_LATE_AFTER)
    settings.setdefault("inference_ensemble", DEFAULT_ENSEMBLE)
    settings.setdefault("fit_brightness_ratio", DEFAULT_FIT_BRIGHTNESS_RATIO)
    settings.setdefault("gain_in_linear_light", True)
    settings.setdefault("global_tone", True)
    settings.setdefault("keep_borders", True)
    description = (
        "the published fit, read out with the image's own normalisation statistics (as in training) "
        "and averaged weights, learning rate lowered to 1e-4 after 250 steps, weights kept by a "
        "self-supervised Noise2Noise score read with its standard error, outputs averaged over 8 flips and transposes; fitted to 0.7 of "
        "the brightness; the denoised image at the input's intensities brought to it by one gain on its light (sRGB decoded), a global "
        "tone: no colour casts or late collapse from "
        "the published eval-mode readout, fewer clipped pixels, no under-exposure of very dark images "
        "(docs/quality.md)"
    )
    loss = faithful_loss if options == PUBLISHED_LOSS else make_loss(options)
    return Recipe(name, loss, settings.pop("description", description), **settings)


def ablation_recipes() -> dict:
    """Variants for the ablation table, keyed by name (not registered as modes).

    ``faithful+X`` adds one change to the published method (and nothing else: published readout,
    rate, exposure and a single inference pass otherwise); ``improved-X`` takes one out of the
    improved mode and ``improved+X`` adds a change to it.
    """
    from .recipes import RISK_SCORE  # recipes imports this module at its bottom

    published = {
        "inference_statistics": "running", "weight_average": None, "late_learning_rate": None, "late_after": 0,
        "select_after": None, "inference_ensemble": 1, "fit_brightness_ratio": None, "gain_in_linear_light": False,
        "global_tone": False, "keep_borders": False,
    }
    variants = {
        "faithful+image-statistics": (PUBLISHED_LOSS, {**published, "inference_statistics": "image"}),
        "faithful+ema": (PUBLISHED_LOSS, {**published, "weight_average": DEFAULT_WEIGHT_AVERAGE}),
        "improved-image-statistics": (PUBLISHED_LOSS, {"inference_statistics": "running"}),
        "improved-late-rate": (PUBLISHED_LOSS, {"late_learning_rate": None}),
        "improved-selection": (PUBLISHED_LOSS, {"select_after": None}),
        "improved+input-score": (PUBLISHED_LOSS, {"selection_domain": "input"}),
        "improved+risk-score": (PUBLISHED_LOSS, {"selection_domain": RISK_SCORE}),
        "improved+plateau-rate": (PUBLISHED_LOSS, {"late_on_plateau": PLATEAU_PATIENCE}),
        "improved-average": (PUBLISHED_LOSS, {"weight_average": None}),
        "improved-ensemble": (PUBLISHED_LOSS, {"inference_ensemble": 1}),
        "improved-borders": (PUBLISHED_LOSS, {"keep_borders": False}),
        "improved+gamma": (replace(PUBLISHED_LOSS, exposure="gamma"), {}),
        "improved+quirks": (replace(PUBLISHED_LOSS, fix_quirks=True), {}),
        "improved+gamma+quirks": (replace(PUBLISHED_LOSS, exposure="gamma", fix_quirks=True), {}),
        "improved+chroma": (replace(PUBLISHED_LOSS, chroma_weight=1000.0), {}),
        "improved+texture-pair": (replace(PUBLISHED_LOSS, fix_texture_pair=True), {}),
        "improved+gamma+white-balance": (replace(PUBLISHED_LOSS, exposure="gamma", white_balance=True), {}),
        "improved+lr1e-4": (PUBLISHED_LOSS, {"learning_rate": 1e-4}),
        "improved+gain100": (replace(PUBLISHED_LOSS, max_gain=100.0), {}),
        "improved-post-gain": (PUBLISHED_LOSS, {"fit_brightness_ratio": None}),
        "improved-linear-light": (PUBLISHED_LOSS, {"gain_in_linear_light": False}),
        "improved-global-tone": (PUBLISHED_LOSS, {"global_tone": False}),
    }
    return {
        name: improved_recipe(name, options, description=f"ablation variant {name}", **settings)
        for name, (options, settings) in variants.items()
    }
