"""A classical denoiser beside the fit: total variation, its strength chosen on the image itself.

Two uses, each measured (BENCHMARKS.md):

- :func:`average_with_tv`, microscopy: the fit's ``linear`` output and a total-variation denoise of
  the same input make different errors (the networks' smoothing and texture against TV's flat
  patches), so their average is nearer the noise-free image than either where the two are of
  similar quality: on the microscopy pairs (128x128 crops, napari's settings, 300 and 1000 steps,
  two seeds) `linear` +0.5 to +2.3 dB on GigaDB, W2S 001 and W2S 017 and 0.07 dB less on FMD
  (256x256: +0.2 to +0.9, FMD -0.06) ("The fit averaged with a classical denoiser").
- :func:`tv_denoised` of the fit's own ``denoise`` output, photos: the noise the networks leave
  (most at full size, where a photo's noise is strongest) is taken out by TV whose strength is
  calibrated on that output, so an output without measurable noise left is barely changed
  ("The photo's denoise finished by calibrated TV"). That noise is correlated between
  neighbouring pixels, so the strength is calibrated on pixel-shuffled sub-images
  (:data:`FINISH_STRIDE`; "Calibrating on pixel-shuffled sub-images"). Photos are not averaged
  with TV of the input: the fit's ``denoise`` carries a local tone curve that a globally
  brightened TV result does not, and on LOL the average was below ``denoise`` alone.

TV's weight is chosen from :data:`STRENGTHS` times the image's noise level
(:func:`noise.noise_variance`) by Noise2Self's J-invariant self-supervised loss
(:func:`skimage.restoration.calibrate_denoiser`; Batson and Royer, ICML 2019), and the chosen weight
is used with the plain denoiser. Zero-shot: nothing but the image. Calibration runs 16 TV
denoises of the image, or of its centred :data:`CALIBRATION_SIDE` square, on a CPU (0.2 to 0.5 s
for a 512x512 plane; 8 s for 2048x2048, with both cores of a 2-core CPU busy; on sub-images
``stride`` apart, ``stride`` times 16 of images ``stride**2`` times smaller); the engine
calibrates on the first image a model infers and keeps that strength, as a multiple of each
image's own noise level, for the planes of a stack that follow (one TV denoise each: 1.6 s at
2048x2048).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .noise import noise_variance
from .objective import is_gray

__all__ = [
    "STRENGTHS", "CALIBRATION_SIDE", "MIN_SUB_IMAGE_SIDE", "FINISH_STRIDE",
    "noise_level", "calibrated", "calibrated_tv", "tv_denoised", "average_with_tv",
]

STRENGTHS = np.geomspace(0.125, 16.0, 15)
"""The strengths searched, as multiples of the image's noise level (steps of sqrt(2))."""
CALIBRATION_SIDE = 1024
"""Larger images are calibrated on their centred ``CALIBRATION_SIDE`` square (the strength is a
multiple of the noise level, so it carries over), which bounds the calibration's time and memory."""
MIN_SUB_IMAGE_SIDE = 64
"""The shortest side a sub-image of :func:`calibrated` may have: a smaller image is calibrated at the
largest stride that keeps its sub-images this large, or whole. Chosen after the measurements:
sub-images of 11 pixels (a 32x32 photo at stride 3) blurred the photo, and of 53 (160 px) over-smoothed
one of the 36 images measured (BENCHMARKS.md, "Calibrating on pixel-shuffled sub-images")."""
FINISH_STRIDE = 3
"""The photo finishing (:func:`tv_denoised` of ``denoise``) calibrates on the sub-images
``image[k::3, k::3]``, whose neighbouring pixels are 3 apart in the image (the pixel-shuffle
downsampling of AP-BSN, Lee et al., CVPR 2022). The noise the networks leave is correlated over
about two pixels (the error against the reference: 0.46 at one pixel, 0.09 at three, medians), and
Noise2Self's one-pixel masks, whose neighbours share the masked pixel's noise, chose the weakest
strength of the grid on most full-size outputs. Sub-sampling cannot tell that noise from fine
texture it aliases: on a finely textured photo downscaled to 160 px with little noise left it
smoothed too much (BENCHMARKS.md, "Calibrating on pixel-shuffled sub-images")."""


def noise_level(image: np.ndarray) -> float:
    """The noise's standard deviation averaged over ``image``'s pixels and channels: ``(H, W)`` or
    ``(H, W, C)`` in ``[0, 1]`` -> a float (root of the mean of :func:`noise.noise_variance`)."""
    channels = image[None, None] if image.ndim == 2 else image.transpose(2, 0, 1)[None]
    return float(noise_variance(torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))).mean().sqrt())


