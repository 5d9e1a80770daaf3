"""Loss building blocks of ZERO-IG, as published (quirks included; see SPEC.md).

Every function takes and returns NCHW float tensors. Local statistics use box means (pooling on
CUDA, sums of shifted views on CPU) rather than materialised 5x5 patches; each is checked against a
direct reading of the spec in the tests.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = [
    "published_gray",
    "texture_mask",
    "local_mean",
    "local_variance",
    "valid_box_mean",
    "gaussian_blur",
    "total_variation",
    "published_ycbcr",
    "edge_aware_smoothness",
    "SMOOTHNESS_OFFSETS",
]

SMOOTHNESS_OFFSETS = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 1), (2, -1), (1, 2), (1, -2), (2, 2), (2, -2))


def published_gray(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 1, H, W)`` with the published weights ``0.144 R + 0.587 G + 0.299 B``."""
    return (0.144 * x[:, 0] + 0.587 * x[:, 1] + 0.299 * x[:, 2]).unsqueeze(1)


def _shifted_box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of every ``size x size`` window (``size >= 2``) inside ``x``, as sums of shifted views:
    ``(B, C, H, W) -> (B, C, H - size + 1, W - size + 1)``."""
    height, width = x.shape[-2] - size + 1, x.shape[-1] - size + 1
    rows = x[..., 0:height, :] + x[..., 1 : 1 + height, :]
    for shift in range(2, size):
        rows += x[..., shift : shift + height, :]
    out = rows[..., 0:width] + rows[..., 1 : 1 + width]
    for shift in range(2, size):
        out += rows[..., shift : shift + width]
    return out.mul_(1.0 / (size * size))


class _ShiftedBoxMean(torch.autograd.Function):
    """:func:`_shifted_box_mean` with its adjoint as the backward: the same box mean over the
    gradient zero-padded by ``size - 1`` (the box is symmetric)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int) -> torch.Tensor:
        ctx.size = size
        return _shifted_box_mean(x, size)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        pad = ctx.size - 1
        return _shifted_box_mean(F.pad(grad, (pad, pad, pad, pad)), ctx.size), None


def valid_box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of every ``size x size`` window (``size >= 2``) inside ``x`` (no padding):
    ``(B, C, H, W) -> (B, C, H - size + 1, W - size + 1)``."""
    if x.device.type == "cpu":
        # avg_pool2d's CPU kernel is 9x (NCHW) to 27x (channels-last) slower than shifted sums
        # at 128x128 to 600x400; on CUDA one pooling kernel beats ten launches.
        return _ShiftedBoxMean.apply(x, size)
    return F.avg_pool2d(x, size, stride=1)


def local_mean(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Mean over ``size x size`` windows with reflect padding: ``(B, C, H, W) -> (B, C, H, W)``."""
    pad = size // 2
    return valid_box_mean(F.pad(x, (pad, pad, pad, pad), mode="reflect"), size)


