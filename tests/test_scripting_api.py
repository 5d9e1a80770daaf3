"""The Python API as scripts use it: arrays of every kind a caller may hold, and the video
enhancer's frame-by-frame and file APIs."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from video import WarmStartEnhancer, WarmStartSettings, enhance_video, iter_enhanced_frames
from zeroig_plugin import CheckpointError, InputError, ZeroIG
from zeroig_plugin.networks import published_init


@pytest.fixture(scope="module")
def dark() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((20, 18, 3)) * 0.15).astype(np.float32)


def _outputs(image) -> list[np.ndarray]:
    model = ZeroIG(mode="faithful", device="cpu")
    model.fit(image, 1)
    return list(model.infer(image))


@pytest.mark.parametrize("dtype", [">f4", ">f8", np.longdouble], ids=["big-endian32", "big-endian64", "longdouble"])
def test_float_arrays_of_any_width_or_byte_order_are_used_as_their_values(dark, dtype):
    expected = _outputs(dark)
    for output, wanted in zip(_outputs(dark.astype(dtype)), expected):
        np.testing.assert_array_equal(output, wanted)


def test_a_read_only_array_is_used_without_a_warning(dark):
    frozen = dark.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs = _outputs(frozen)
    np.testing.assert_array_equal(outputs[1], _outputs(dark)[1])


@pytest.mark.parametrize("image", [None, np.zeros((8, 8, 3), object)], ids=["None", "object"])
def test_what_is_no_float_image_is_an_input_error(image):
    with pytest.raises(InputError, match="expected"):
        ZeroIG(mode="faithful", device="cpu").infer(image)


@pytest.mark.parametrize("scaled", [lambda x: x * 255, lambda x: x - 0.5, lambda x: x + 0.9], ids=["0-255", "negative", "over 1"])
def test_float_values_beyond_rounding_of_0_to_1_are_an_input_error_not_clamped(dark, scaled):
    model = ZeroIG(mode="faithful", device="cpu")
    for run in (lambda image: model.fit(image, 1), model.infer):
        with pytest.raises(InputError, match=r"expected float values in \[0, 1\], found .*: divide 0-255 floats by 255"):
            run(scaled(dark))
    assert model.steps_done == 0


def test_float_values_within_rounding_of_0_to_1_are_clamped(dark):
    nudged = dark.copy()
    nudged[0, 0], nudged[-1, -1] = -0.0005, 1.0005
    clamped = np.clip(nudged, 0, 1)
    for output, wanted in zip(_outputs(nudged), _outputs(clamped)):
        np.testing.assert_array_equal(output, wanted)


def _enhanced_frame(frame: np.ndarray) -> np.ndarray:
    enhancer = WarmStartEnhancer(WarmStartSettings(first_iters=1, fit_size=16), device="cpu")
    return enhancer.enhance(frame)


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_big_endian_video_frames_are_enhanced_as_their_values(dark, dtype):
    frame = dark if dtype == np.float32 else (dark * 65535).astype(np.uint16)
    swapped = frame.astype(frame.dtype.newbyteorder(">"))
    np.testing.assert_array_equal(_enhanced_frame(swapped), _enhanced_frame(frame))


def test_a_read_only_video_frame_is_enhanced_without_a_warning(dark):
    frame = (dark * 255).astype(np.uint8)
    frame.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _enhanced_frame(frame)


@pytest.mark.parametrize("max_frames", [0, -2])
def test_a_frame_limit_below_one_is_refused_not_a_complete_run_of_no_frames(tmp_path, max_frames):
    enhancer = WarmStartEnhancer(WarmStartSettings(first_iters=1, fit_size=16), device="cpu")
    with pytest.raises(ValueError, match="max_frames is a number of frames"):
        enhance_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", enhancer, max_frames=max_frames)
    with pytest.raises(ValueError, match="max_frames is a number of frames"):
        next(iter_enhanced_frames(tmp_path / "missing.mp4", enhancer, max_frames=max_frames))


def test_an_optimizer_state_of_other_networks_is_a_checkpoint_error_before_any_step(dark):
    narrow = ZeroIG(mode="faithful", device="cpu", enhancer_width=8)
    narrow.fit(dark, 1)
    for state, reason in ((narrow.optimizer_state_dict(), "other widths"), ({"state": {}}, "not an Adam state")):
        with pytest.raises(CheckpointError, match=reason):
            ZeroIG(mode="faithful", device="cpu", optimizer_state=state)


def test_weights_given_as_a_dict_are_checked_as_a_file_s_are():
    state = ZeroIG(device="cpu").state_dict()
    with pytest.raises(CheckpointError, match="weights: not a ZERO-IG checkpoint .missing enhance.in_conv.0.weight"):
        ZeroIG(device="cpu", weights={"a": torch.zeros(1)})
    diverged = {**state, "denoise_2.conv1.weight": torch.full_like(state["denoise_2.conv1.weight"], float("nan"))}
    with pytest.raises(CheckpointError, match="weights: holds NaN or infinite weights .*denoise_2.conv1.weight"):
        ZeroIG(device="cpu", weights=diverged)
    with pytest.raises(CheckpointError, match="weights: not a state dict of tensors"):
        ZeroIG(device="cpu", weights={**state, "note": "fitted on one image"})


def test_models_made_in_several_threads_at_once_each_get_their_seed_s_weights():
    expected = {seed: published_init(seed).state_dict() for seed in range(6)}
    made: dict[int, dict] = {}
    barrier = threading.Barrier(6)

    def make(seed: int) -> None:
        barrier.wait()
        made[seed] = published_init(seed).state_dict()

    threads = [threading.Thread(target=make, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed, state in made.items():
        assert all(torch.equal(state[key], expected[seed][key]) for key in state), f"seed {seed}"


def test_a_folder_given_as_weights_is_named_as_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a weights file"):
        ZeroIG(device="cpu", weights=tmp_path)


def test_the_record_of_a_model_applied_without_fitting_does_not_say_it_was_fitted(dark):
    from zeroig_plugin import processing_record

    model = ZeroIG(mode="faithful", device="cpu")
    assert "not fitted" in processing_record(model, "denoise", weights="w.pt")["method"]
    model.fit(dark, 1)
    assert processing_record(model, "denoise")["method"].endswith("fitted to this input alone")


@pytest.mark.parametrize("dtype, peak", [(np.uint8, 255), (np.uint16, 65535), (">u2", 65535)])
def test_8_and_16_bit_arrays_are_taken_as_images_are_read(dtype, peak):
    counts = (np.random.default_rng(1).random((20, 18, 3)) * 0.15 * peak).round()
    for output, wanted in zip(_outputs(counts.astype(dtype)), _outputs((counts / peak).astype(np.float32))):
        np.testing.assert_allclose(output, wanted, atol=1e-6)
    with pytest.raises(InputError, match="got dtype int16 .*imageio.to_float"):
        ZeroIG(device="cpu").infer(counts.astype(np.int16))
