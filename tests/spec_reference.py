"""A direct, slow, literal reading of ``SPEC.md`` (the published ZERO-IG arithmetic).

Nothing here is optimised: local statistics materialise every 5x5 window with ``unfold``, the blur
is the full 21x21 two-dimensional kernel, the smoothness term visits all 24 directions one by one,
the colour transform multiplies the contiguous buffer's rows of three value by value, and the pair
downsampler is the two stride-2 convolutions. The tests hold ``zeroig_plugin`` to this reading,
and ``benchmarks/speed.py`` times it as the stand-in for the published computation.

All tensors are NCHW float32 in ``[0, 1]``.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

SMOOTHNESS_OFFSETS = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 1), (2, -1), (1, 2), (1, -2), (2, 2), (2, -2))
YCBCR_MATRIX = ((0.257, -0.148, 0.439), (0.564, -0.291, -0.368), (0.098, 0.439, -0.071))
YCBCR_BIAS = (16 / 255, 128 / 255, 128 / 255)


def pair_downsample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``D(x)``: ``(B, C, H, W) -> 2 x (B, C, H // 2, W // 2)`` by two depthwise stride-2 convolutions."""
    channels = x.shape[1]
    anti_diagonal = torch.tensor([[0.0, 0.5], [0.5, 0.0]]).view(1, 1, 2, 2).repeat(channels, 1, 1, 1)
    diagonal = torch.tensor([[0.5, 0.0], [0.0, 0.5]]).view(1, 1, 2, 2).repeat(channels, 1, 1, 1)
    return (
        F.conv2d(x, anti_diagonal.to(x), stride=2, groups=channels),
        F.conv2d(x, diagonal.to(x), stride=2, groups=channels),
    )


def gray(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 1, H, W)``: ``0.144 x0 + 0.587 x1 + 0.299 x2``."""
    return (0.144 * x[:, 0] + 0.587 * x[:, 1] + 0.299 * x[:, 2]).unsqueeze(1)


def windows(x: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Every 5x5 window of ``x`` padded by 2: ``(B, C, H, W) -> (B, C, H, W, 5, 5)``."""
    if padding_mode == "reflect":
        padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    else:
        padded = F.pad(x, (2, 2, 2, 2), mode="constant", value=0.0)
    return padded.unfold(2, 5, 1).unfold(3, 5, 1)


def local_std(g: torch.Tensor) -> torch.Tensor:
    """``sqrt(mean_window((p - mean_window p)^2) + 1e-9)``, reflect padding 2."""
    patches = windows(g, "reflect")
    centred = patches - patches.mean(dim=(4, 5), keepdim=True)
    return torch.sqrt((centred**2).mean(dim=(4, 5)) + 1e-9)


def texture_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``r = 2 std_a std_b / (std_a^2 + std_b^2 + 1e-5)`` on the grays of ``a`` and ``b``."""
    std_a, std_b = local_std(gray(a)), local_std(gray(b))
    return 2 * std_a * std_b / (std_a**2 + std_b**2 + 1e-5)


def texture_mask(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``TD(a, b)``: 1.0 where ``r > 0.975`` else 0.0, ``(B, 1, H, W)``."""
    return torch.where(texture_ratio(a, b) > 0.975, 1.0, 0.0)


def local_mean(x: torch.Tensor) -> torch.Tensor:
    """``LM(x)``: 5x5 window mean, reflect padding 2."""
    return windows(x, "reflect").mean(dim=(4, 5))


def local_variance(x: torch.Tensor) -> torch.Tensor:
    """``LV(x)``: zero-padded window mean of ``(x[q] - a[q])^2`` with ``a`` the zero-padded 5x5 mean."""
    pooled = windows(x, "zeros").mean(dim=(4, 5))
    return ((windows(x, "zeros") - windows(pooled, "zeros")) ** 2).mean(dim=(4, 5))


def blur_kernel() -> torch.Tensor:
    """The 21x21 kernel: ``k1 = diff(Phi(linspace(-1-1/14, 1+1/14, 22)))``, ``sqrt(outer(k1, k1)) / sum``."""
    t = torch.linspace(-1 - 1 / 14, 1 + 1 / 14, 22)
    k1 = torch.diff(0.5 * (1 + torch.erf(t / torch.sqrt(torch.tensor(2.0)))))
    raw = torch.sqrt(torch.outer(k1, k1))
    return raw / raw.sum()


def blur(x: torch.Tensor) -> torch.Tensor:
    """Depthwise 21x21 convolution with reflect padding 10."""
    channels = x.shape[1]
    kernel = blur_kernel().to(x).view(1, 1, 21, 21).repeat(channels, 1, 1, 1)
    return F.conv2d(F.pad(x, (10, 10, 10, 10), mode="reflect"), kernel, groups=channels)


def total_variation(s: torch.Tensor) -> torch.Tensor:
    """``TV(s) = 2 (sum dy^2 / ((H-1) W) + sum dx^2 / (H (W-1))) / B``."""
    b, _, h, w = s.shape
    dy = ((s[:, :, 1:, :] - s[:, :, :-1, :]) ** 2).sum()
    dx = ((s[:, :, :, 1:] - s[:, :, :, :-1]) ** 2).sum()
    return 2 * (dy / ((h - 1) * w) + dx / (h * (w - 1))) / b


