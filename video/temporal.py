"""Motion-compensated, motion-adaptive recursive temporal filter ("3DNR") for enhanced frames.

Each output pixel blends the current frame with the previous *filtered* frame, first moved onto
the current one along a coarse optical flow::

    filtered_t = current_t + weight * (warp(filtered_{t-1}) - current_t)

``weight`` is ``strength`` where the two agree to within the noise and falls linearly to 0 where
they differ by more (motion the flow missed, occlusions, a change of scene), so moving content
follows the current frame and does not ghost.

- *Difference*: per pixel, the squared difference averaged over the colour channels and a
  ``window`` x ``window`` box (:func:`difference_energy`).
- *Noise level*: a robust frame-wide scale of that energy where only noise differs
  (:func:`estimate_noise`: the 0.9 quantile over 4x4 blocks, the smaller of the block-mean
  energy and the within-block variance of the difference, blocks with no difference at all left
  out), kept from growing more than ``growth`` times from one frame to the next, so a sudden
  large change reads as motion, not as noise. The weight is ``strength`` up to ``low`` times the
  noise level and 0 from ``high`` times it. (ZERO-IG's per-frame differences are sparse and
  large, flips of contrasty detail, so a high quantile, not a median, is their scale.)
- *Motion*: a pyramidal Lucas-Kanade flow (:func:`estimate_flow`) between the lumas of the current
  frame and the previous filtered one, area-downscaled so the longest side is at most
  ``flow_size``; strongly regularised (``flow_reg``), so flat and noisy areas get no motion and only
  well-textured ones move. Then upsampled, and the previous frame is resampled along it
  (bilinear, :func:`warp`).

On a static scene a weight ``a`` leaves ``(1 - a) / (1 + a)`` of the white-noise variance, and
``(1 - a)^2 / (1 + a)`` of the variance of frame-to-frame differences (0.11 and 0.022 at 0.8).

All of it is convolutions, pooling, one ``grid_sample`` and elementwise work on the frames' device
with no host synchronisation; the flow runs on at most ``flow_size``-px lumas.

Functional form: :func:`temporal_filter_step` (one frame), :func:`recursive_filter` (a sequence),
and its parts. Stateful form: :class:`TemporalFilter` (an ``nn.Module``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TemporalFilter",
    "temporal_filter_step",
    "recursive_filter",
    "difference_energy",
    "estimate_noise",
    "temporal_blend",
    "estimate_flow",
    "warp",
]

WINDOW = 5  # side of the box the difference energy is averaged over
LOW = 2.0  # energy / noise level up to which the full strength applies
HIGH = 6.0  # energy / noise level from which the current frame is kept as it is
GROWTH = 2.0  # the noise level may grow at most this factor from one frame to the next
NOISE_QUANTILE = 0.9  # quantile over the frame's blocks taken as its noise level
NOISE_BLOCK = 4  # side of the blocks the difference's variance is taken in
SILENT = 1e-7  # blocks with less difference energy than this carry no information on the noise
NOISE_FLOOR = 1e-8  # keeps the energy ratio finite on noiseless (synthetic) frames

FLOW_SIZE = 256  # longest side of the lumas the flow is estimated on
FLOW_LEVELS = 3  # pyramid levels (each halves the size), while the short side stays >= FLOW_MIN_SIDE
FLOW_MIN_SIDE = 16
FLOW_ITERATIONS = 3  # Lucas-Kanade updates per level
FLOW_WINDOW = 9  # box over which the Lucas-Kanade normal equations are summed
FLOW_REG = 2e-2  # Tikhonov term (squared luma gradient per pixel): weak texture -> no motion
FLOW_MAX_STEP = 2.0  # largest update per iteration, in pixels of the level


def _box(image: torch.Tensor, side: int) -> torch.Tensor:
    """Mean over a ``side`` x ``side`` box, stride 1, borders averaged over pixels inside."""
    return F.avg_pool2d(image, side, stride=1, padding=side // 2, count_include_pad=False)


def _luma(image: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, 1, H, W)`` Rec.601 luma (the mean for other than 3 channels)."""
    if image.shape[1] == 3:
        return image[:, 0:1] * 0.299 + image[:, 1:2] * 0.587 + image[:, 2:3] * 0.114
    return image.mean(dim=1, keepdim=True)


