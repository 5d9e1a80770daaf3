"""Temporal-stability metrics and the scene-cut statistic on synthetic frames (no fitting)."""
from __future__ import annotations

import numpy as np
import torch

from video.metrics import luma_flicker, occlusion_mask, warping_error
from video.scenecut import SceneCutDetector


def moving_texture(frames: int = 4, shift: int = 2, size: int = 64, brightness: float = 0.05) -> list[np.ndarray]:
    """A smooth random texture sliding right by ``shift`` px per frame, dark like low-light input."""
    rng = np.random.default_rng(0)
    base = rng.random((size // 8, (size + shift * frames) // 8, 3)).astype(np.float32)
    big = np.kron(base, np.ones((8, 8, 1), np.float32))
    return [big[:size, shift * (frames - t) : shift * (frames - t) + size] * brightness for t in range(frames)]


def test_stable_output_scores_near_zero_and_flicker_scores_high():
    inputs = moving_texture()
    stable = [np.clip(frame * 10, 0, 1) for frame in inputs]
    flickering = [np.clip(frame * (10 if t % 2 else 14), 0, 1) for t, frame in enumerate(inputs)]
    assert warping_error(stable, inputs) < 1e-3
    assert warping_error(flickering, inputs) > 10 * warping_error(stable, inputs)
    assert luma_flicker(stable) < 1e-3 < luma_flicker(flickering)


def test_uint8_and_float_frames_agree():
    inputs = moving_texture()
    outputs = [np.clip(frame * 10, 0, 1) for frame in inputs]
    as_uint8 = [(frame * 255 + 0.5).astype(np.uint8) for frame in outputs]
    assert abs(warping_error(as_uint8, inputs) - warping_error(outputs, inputs)) < 1e-4


def test_occlusion_mask_rejects_inconsistent_flow():
    backward = np.zeros((16, 16, 2), np.float32)
    backward[..., 0] = 2.0
    consistent = -backward
    assert occlusion_mask(backward, consistent)[:, :-2].all()
    assert not occlusion_mask(backward, np.zeros_like(backward))[:, :-2].any()


def test_scene_cut_detector_ignores_darkness_and_noise_but_sees_cuts():
    rng = np.random.default_rng(0)
    scene = torch.from_numpy(rng.random((1, 3, 64, 64), dtype=np.float32))
    detector = SceneCutDetector(threshold=1.3)
    assert detector.update(scene * 0.02) == (False, 0.0)
    noisy_same = scene * 0.02 + torch.from_numpy(rng.normal(0, 0.002, (1, 3, 64, 64)).astype(np.float32))
    assert not detector.update(noisy_same.clamp(0, 1))[0]
    other = torch.zeros(1, 3, 64, 64)
    other[..., :32] = 0.5
    assert detector.update(other)[0]
    assert not SceneCutDetector(threshold=None).update(scene)[0]