def ycbcr(g: torch.Tensor) -> torch.Tensor:
    """Rows of three consecutive values of the contiguous buffer, each ``row @ M + c``, reshaped back."""
    rows = g.contiguous().view(-1, 3)
    matrix = torch.tensor(YCBCR_MATRIX).to(g)
    out = torch.stack([sum(rows[:, i] * matrix[i, j] for i in range(3)) + YCBCR_BIAS[j] for j in range(3)], 1)
    return out.view(g.shape)


def value_and_neighbour(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x[p]`` and ``x[p + (dy, dx)]`` over every ``p`` where both lie inside the image."""
    h, w = x.shape[-2:]
    here = x[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    there = x[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
    return here, there


def smoothness(g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``Smooth(g, s)``: the sum over all 24 directions (each offset both ways) of
    ``mean(exp(-sum_c (y[p] - y[p+o])^2 / 200) * sum_c |s[p] - s[p+o]|)``, ``y = ycbcr(g)``."""
    y = ycbcr(g)
    total = s.new_zeros(())
    for dy, dx in SMOOTHNESS_OFFSETS + tuple((-dy, -dx) for dy, dx in SMOOTHNESS_OFFSETS):
        y_here, y_there = value_and_neighbour(y, dy, dx)
        s_here, s_there = value_and_neighbour(s, dy, dx)
        weight = torch.exp(-((y_here - y_there) ** 2).sum(1) / 200)
        total = total + torch.mean(weight * (s_here - s_there).abs().sum(1))
    return total


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).mean()


def training_forward(net, image: torch.Tensor) -> SimpleNamespace:
    """The spec's training forward of ``net`` (a ``ZeroIGNet``) on ``image``; every named value."""
    eps = 1e-4
    v = SimpleNamespace(I=image)
    v.J = image + eps
    v.L11, v.L12 = pair_downsample(v.J)
    v.P1 = v.L11 - net.denoise_1(v.L11)
    v.P2 = v.L12 - net.denoise_1(v.L12)
    v.L2 = torch.clamp(v.J - net.denoise_1(v.J), eps, 1)
    v.s2 = net.enhance(v.L2.detach())
    v.s21, v.s22 = pair_downsample(v.s2)
    v.H2 = torch.clamp(v.J / v.s2, eps, 1)
    v.H11 = torch.clamp(v.L11 / v.s21, eps, 1)
    v.H12 = torch.clamp(v.L12 / v.s22, eps, 1)
    in3, in4, in5 = torch.cat([v.H11, v.s21], 1), torch.cat([v.H12, v.s22], 1), torch.cat([v.H2, v.s2], 1)
    v.R3 = torch.clamp(in3.detach() - net.denoise_2(in3), eps, 1)
    v.R4 = torch.clamp(in4.detach() - net.denoise_2(in4), eps, 1)
    v.R5 = torch.clamp(in5.detach() - net.denoise_2(in5), eps, 1)
    v.H3, v.s3 = v.R5[:, :3], v.R5[:, 3:]
    v.h1, v.h2 = pair_downsample(v.H3)
    v.texture_ratio = texture_ratio(v.h1, v.h2)
    v.m = torch.where(v.texture_ratio > 0.975, 1.0, 0.0)
    v.H1 = torch.clamp(v.L2 / v.s2, 0, 1)
    return v


def loss_terms(net, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The spec's loss terms, named as ``zeroig_plugin.objective.faithful_loss_terms`` names them.

    ``k`` is per image (the published code takes ``mean(Y)`` over each image's pixels).
    """
    v = training_forward(net, image)
    ie = image + 1e-9
    ld = v.L2.detach()
    y = 0.299 * ld[:, 2] + 0.587 * ld[:, 1] + 0.144 * ld[:, 0]
    k = torch.clamp(0.5 / (y.mean(dim=(1, 2)) + 1e-9), 1, 25).view(-1, 1, 1, 1)
    r = 0.7 ** (-k) / k
    a1, a2 = pair_downsample(ie)
    b1, b2 = pair_downsample(v.L2)
    c1 = (1 - v.m) * local_mean(v.h1) + v.h1 * v.m
    c2 = (1 - v.m) * local_mean(v.h2) + v.h1 * v.m
    return {
        "illumination": 700 * mse(v.s2, torch.clamp((ld * k) ** k * r, 1e-9, 1)),
        "exposure": 1000 * mse(torch.clamp(ld / v.s2, 1e-9, 0.8), torch.clamp(ld * k, 1e-9, 1)),
        "smoothness": 5 * smoothness(ld, v.s2),
        "tv": 1600 * total_variation(v.s2),
        "pair_input": 1000 * mse(a1, v.P2) + 1000 * mse(a2, v.P1),
        "pair_denoised": 1000 * mse(v.P1, b1) + 1000 * mse(v.P2, b2),
        "pair_second": 1000 * mse(v.R3, torch.cat([v.H12, v.s22], 1).detach())
        + 1000 * mse(v.R4, torch.cat([v.H11, v.s21], 1).detach()),
        "pair_output": 1000 * mse(v.R3[:, :3], v.h1) + 1000 * mse(v.R4[:, :3], v.h2),
        "colour": 10000 * mse(blur(v.H1).detach(), blur(v.H3)),
        "illumination_consistency": 1000 * mse(v.s2.detach(), v.s3),
        "texture_consistency": 10000 * mse(v.h1, c1) + 10000 * mse(v.h2, c2),
        "noise_variance": 1000 * mse(local_variance(v.H2), local_variance(v.H3 - v.H2)),
    }


def total_loss(net, image: torch.Tensor) -> torch.Tensor:
    """The spec's total loss: the sum of :func:`loss_terms`."""
    terms = loss_terms(net, image)
    return sum(terms.values())
