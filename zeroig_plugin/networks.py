"""The three ZERO-IG networks and the pair downsampler.

Shapes follow NCHW. Module and state-dict names match the published checkpoints
(``enhance.*``, ``denoise_1.*``, ``denoise_2.*``) so weights load both ways.
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Statistics",
    "pair_downsample",
    "PairDownsample",
    "Denoiser",
    "Enhancer",
    "ZeroIGNet",
    "published_init",
]


Statistics = list[tuple[torch.Tensor, torch.Tensor]]
"""Per-repeat BatchNorm statistics of the enhancer's shared block: ``(mean, variance)``, each ``(width,)``."""


def pair_downsample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an image into two half-resolution views from the two diagonals of each 2x2 cell.

    Args:
        x: ``(B, C, H, W)``.

    Returns:
        ``(x1, x2)``, each ``(B, C, H // 2, W // 2)``:
        ``x1 = (x[2i, 2j+1] + x[2i+1, 2j]) / 2`` and ``x2 = (x[2i, 2j] + x[2i+1, 2j+1]) / 2``.
        Odd trailing rows and columns are dropped, as the published stride-2 convolution does.
    """
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    top_left, top_right = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    bottom_left, bottom_right = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (top_right + bottom_left) * 0.5, (top_left + bottom_right) * 0.5


class PairDownsample(nn.Module):
    """Module form of :func:`pair_downsample`."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return pair_downsample(x)


class Denoiser(nn.Module):
    """Three-layer noise predictor: conv3x3, LeakyReLU(0.2), conv3x3, LeakyReLU(0.2), conv1x1.

    ``(B, channels, H, W) -> (B, channels, H, W)``; it predicts the noise, which the caller subtracts.
    """

    def __init__(self, channels: int = 3, width: int = 48):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        return self.conv3(x)


class Enhancer(nn.Module):
    """Illumination estimator: ``(B, 3, H, W) -> (B, 3, H, W)`` in ``[1e-4, 1]``.

    One residual block ``conv3x3 + BatchNorm + ReLU`` is applied ``repeats`` times with shared
    weights (so in training mode its BatchNorm statistics update ``repeats`` times per forward).
    ``blocks`` lists that same module ``repeats`` times so the published state-dict keys
    (``blocks.{i}.*`` beside ``conv.*``) round-trip.
    """

    def __init__(self, width: int = 64, repeats: int = 3):
        super().__init__()
        self.in_conv = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.ModuleList([self.conv] * repeats)
        self.out_conv = nn.Sequential(nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, statistics: Statistics | None = None) -> torch.Tensor:
        """``statistics`` (one ``(mean, variance)`` per repeat) replace the BatchNorm's own: see
        :meth:`image_statistics`. Without them the block normalises as its mode says (batch
        statistics in training, the shared running averages in eval)."""
        return torch.clamp(self.out_conv(self.features(x, statistics)), 1e-4, 1)

    def features(self, x: torch.Tensor, statistics: Statistics | None = None, repeats: int | None = None) -> torch.Tensor:
        """The features after ``in_conv`` and the first ``repeats`` (default all) residual blocks,
        ``(B, width, H, W)``; ``statistics`` needs an entry for each block applied."""
        features = self.in_conv(x)
        for index, block in enumerate(self.blocks[:repeats]):
            features = features + (block(features) if statistics is None else self._normalised_block(features, *statistics[index]))
        return features

    def _normalised_block(self, features: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        return self._normalise(self.conv[0](features), mean, variance)

    def _normalise(self, convolved: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        norm = self.conv[1]
        return F.relu(F.batch_norm(convolved, mean, variance, norm.weight, norm.bias, False, 0.0, norm.eps))

    @torch.no_grad()
    def image_statistics(self, x: torch.Tensor) -> Statistics:
        """The statistics each repeat of the shared block normalises with in a training forward on
        ``x`` ``(B, 3, H, W)``: the batch mean and biased variance of its convolution output.

        The published inference uses the BatchNorm's running averages instead, which blend the
        three repeats' different statistics (one module, three uses) and lag the fit's last
        steps; that mismatch, not the fit, is behind much of the published late collapse.
        """
        conv = self.conv[0]
        statistics: Statistics = []
        features = self.in_conv(x)
        for _ in self.blocks:
            convolved = conv(features)
            mean, variance = convolved.mean((0, 2, 3)), convolved.var((0, 2, 3), unbiased=False)
            statistics.append((mean, variance))
            features = features + self._normalise(convolved, mean, variance)
        return statistics


class ZeroIGNet(nn.Module):
    """The three fitted networks: ``denoise_1`` (N1), ``enhance`` (E) and ``denoise_2`` (N2).

    Modules are created in the published order (enhancer, then the denoisers) so that a seeded
    default init draws the same random numbers as the published code.
    """

    def __init__(self, enhancer_width: int = 64, denoiser_width: int = 48, second_denoiser_width: int = 48):
        super().__init__()
        self.enhance = Enhancer(enhancer_width)
        self.denoise_1 = Denoiser(3, denoiser_width)
        self.denoise_2 = Denoiser(6, second_denoiser_width)

    @property
    def widths(self) -> dict[str, int]:
        return {
            "enhancer_width": self.enhance.in_conv[0].out_channels,
            "denoiser_width": self.denoise_1.conv1.out_channels,
            "second_denoiser_width": self.denoise_2.conv1.out_channels,
        }


_SEEDED_INIT = threading.Lock()
"""Held while the global RNG is seeded and drawn from: a second thread's seed would otherwise land between."""


def published_init(seed: int = 2, **widths: int) -> ZeroIGNet:
    """A network initialised exactly as the published ``train.py`` does for ``seed``.

    PyTorch's default init for every layer, then the enhancer's convolutions ``N(0, 0.02)``
    with zero bias and its BatchNorm weight ``N(1, 0.02)``. The global RNG is left untouched, and
    models made in several threads at once each get their seed's weights.
    """
    with _SEEDED_INIT, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ZeroIGNet(**widths)
        for part in (net.enhance.in_conv, net.enhance.conv, net.enhance.out_conv):
            for layer in part.modules():
                if isinstance(layer, nn.Conv2d):
                    layer.weight.data.normal_(0.0, 0.02)
                    layer.bias.data.zero_()
                elif isinstance(layer, nn.BatchNorm2d):
                    layer.weight.data.normal_(1.0, 0.02)
    return net
