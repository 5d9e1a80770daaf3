"""zeroig_plugin.classical: total variation calibrated on the image, ``linear`` averaged with it and
``denoise`` finished by it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroig_plugin import ZeroIG
from zeroig_plugin.classical import FINISH_STRIDE, STRENGTHS, calibrated_tv


def _noisy_field(shape: tuple[int, ...], seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A smooth field with two bright blobs, ``shape`` ``(H, W)`` or ``(H, W, 3)``, and a noisy copy."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / shape[0]
    clean = 0.05 + 0.03 * np.sin(5 * xx) + 0.3 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.4) ** 2) / 0.005)
    clean = (clean if len(shape) == 2 else np.repeat(clean[..., None], 3, -1) * [1.0, 0.8, 0.6]).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 0.02, clean.shape).astype(np.float32)
    return clean, np.clip(clean + noise, 0, 1)


@pytest.mark.parametrize("shape", [(64, 64), (64, 64, 3)])
def test_calibrated_tv_removes_most_of_the_noise_with_a_weight_inside_the_range(shape):
    clean, noisy = _noisy_field(shape)
    denoised, strength = calibrated_tv(noisy)
    assert denoised.shape == noisy.shape and denoised.dtype == np.float32
    assert np.mean((denoised - clean) ** 2) < 0.3 * np.mean((noisy - clean) ** 2)
    assert STRENGTHS[0] < strength < STRENGTHS[-1]


@pytest.mark.parametrize("shape", [(192, 192), (192, 192, 3)])
def test_sub_images_a_few_pixels_apart_calibrate_for_noise_shared_between_neighbours(shape):
    from scipy import ndimage

    clean, noisy = _noisy_field(shape)
    noise = noisy - clean
    shared = ndimage.uniform_filter(noise, size=(2, 2, 1)[: len(shape)])  # each pixel's noise shared with its neighbours
    correlated = np.clip(clean + shared * (noise.std() / shared.std()), 0, 1).astype(np.float32)

    def error_left(image: np.ndarray, stride: int) -> float:
        return float(np.mean((calibrated_tv(image, stride=stride)[0] - clean) ** 2) / np.mean((image - clean) ** 2))

    assert error_left(correlated, 1) > 0.7  # one-pixel masks: the neighbours predict the masked noise
    assert error_left(correlated, FINISH_STRIDE) < 0.3
    assert error_left(noisy, FINISH_STRIDE) < 0.1  # and independent noise is still taken out
    small = correlated[:96, :96]  # sub-images under MIN_SUB_IMAGE_SIDE: calibrated whole
    np.testing.assert_array_equal(calibrated_tv(small, stride=FINISH_STRIDE)[0], calibrated_tv(small)[0])


def test_an_image_without_noise_is_left_as_it_is():
    cells = np.full((32, 32), 0.02, np.float32)
    cells[4:10, 4:10] = 0.6
    denoised, strength = calibrated_tv(cells)
    np.testing.assert_array_equal(denoised, cells)
    assert strength == 0.0


def test_linear_is_averaged_with_tv_and_the_other_outputs_are_not_changed():
    _, noisy = _noisy_field((48, 48))
    model = ZeroIG(device="cpu", brightness="headroom", exposure_gain=False, select_for="linear")
    model.fit(noisy, 3)
    plain = model.infer(noisy, ensemble=1)
    model.average_with_tv = True
    averaged = model.infer(noisy, ensemble=1)
    tv, _ = calibrated_tv(noisy)
    np.testing.assert_allclose(averaged.linear, (plain.linear + tv) / 2, atol=1e-6)
    np.testing.assert_array_equal(averaged.denoise, plain.denoise)
    np.testing.assert_array_equal(averaged.enhance, plain.enhance)


def test_denoise_is_finished_with_tv_of_itself_and_the_other_outputs_are_not_changed():
    clean, noisy = _noisy_field((48, 48, 3))
    model = ZeroIG(device="cpu")
    model.fit(noisy, 3)
    plain = model.infer(noisy, ensemble=1)
    model.finish_with_tv = True
    finished = model.infer(noisy, ensemble=1)
    np.testing.assert_allclose(finished.denoise, calibrated_tv(plain.denoise, stride=FINISH_STRIDE)[0], atol=1e-6)
    assert np.mean(np.abs(np.diff(finished.denoise, axis=1))) < 0.5 * np.mean(np.abs(np.diff(plain.denoise, axis=1)))
    np.testing.assert_array_equal(finished.enhance, plain.enhance)
    np.testing.assert_array_equal(finished.linear, plain.linear)
    assert model._finish_strength > 0
    model.reset()
    assert model._finish_strength is None


def test_colour_is_averaged_per_channel_and_flat_borders_stay_as_they_came_in():
    _, noisy = _noisy_field((40, 40, 3))
    framed = np.zeros((48, 40, 3), np.float32)
    framed[4:44] = noisy  # zero fill above and below, as around a registered image
    model = ZeroIG(device="cpu", average_with_tv=True)
    model.fit(framed, 2)
    linear = model.infer(framed, ensemble=1).linear
    assert not linear[:4].any() and not linear[44:].any()
    assert not np.allclose(linear[4:44, :, 0], linear[4:44, :, 2])  # the channels were not merged


def test_the_average_is_recorded_for_the_outputs_it_feeds_and_the_finishing_for_denoise_only():
    """The average is ``linear``, and the global tone brings ``denoise`` up from it; without the
    exposure gain ``denoise`` is the illumination map's and the average leaves it alone."""
    from zeroig_plugin import processing_record

    model = ZeroIG(device="cpu", average_with_tv=True)
    assert processing_record(model, "linear")["averaged_with_tv"] is True
    assert processing_record(model, "denoise")["averaged_with_tv"] is True
    assert processing_record(model, "enhance")["averaged_with_tv"] is False
    unbrightened = ZeroIG(device="cpu", average_with_tv=True, exposure_gain=False)
    assert processing_record(unbrightened, "denoise")["averaged_with_tv"] is False
    assert processing_record(ZeroIG(device="cpu"), "linear")["averaged_with_tv"] is False
    finishing = ZeroIG(device="cpu", finish_with_tv=True)
    assert processing_record(finishing, "denoise")["finished_with_tv"] is True
    assert processing_record(finishing, "enhance")["finished_with_tv"] is False