def calibrated(
    denoise: Callable[..., np.ndarray], image: np.ndarray, name: str, scale: float, stride: int = 1, **fixed
) -> tuple[np.ndarray, float]:
    """``denoise(image, **{name: scale * m}, **fixed)`` with the multiple ``m`` of :data:`STRENGTHS`
    that :func:`skimage.restoration.calibrate_denoiser` finds best on ``image`` alone; also ``m``.
    ``image``: ``(H, W)`` or ``(H, W, C)``; the result float32, laid out alike. With ``stride`` > 1
    the loss is summed over the sub-images ``image[k::stride, k::stride]`` (``k < stride``), whose
    neighbours are ``stride`` pixels apart, for noise correlated between neighbouring pixels; the
    stride is lowered until their sides are at least :data:`MIN_SUB_IMAGE_SIDE` (1: the image whole).
    ``fixed`` must name ``channel_axis`` for a multichannel image, or the masks split its pixels."""
    from skimage.restoration import calibrate_denoiser

    while stride > 1 and min(image.shape[:2]) // stride < MIN_SUB_IMAGE_SIDE:
        stride -= 1
    values = {name: [float(scale * m) for m in STRENGTHS], **{key: [value] for key, value in fixed.items()}}
    losses = np.zeros(len(STRENGTHS))
    for k in range(stride):
        sub_image = np.ascontiguousarray(image[k::stride, k::stride])
        _, (tested, sub_losses) = calibrate_denoiser(sub_image, denoise, values, extra_output=True)
        losses += np.asarray(sub_losses)
    best = int(np.argmin(losses))
    return np.asarray(denoise(image, **tested[best]), dtype=np.float32), float(STRENGTHS[best])


def calibrated_tv(image: np.ndarray, strength: float | None = None, stride: int = 1) -> tuple[np.ndarray, float]:
    """``image`` (``(H, W)`` or ``(H, W, C)`` in ``[0, 1]``) denoised by total variation
    (Chambolle) with weight ``strength`` times its noise level, the strength calibrated on the
    image (its centred :data:`CALIBRATION_SIDE` square; on its sub-images ``stride`` apart, as
    :func:`calibrated`) when ``None``; also the strength. An image
    without measurable noise (synthetic, or flat) is returned as it is, with the strength given, or
    0 where there was none to calibrate."""
    from skimage.restoration import denoise_tv_chambolle

    channel_axis = -1 if image.ndim == 3 else None
    if strength is None:
        top, left = (max(0, (side - CALIBRATION_SIDE) // 2) for side in image.shape[:2])
        sample = image[top : top + CALIBRATION_SIDE, left : left + CALIBRATION_SIDE]
        level = noise_level(sample)
        if not level > 0:
            return np.array(image, dtype=np.float32), 0.0
        denoised, strength = calibrated(denoise_tv_chambolle, sample, "weight", level, stride, channel_axis=channel_axis)
        if sample.shape == image.shape:
            return denoised, strength
    level = noise_level(image)
    if not level > 0:
        return np.array(image, dtype=np.float32), strength
    denoised = denoise_tv_chambolle(image, weight=strength * level, channel_axis=channel_axis)
    return np.asarray(denoised, dtype=np.float32), strength


@torch.no_grad()
def tv_denoised(image: torch.Tensor, strength: float | None = None, stride: int = 1) -> tuple[torch.Tensor, float]:
    """:func:`calibrated_tv` of ``image`` ``(1, 3, H, W)`` in ``[0, 1]``, as a tensor laid out alike,
    and TV's strength (calibrated when ``strength`` is ``None``, on sub-images ``stride`` apart); a
    gray image (three equal channels) is denoised as one channel."""
    gray = is_gray(image)
    pixels = image[0, :1] if gray else image[0]
    denoised, strength = calibrated_tv(pixels.permute(1, 2, 0).squeeze(-1).float().cpu().numpy(), strength, stride)
    denoised = torch.from_numpy(denoised).to(image)
    denoised = denoised.expand_as(image[0]) if gray else denoised.permute(2, 0, 1)
    return denoised.unsqueeze(0), strength


def average_with_tv(
    linear: torch.Tensor, image: torch.Tensor, strength: float | None = None
) -> tuple[torch.Tensor, float]:
    """The half-and-half average of ``linear`` and :func:`tv_denoised` ``image``, both
    ``(1, 3, H, W)`` in ``[0, 1]``, and TV's strength (calibrated when ``strength`` is ``None``)."""
    denoised, strength = tv_denoised(image, strength)
    return (linear + denoised) / 2, strength
