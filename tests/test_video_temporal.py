"""The temporal filter (video.temporal) on tiny synthetic sequences, and its place in the enhancer
and the CLI. Frames are 48x48 (the enhancer tests: 32x32, 2 fitting steps)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from video.cli import video_command
from video.enhancer import DEFAULTS, WarmStartEnhancer, WarmStartSettings
from video.temporal import (
    TemporalFilter,
    difference_energy,
    estimate_flow,
    recursive_filter,
    temporal_blend,
    temporal_filter_step,
    warp,
)

SIZE = 48


def smooth_scene(seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """A smooth RGB texture ``(1, 3, size, size)`` in about ``[0.2, 0.8]``."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=generator)
    return 0.2 + 0.6 * torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def noisy(frame: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1000 + seed)
    return (frame + sigma * torch.randn(frame.shape, generator=generator)).clamp(0, 1)


def square_at(left: int, size: int = SIZE, side: int = 12) -> torch.Tensor:
    """A bright square on a dark background, its left side at column ``left``."""
    frame = torch.full((1, 3, size, size), 0.1)
    frame[..., 18 : 18 + side, left : left + side] = 0.9
    return frame


def frame_to_frame(frames: list[torch.Tensor]) -> float:
    """Mean squared difference between consecutive frames."""
    return float(np.mean([(b - a).square().mean().item() for a, b in zip(frames, frames[1:])]))


@pytest.mark.parametrize("motion_compensation", [True, False])
def test_static_noisy_sequence_gets_less_frame_to_frame_noise(motion_compensation):
    clean = smooth_scene()
    frames = [noisy(clean, 0.05, t) for t in range(10)]
    stage = TemporalFilter(0.8, motion_compensation=motion_compensation)
    filtered = [stage(frame, reset=t == 0) for t, frame in enumerate(frames)]
    settled_in, settled_out = frames[4:], filtered[4:]
    assert frame_to_frame(settled_out) < 0.2 * frame_to_frame(settled_in)
    error_in = np.mean([(f - clean).square().mean().item() for f in settled_in])
    error_out = np.mean([(f - clean).square().mean().item() for f in settled_out])
    assert error_out < 0.5 * error_in  # closer to the clean scene, not just smoother


@pytest.mark.parametrize("motion_compensation", [True, False])
def test_moving_square_leaves_no_ghost(motion_compensation):
    lefts = [4, 10, 16, 22, 28, 34]  # 6 px per frame
    frames = [noisy(square_at(left), 0.02, t) for t, left in enumerate(lefts)]
    stage = TemporalFilter(0.8, motion_compensation=motion_compensation)
    filtered = [stage(frame, reset=t == 0) for t, frame in enumerate(frames)]
    for t in range(1, len(frames)):
        before, now = square_at(lefts[t - 1]), square_at(lefts[t])
        changed = (before - now).abs() > 0.5  # uncovered background and newly covered background
        change = (before - now)[changed]
        error = (filtered[t] - now)[changed]
        held_back = (error * change).sum() / change.square().sum()  # share of the change not followed
        assert held_back.item() < 0.02, (t, held_back.item())
        assert error.abs().mean().item() < 0.03  # within the noise (sigma 0.02) of the current frame
    # where nothing moved (far background), the noise is still filtered
    far = (slice(None), slice(None), slice(36, 48), slice(None))
    assert frame_to_frame([f[far] for f in filtered[2:]]) < 0.5 * frame_to_frame([f[far] for f in frames[2:]])


def test_reset_at_a_scene_cut_restarts_from_the_new_frame():
    scene_a, scene_b = smooth_scene(0), smooth_scene(1)
    stage = TemporalFilter(0.8)
    for t in range(4):
        stage(noisy(scene_a, 0.05, t))
    first_b = noisy(scene_b, 0.05, 10)
    assert torch.equal(stage(first_b, reset=True), first_b)
    second_b = noisy(scene_b, 0.05, 11)
    expected, _ = temporal_filter_step(second_b, first_b, 0.8)  # blends with scene B only, fresh noise level
    assert torch.allclose(stage(second_b), expected, atol=1e-6)


def test_first_frame_and_size_change_pass_unchanged():
    stage = TemporalFilter(0.8)
    first = noisy(smooth_scene(), 0.05, 0)
    assert torch.equal(stage(first), first)
    resized = noisy(smooth_scene(size=32), 0.05, 1)
    assert torch.equal(stage(resized), resized)


def test_strength_zero_is_identity():
    frames = [noisy(smooth_scene(), 0.05, t) for t in range(4)]
    stage = TemporalFilter(0.0)
    for frame in frames:
        assert stage(frame) is frame
    assert stage.previous is None  # keeps no state
    energy = difference_energy(frames[1], frames[0])
    assert temporal_blend(frames[1], frames[0], energy, 1e-3, 0.0) is frames[1]
    assert torch.equal(recursive_filter(torch.cat(frames), 0.0), torch.cat(frames))


def test_strength_is_checked():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            TemporalFilter(bad)
        with pytest.raises(ValueError):
            WarmStartSettings(temporal_strength=bad)