def test_a_gray_image_is_denoised_as_one_channel():
    from zeroig_plugin.classical import average_with_tv

    _, noisy = _noisy_field((32, 32))
    image = torch.from_numpy(noisy)[None, None].expand(1, 3, 32, 32)
    averaged, _ = average_with_tv(torch.zeros_like(image), image)
    assert torch.equal(averaged[:, 0], averaged[:, 1]) and torch.equal(averaged[:, 1], averaged[:, 2])
    np.testing.assert_allclose(averaged[0, 0].numpy(), calibrated_tv(noisy)[0] / 2, atol=1e-6)


def test_the_strength_is_calibrated_on_the_first_image_and_kept_until_a_reset(monkeypatch):
    import zeroig_plugin.classical as classical

    calls = []
    calibrate = classical.calibrated
    monkeypatch.setattr(classical, "calibrated", lambda *args, **kwargs: calls.append(1) or calibrate(*args, **kwargs))
    _, first = _noisy_field((32, 32), seed=5)
    _, second = _noisy_field((32, 32), seed=6)
    model = ZeroIG(device="cpu", average_with_tv=True)
    model.fit(first, 1)
    model.infer(first, ensemble=1)
    strength = model._tv_strength
    assert len(calls) == 1 and strength > 0
    averaged = model.infer(second, ensemble=1).linear
    assert len(calls) == 1  # the next plane reuses the strength, scaled by its own noise level
    model.average_with_tv = False
    plain = model.infer(second, ensemble=1).linear
    tv, _ = calibrated_tv(second, model._tv_strength)
    np.testing.assert_allclose(averaged, (plain + tv) / 2, atol=1e-6)
    model.average_with_tv = True
    model.infer(np.full((32, 32), 0.1, np.float32), ensemble=1)  # a blank plane has no noise to scale by
    assert model._tv_strength == strength and len(calls) == 1
    model.reset()
    assert model._tv_strength is None


def test_a_large_image_is_calibrated_on_its_centre_and_denoised_whole(monkeypatch):
    import zeroig_plugin.classical as classical

    monkeypatch.setattr(classical, "CALIBRATION_SIDE", 48)
    seen = []
    calibrate = classical.calibrated
    monkeypatch.setattr(classical, "calibrated", lambda denoise, image, *args, **kwargs: seen.append(image.shape) or calibrate(denoise, image, *args, **kwargs))
    clean, noisy = _noisy_field((96, 64))
    denoised, strength = classical.calibrated_tv(noisy)
    assert seen == [(48, 48)]
    assert denoised.shape == noisy.shape
    np.testing.assert_allclose(denoised, classical.calibrated_tv(noisy, strength)[0])
    assert np.mean((denoised - clean) ** 2) < 0.3 * np.mean((noisy - clean) ** 2)