def _gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``(B, 1, H, W)``, borders replicated."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    return (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2, (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Resample ``image`` along ``flow``.

    Args:
        image: ``(B, C, H, W)`` float.
        flow: ``(B, 2, H, W)`` float, (x, y) displacements in pixels.

    Returns:
        ``(B, C, H, W)``: ``image`` sampled at ``(x + flow_x, y + flow_y)``, bilinear, borders
        replicated.
    """
    batch, _, height, width = flow.shape
    ys = torch.arange(height, dtype=flow.dtype, device=flow.device).view(1, height, 1)
    xs = torch.arange(width, dtype=flow.dtype, device=flow.device).view(1, 1, width)
    grid = torch.stack(
        [(xs + flow[:, 0]) * (2 / max(width - 1, 1)) - 1, (ys + flow[:, 1]) * (2 / max(height - 1, 1)) - 1], dim=-1
    )
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _lucas_kanade(current: torch.Tensor, previous: torch.Tensor, levels: int, iterations: int, window: int, reg: float) -> torch.Tensor:
    """Coarse-to-fine Lucas-Kanade on ``(B, 1, h, w)`` lumas -> ``(B, 2, h, w)`` flow such that
    ``previous(x + flow) ~ current(x)``."""
    pyramid = [(current, previous)]
    while len(pyramid) < levels and min(pyramid[-1][0].shape[-2:]) >= 2 * FLOW_MIN_SIDE:
        pyramid.append(tuple(F.avg_pool2d(level, 2) for level in pyramid[-1]))
    flow = None
    for now, before in reversed(pyramid):
        if flow is None:
            flow = now.new_zeros(now.shape[0], 2, *now.shape[-2:])
        else:
            flow = F.interpolate(flow, size=now.shape[-2:], mode="bilinear", align_corners=False) * 2
        now_x, now_y = _gradients(now)
        for _ in range(iterations):
            moved = warp(before, flow)
            moved_x, moved_y = _gradients(moved)
            gx, gy, gt = (now_x + moved_x) / 2, (now_y + moved_y) / 2, moved - now
            xx, xy, yy = _box(gx * gx, window) + reg, _box(gx * gy, window), _box(gy * gy, window) + reg
            xt, yt = _box(gx * gt, window), _box(gy * gt, window)
            determinant = xx * yy - xy * xy
            step = torch.cat([(xy * yt - yy * xt) / determinant, (xy * xt - xx * yt) / determinant], dim=1)
            flow = flow + step.clamp(-FLOW_MAX_STEP, FLOW_MAX_STEP)
    return flow


def estimate_flow(
    current: torch.Tensor,
    previous: torch.Tensor,
    size: int = FLOW_SIZE,
    *,
    levels: int = FLOW_LEVELS,
    iterations: int = FLOW_ITERATIONS,
    window: int = FLOW_WINDOW,
    reg: float = FLOW_REG,
) -> torch.Tensor:
    """Coarse optical flow from ``current`` back to ``previous``, at reduced resolution.

    Args:
        current, previous: ``(B, C, H, W)`` float frames in ``[0, 1]``.
        size: the lumas are area-downscaled so their longest side is at most this (frames no
            larger are lightly blurred, 3x3, instead).
        levels, iterations, window, reg: pyramid levels, Lucas-Kanade updates per level, box
            side of the normal equations, and the regularisation that keeps weakly textured
            areas still.

    Returns:
        ``(B, 2, H, W)`` (x, y) flow in full-resolution pixels such that
        ``warp(previous, flow) ~ current``.
    """
    height, width = current.shape[-2:]
    now, before = _luma(current.float()), _luma(previous.float())
    if size and max(height, width) > size:
        scale = size / max(height, width)
        small = (max(1, round(height * scale)), max(1, round(width * scale)))
        now, before = F.interpolate(now, size=small, mode="area"), F.interpolate(before, size=small, mode="area")
    else:
        now, before = _box(now, 3), _box(before, 3)
    flow = _lucas_kanade(now, before, levels, iterations, window, reg)
    if flow.shape[-2:] != (height, width):
        gain = flow.new_tensor([width / flow.shape[-1], height / flow.shape[-2]]).view(1, 2, 1, 1)
        flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False) * gain
    return flow


def difference_energy(current: torch.Tensor, previous: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """Local energy of the difference between two frames.

    Args:
        current: ``(B, C, H, W)`` float.
        previous: ``(B, C, H, W)`` float, same shape.
        window: odd side of the averaging box (1: no spatial averaging).

    Returns:
        ``(B, 1, H, W)``: the squared difference averaged over channels and the box.
    """
    if current.shape != previous.shape or current.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) frames of one shape, got {tuple(current.shape)} and {tuple(previous.shape)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, not {window}")
    energy = (current - previous).square().mean(dim=1, keepdim=True)
    return _box(energy, window) if window > 1 else energy


def _quantile_of_informative(values: torch.Tensor, quantile: float) -> torch.Tensor:
    """``quantile`` over each row of ``(B, N)`` leaving out values <= ``SILENT`` -> ``(B,)``.
    Sorted and indexed on the device: no host synchronisation."""
    ordered = values.sort(dim=1).values
    count = ordered.shape[1]
    informative = (ordered > SILENT).sum(dim=1, keepdim=True)
    rank = (count - informative) + (quantile * (informative - 1).clamp_min(0)).round().long()
    return ordered.gather(1, rank.clamp(0, count - 1))[:, 0]


def estimate_noise(
    difference: torch.Tensor,
    energy: torch.Tensor,
    cap: torch.Tensor | None = None,
    quantile: float = NOISE_QUANTILE,
) -> torch.Tensor:
    """Noise level of the difference between two aligned frames, robust to motion.

    Two estimates over ``NOISE_BLOCK`` x ``NOISE_BLOCK`` blocks, each the ``quantile`` over the
    blocks that have any difference at all (not clipped to black or white in both frames, not a
    letterbox bar), and the smaller is kept:

    - the block mean of ``energy``, which motion over more than ``1 - quantile`` of the frame's
      informative blocks inflates;
    - the variance of the difference within each block: noise, incoherent, counts in full, while
      motion, coherent over a block, cancels except along its outlines; but where most of the
      frame is clipped or flat, the informative blocks left are mostly such outlines and
      compression-block edges, which inflate it.

    Args:
        difference: ``(B, C, H, W)``, current minus (motion-compensated) previous.
        energy: ``(B, 1, H, W)``, :func:`difference_energy` of the same frames.
        cap: ``(B,)`` upper bound (e.g. ``growth`` times the previous frame's level), or ``None``.
        quantile: in ``(0, 1)``.

    Returns:
        ``(B,)`` noise level in squared intensity (the units of ``energy``), on its device.
    """
    batch = difference.shape[0]
    mean_energy = F.avg_pool2d(energy, NOISE_BLOCK, ceil_mode=True).reshape(batch, -1)
    mean_square = F.avg_pool2d(difference.square(), NOISE_BLOCK, ceil_mode=True)
    square_mean = F.avg_pool2d(difference, NOISE_BLOCK, ceil_mode=True).square()
    variance = (mean_square - square_mean).mean(dim=1).reshape(batch, -1)
    noise = torch.minimum(_quantile_of_informative(mean_energy, quantile), _quantile_of_informative(variance, quantile))
    noise = noise.clamp_min(NOISE_FLOOR)
    return noise if cap is None else torch.minimum(noise, cap)


def temporal_blend(
    current: torch.Tensor,
    previous: torch.Tensor,
    energy: torch.Tensor,
    noise: torch.Tensor | float,
    strength: float,
    low: float = LOW,
    high: float = HIGH,
) -> torch.Tensor:
    """Blend ``previous`` into ``current`` where their difference energy is noise-like.

    Args:
        current: ``(B, C, H, W)`` float, the frame to filter.
        previous: ``(B, C, H, W)`` float, the previous filtered frame (motion-compensated).
        energy: ``(B, 1, H, W)`` from :func:`difference_energy` of the two.
        noise: ``(B,)`` tensor or a float: the energy level of noise.
        strength: weight of ``previous`` where the frames agree, in ``[0, 1)``.
        low, high: energy / noise ratios where the weight starts to fall and where it is 0.

    Returns:
        ``(B, C, H, W)``: ``current + weight * (previous - current)``.
    """
    _check(strength, low, high)
    if strength == 0:
        return current
    if isinstance(noise, torch.Tensor):
        noise = noise.reshape(-1, 1, 1, 1)
    weight = ((high - energy / noise) / (high - low)).clamp(0, 1) * strength
    return torch.lerp(current, previous, weight.to(current.dtype))


def temporal_filter_step(
    current: torch.Tensor,
    previous: torch.Tensor,
    strength: float,
    *,
    noise_cap: torch.Tensor | None = None,
    motion_compensation: bool = True,
    flow_size: int = FLOW_SIZE,
    window: int = WINDOW,
    low: float = LOW,
    high: float = HIGH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Filter one frame against the previous filtered frame.

    Args:
        current: ``(B, C, H, W)`` float frame in ``[0, 1]``.
        previous: ``(B, C, H, W)`` the previous *filtered* frame.
        strength: weight of ``previous`` where nothing changed, in ``[0, 1)``.
        noise_cap: ``(B,)`` most the noise level may be (see :class:`TemporalFilter`).
        motion_compensation: warp ``previous`` along :func:`estimate_flow` first.
        flow_size, window, low, high: see the module docstring.

    Returns:
        ``(filtered, noise)``: ``(B, C, H, W)`` and the ``(B,)`` noise level used.
    """
    with torch.no_grad():
        previous = previous.to(current.dtype)
        if motion_compensation:
            previous = warp(previous, estimate_flow(current, previous, flow_size).to(current.dtype))
        energy = difference_energy(current, previous, window)
        noise = estimate_noise(current - previous, energy, noise_cap)
        return temporal_blend(current, previous, energy, noise, strength, low, high), noise


def recursive_filter(frames: torch.Tensor, strength: float, resets: list[bool] | None = None, **options) -> torch.Tensor:
    """Filter a whole sequence (convenience over :class:`TemporalFilter`).

    Args:
        frames: ``(T, C, H, W)`` float in ``[0, 1]``.
        strength: see :class:`TemporalFilter`.
        resets: ``T`` flags, True where a new shot starts (the first frame always does).
        **options: other :class:`TemporalFilter` arguments.

    Returns:
        ``(T, C, H, W)`` filtered frames.
    """
    stage = TemporalFilter(strength, **options)
    resets = list(resets) if resets is not None else [False] * frames.shape[0]
    return torch.cat([stage(frames[t : t + 1], reset=bool(resets[t])) for t in range(frames.shape[0])])


def _check(strength: float, low: float, high: float) -> None:
    if not 0 <= strength < 1:
        raise ValueError(f"strength must be in [0, 1), not {strength}")
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")


class TemporalFilter(nn.Module):
    """Stateful motion-compensated recursive filter: call it on each frame in order.

    Args:
        strength: weight of the previous filtered frame where nothing changed, in ``[0, 1)``;
            0 returns every frame unchanged (and keeps no state).
        motion_compensation: warp the previous filtered frame along a coarse flow first.
        flow_size: longest side of the lumas the flow is estimated on.
        window: odd side of the box the difference energy is averaged over.
        low, high: energy / noise ratios where the weight starts to fall and where it is 0.
        growth: most the noise level may grow from one frame to the next (a factor >= 1).

    Shape:
        - Input: ``(B, C, H, W)`` float in ``[0, 1]`` (``B`` independent streams, usually 1).
        - Output: ``(B, C, H, W)``, same dtype and device (the filter itself works in float32).

    Example:
        >>> stage = TemporalFilter(strength=0.8)
        >>> for t, frame in enumerate(frames):      # each (1, 3, H, W)
        ...     out = stage(frame, reset=cut[t])     # pass reset=True at scene cuts
    """

    def __init__(
        self,
        strength: float = 0.8,
        *,
        motion_compensation: bool = True,
        flow_size: int = FLOW_SIZE,
        window: int = WINDOW,
        low: float = LOW,
        high: float = HIGH,
        growth: float = GROWTH,
    ):
        super().__init__()
        _check(strength, low, high)
        if growth < 1 or window < 1 or window % 2 == 0 or flow_size < 0:
            raise ValueError("need growth >= 1, an odd window >= 1 and flow_size >= 0")
        self.strength, self.motion_compensation, self.flow_size = float(strength), bool(motion_compensation), int(flow_size)
        self.window, self.low, self.high, self.growth = int(window), float(low), float(high), float(growth)
        self.previous: torch.Tensor | None = None
        self.noise: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the previous frame and the noise level: the next frame passes unchanged."""
        self.previous = None
        self.noise = None

    def forward(self, frame: torch.Tensor, reset: bool = False) -> torch.Tensor:
        """Filter the next frame ``(B, C, H, W)``; ``reset`` (a scene cut) restarts from it."""
        if reset or self.strength == 0 or self.previous is None or self.previous.shape != frame.shape:
            self.reset()
            if self.strength:
                self.previous = frame.detach().to(torch.float32, copy=True)  # the caller may modify frame
            return frame
        filtered, self.noise = temporal_filter_step(
            frame.detach().float(), self.previous, self.strength,
            noise_cap=None if self.noise is None else self.noise * self.growth,
            motion_compensation=self.motion_compensation, flow_size=self.flow_size,
            window=self.window, low=self.low, high=self.high,
        )
        self.previous = filtered
        return filtered.to(frame.dtype, copy=True)  # the state stays ours

    def extra_repr(self) -> str:
        return (f"strength={self.strength}, motion_compensation={self.motion_compensation}, flow_size={self.flow_size}, "
                f"window={self.window}, low={self.low}, high={self.high}")