def test_sequence_function_matches_the_module_and_batches_are_independent():
    frames = torch.cat([noisy(smooth_scene(), 0.05, t) for t in range(5)])
    resets = [True, False, False, True, False]
    stage = TemporalFilter(0.8)
    one_by_one = torch.cat([stage(frames[t : t + 1], reset=resets[t]) for t in range(5)])
    assert torch.allclose(recursive_filter(frames, 0.8, resets), one_by_one)
    # two streams in one batch give what each gives alone
    other = torch.cat([noisy(smooth_scene(3), 0.05, 20 + t) for t in range(5)])
    batched, alone = TemporalFilter(0.8), TemporalFilter(0.8)
    for t in range(5):
        both = batched(torch.cat([frames[t : t + 1], other[t : t + 1]]))
        assert torch.allclose(both[1:], alone(other[t : t + 1]), atol=1e-5)


def test_dtype_kept_and_state_not_aliased_to_the_output():
    stage = TemporalFilter(0.8)
    half = [noisy(smooth_scene(), 0.05, t).to(torch.bfloat16) for t in range(3)]
    outputs = [stage(frame) for frame in half]
    assert all(out.dtype == torch.bfloat16 for out in outputs)
    stage = TemporalFilter(0.8)
    frames = [noisy(smooth_scene(), 0.05, t) for t in range(3)]
    first = stage(frames[0])
    second = stage(frames[1])
    kept = stage.previous.clone()
    second.zero_()
    first.zero_()
    assert torch.equal(stage.previous, kept)


def test_flow_recovers_a_known_shift():
    scene = smooth_scene(2, size=64)
    shifted = warp(scene, torch.full((1, 2, 64, 64), 0.0).index_fill_(1, torch.tensor([0]), 1.5))  # content moves left 1.5 px
    flow = estimate_flow(shifted, scene, reg=1e-4)
    interior = flow[..., 16:48, 16:48]
    assert abs(interior[:, 0].median().item() - 1.5) < 0.2
    assert abs(interior[:, 1].median().item()) < 0.2
    # at reduced resolution (flow_size below the frame size) the flow comes back in full-size pixels
    flow_small = estimate_flow(shifted, scene, size=32, reg=1e-4)
    assert flow_small.shape == (1, 2, 64, 64)
    assert abs(flow_small[..., 16:48, 16:48][:, 0].median().item() - 1.5) < 0.4


# --- in the enhancer and the CLI ------------------------------------------------------------


def dark_frames(count: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 30, (32, 32, 3))
    return [np.clip(base + rng.integers(-4, 5, base.shape), 0, 255).astype(np.float32) / 255 for _ in range(count)]


def test_enhancer_output_is_the_filter_applied_to_the_unfiltered_output():
    """What benchmarks/video_stability.py relies on to filter recorded outputs after the fact."""
    settings = dict(first_iters=2, iters_per_frame=1, fit_size=32)
    frames = dark_frames()
    plain = WarmStartEnhancer(WarmStartSettings(**settings, temporal_strength=0.0), device="cpu")
    unfiltered = [plain.enhance(frame) for frame in frames]
    filtered = WarmStartEnhancer(WarmStartSettings(**settings, temporal_strength=0.8), device="cpu")
    outputs = [filtered.enhance(frame) for frame in frames]
    stack = torch.from_numpy(np.stack(unfiltered)).permute(0, 3, 1, 2)
    expected = recursive_filter(stack, 0.8, [True, False, False, False]).permute(0, 2, 3, 1).numpy()
    assert np.allclose(np.stack(outputs), expected, atol=1e-6)
    assert np.array_equal(outputs[0], unfiltered[0])
    assert not np.allclose(outputs[-1], unfiltered[-1])


def test_enhancer_filter_restarts_at_a_scene_cut():
    settings = dict(first_iters=2, iters_per_frame=1, fit_size=32, scene_cut_threshold=1.3)
    frames = dark_frames(3)
    other = np.zeros_like(frames[0])
    other[:, :16] = 0.8
    sequence = frames + [other]
    with_filter = WarmStartEnhancer(WarmStartSettings(**settings), device="cpu")
    without = WarmStartEnhancer(WarmStartSettings(**settings, temporal_strength=0.0), device="cpu")
    outputs = [(with_filter.enhance(frame), without.enhance(frame)) for frame in sequence]
    assert with_filter.last_report.scene_cut
    assert np.array_equal(*outputs[-1])  # the cut frame is not blended with the previous scene
    assert not np.array_equal(*outputs[-2])


def test_default_setting_and_cli_option_agree():
    from video import cli

    assert DEFAULTS.temporal_strength == cli.DEFAULT_TEMPORAL_STRENGTH > 0
    help_text = CliRunner().invoke(video_command, ["--help"]).output
    assert "--temporal-strength" in help_text
    bad = CliRunner().invoke(video_command, ["in.mp4", "out.mp4", "--temporal-strength", "1"])
    assert bad.exit_code == 2 and "temporal-strength" in bad.output