def _local_std(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    mean = local_mean(x, size)
    variance = (local_mean(x * x, size) - mean * mean).clamp_min(0)
    return torch.sqrt(variance + 1e-9)


def texture_mask(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.975) -> torch.Tensor:
    """Where two RGB images have matching local texture: ``(B, 3, H, W) x2 -> (B, 1, H, W)`` of 0/1.

    ``r = 2 std_a std_b / (std_a^2 + std_b^2 + 1e-5)`` over 5x5 reflect-padded windows of the
    published gray; 1 where ``r > threshold``.
    """
    std_a, std_b = _local_std(published_gray(a)), _local_std(published_gray(b))
    ratio = 2 * std_a * std_b / (std_a * std_a + std_b * std_b + 1e-5)
    return (ratio > threshold).to(a.dtype)


def local_variance(x: torch.Tensor) -> torch.Tensor:
    """Published local variance: ``(B, C, H, W) -> (B, C, H, W)``.

    ``a = avgpool5x5(x)`` with zero padding counted in the divisor, then the zero-padded 5x5
    window mean of ``(x[q] - a[q])^2``: each pixel compared with its own pooled mean.
    """
    pooled = valid_box_mean(F.pad(x, (2, 2, 2, 2)), 5)
    return valid_box_mean(F.pad((x - pooled).square(), (2, 2, 2, 2)), 5)


def _device_constant(factory):
    """Cache ``factory(dtype, device)``: no host-to-device copy inside the training step (CUDA-graph
    capture forbids it). While ``torch.compile`` traces, the factory is called directly (the
    compiler folds it into a constant and would warn about tracing through the cache)."""
    cached = functools.lru_cache(maxsize=None)(factory)
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3

    @functools.wraps(factory)
    def constant(dtype: torch.dtype, device: torch.device):
        return factory(dtype, device) if is_compiling is not None and is_compiling() else cached(dtype, device)

    return constant


@_device_constant
def _blur_taps(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # K = sqrt(outer(k1, k1)) / sum is separable into sqrt(k1) / sum(sqrt(k1)) twice.
    t = torch.linspace(-1 - 1 / 14, 1 + 1 / 14, 22, dtype=torch.float64)
    cdf = 0.5 * (1 + torch.erf(t / math.sqrt(2.0)))
    root = torch.diff(cdf).sqrt()
    return (root / root.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """The published 21x21 depthwise blur with reflect padding: ``(B, C, H, W) -> (B, C, H, W)``.

    Needs ``H, W >= 11`` (reflect padding of 10).
    """
    channels = x.shape[1]
    taps = _blur_taps(x.dtype, x.device)
    x = F.pad(x, (10, 10, 10, 10), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 21, 1).expand(channels, 1, 21, 1), groups=channels)
    return F.conv2d(x, taps.view(1, 1, 1, 21).expand(channels, 1, 1, 21), groups=channels)


def total_variation(s: torch.Tensor) -> torch.Tensor:
    """``2 (sum dy^2 / ((H-1) W) + sum dx^2 / (H (W-1))) / B`` over all channels; a scalar."""
    b, _, h, w = s.shape
    dy = (s[:, :, 1:] - s[:, :, :-1]).square().sum()
    dx = (s[:, :, :, 1:] - s[:, :, :, :-1]).square().sum()
    return 2 * (dy / ((h - 1) * w) + dx / (h * (w - 1))) / b


_YCBCR = ((0.257, -0.148, 0.439), (0.564, -0.291, -0.368), (0.098, 0.439, -0.071))


@_device_constant
def _ycbcr_constants(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    matrix = torch.tensor(_YCBCR, dtype=dtype, device=device)
    bias = torch.tensor([16 / 255, 128 / 255, 128 / 255], dtype=dtype, device=device)
    return matrix, bias


def published_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """The published colour transform: rows of three consecutive values of the contiguous NCHW
    buffer (not per-pixel RGB triples) times a 3x3 matrix plus ``[16, 128, 128] / 255``.

    ``(B, 3, H, W) -> (B, 3, H, W)``; a channels-last input is read in NCHW order all the same.
    """
    matrix, bias = _ycbcr_constants(x.dtype, x.device)
    return torch.addmm(bias, x.contiguous().view(-1, 3), matrix).view(x.shape)


def _value_and_neighbour(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views ``x[p]`` and ``x[p + (dy, dx)]`` over the overlap where both exist (``dy >= 0``)."""
    h, w = x.shape[-2:]
    return (
        x[..., : h - dy, max(0, -dx) : w - max(0, dx)],
        x[..., dy:, max(0, dx) : w + min(0, dx)],
    )


class _WeightedNeighbourL1(torch.autograd.Function):
    """``sum_o sum_p weight_o(p) * |s(p) - s(p + o)|_1`` with the per-offset weights precomputed.

    Autograd through 12 pairs of shifted views would keep 12 difference images alive and pay a
    zero-fill per view in the backward; this keeps only ``s`` and recomputes the signs.
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        total = s.new_zeros(())
        for (dy, dx), weight in zip(SMOOTHNESS_OFFSETS, weights):
            here, there = _value_and_neighbour(s, dy, dx)
            total += torch.dot((here - there).abs_().sum(1).flatten(), weight.flatten())
        ctx.save_for_backward(s, *weights)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        s, *weights = ctx.saved_tensors
        grad_s = torch.zeros_like(s)
        for (dy, dx), weight in zip(SMOOTHNESS_OFFSETS, weights):
            here, there = _value_and_neighbour(s, dy, dx)
            grad_here, grad_there = _value_and_neighbour(grad_s, dy, dx)
            contribution = (here - there).sign_().mul_((weight * grad).unsqueeze(1))
            grad_here += contribution
            grad_there -= contribution
        return (grad_s, *([None] * len(weights)))


def edge_aware_smoothness(guide: torch.Tensor, s: torch.Tensor, colour=published_ycbcr, sigma: float = 10.0) -> torch.Tensor:
    """Edge-aware smoothness of ``s`` guided by ``guide`` (both ``(B, 3, H, W)``); a scalar.

    For each of 12 offsets, ``exp(-|y(p) - y(p+o)|^2 / (2 sigma^2)) * |s(p) - s(p+o)|_1`` averaged
    over the overlap, with ``y = colour(guide)``; the published loss counts each offset twice
    (once per direction, identical values), so the sum is doubled. No gradient reaches ``guide``.
    """
    with torch.no_grad():
        y = colour(guide)
        weights = []
        for dy, dx in SMOOTHNESS_OFFSETS:
            here, there = _value_and_neighbour(y, dy, dx)
            weight = torch.exp((here - there).square_().sum(1) * (-1.0 / (2 * sigma * sigma)))
            weights.append(weight.mul_(2.0 / weight.numel()))
    return _WeightedNeighbourL1.apply(s, *weights)
