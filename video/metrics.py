"""Temporal stability of an enhanced video: warping error and mean luma flicker.

Warping error (Lai et al., ECCV 2018): optical flow between consecutive *input* frames says where
each pixel moved; the previous *output* frame is warped along it onto the current one, and the
squared difference is averaged over pixels the flow trusts. A method that flickers or shimmers
scores high; a stable one scores near the floor set by flow errors.

The flow is OpenCV Farneback on a brightened guide (each pair of input frames scaled by one gain
to a mean luma of ``GUIDE_MEAN``, gamma-lifted and lightly blurred), so it is the same for every
method compared. Pixels failing the forward-backward check (occluded, or flow unreliable), or
flowing out of the frame, are masked out.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["warping_error", "luma_flicker", "brightened_guide", "farneback_flow", "occlusion_mask", "warp"]

GUIDE_MEAN = 0.4
MAX_GUIDE_GAIN = 50.0
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _as_float(frame: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float ``(H, W, 3)`` -> float32 in ``[0, 1]``."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255
    if frame.dtype == np.uint16:
        return frame.astype(np.float32) / 65535
    return frame.astype(np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def brightened_guide(frame: np.ndarray, gain: float) -> np.ndarray:
    """An input frame ``(H, W, 3)`` -> uint8 ``(H, W)`` luma for flow: ``gain`` applied, gamma 1/2.2,
    5x5 Gaussian blur (dark frames are noisy once brightened)."""
    luma = np.clip(_luma(_as_float(frame)) * gain, 0, 1) ** (1 / 2.2)
    return cv2.GaussianBlur((luma * 255 + 0.5).astype(np.uint8), (5, 5), 0)


def farneback_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Flow ``(H, W, 2)`` (x, y) such that ``source[y, x] ~ target[y + fy, x + fx]``."""
    return cv2.calcOpticalFlowFarneback(source, target, None, **FARNEBACK)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` ``(H, W, C)`` at ``(x + fx, y + fy)`` (bilinear, border replicated)."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: pixels of the current frame whose flow to the previous frame
    (``backward``) is undone by the flow back (``forward``, sampled where it lands), within
    ``0.01 (|b|^2 + |f|^2) + 0.5`` px^2 (Sundaram et al. 2010), and that land inside the frame."""
    height, width = backward.shape[:2]
    forward_there = warp(forward, backward)
    mismatch = np.sum((backward + forward_there) ** 2, axis=-1)
    bound = 0.01 * (np.sum(backward**2, axis=-1) + np.sum(forward_there**2, axis=-1)) + 0.5
    grid_x, grid_y = np.meshgrid(np.arange(width), np.arange(height))
    land_x, land_y = grid_x + backward[..., 0], grid_y + backward[..., 1]
    inside = (land_x >= 0) & (land_x <= width - 1) & (land_y >= 0) & (land_y <= height - 1)
    return (mismatch <= bound) & inside


def warping_error(outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> float:
    """Mean over consecutive pairs of the masked mean squared difference (RGB in ``[0, 1]``)
    between output ``t`` and output ``t - 1`` warped onto it.

    Args:
        outputs: enhanced frames ``(H, W, 3)`` (uint8 or float in ``[0, 1]``).
        inputs: the input frames they came from, same sizes; the flow is computed on these.

    Returns:
        The warping error (0 is perfectly stable); ``nan`` for fewer than two frames.
    """
    if len(outputs) != len(inputs):
        raise ValueError("outputs and inputs must have the same number of frames")
    errors = []
    for t in range(1, len(outputs)):
        gain = min(MAX_GUIDE_GAIN, GUIDE_MEAN / max(float(_luma(_as_float(inputs[t - 1])).mean()), 1e-4))
        previous, current = brightened_guide(inputs[t - 1], gain), brightened_guide(inputs[t], gain)
        backward = farneback_flow(current, previous)
        forward = farneback_flow(previous, current)
        mask = occlusion_mask(backward, forward)
        if not mask.any():
            continue
        warped = warp(_as_float(outputs[t - 1]), backward)
        squared = np.mean((_as_float(outputs[t]) - warped) ** 2, axis=-1)
        errors.append(float(squared[mask].mean()))
    return float(np.mean(errors)) if errors else float("nan")


def luma_flicker(outputs: Sequence[np.ndarray]) -> float:
    """Mean absolute change of mean luma between consecutive frames, in ``[0, 1]`` units."""
    means = [float(_luma(_as_float(frame)).mean()) for frame in outputs]
    return float(np.mean(np.abs(np.diff(means)))) if len(means) > 1 else float("nan")
