"""The `zeroig enhance` command on tiny images: formats, outputs, exit codes and bad input."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zeroig_plugin import ZeroIG
from zeroig_plugin.cli import cli

STEPS = "2"


def run(*args: str):
    return CliRunner().invoke(cli, ["enhance", *args, "--iters", STEPS, "--device", "cpu"])


def _dark(height: int = 20, width: int = 24, channels: int = 3, peak: int = 60, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(height * 100 + width)
    return rng.integers(0, peak, (height, width, channels)).astype(dtype).squeeze()


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_rgb_8bit_writes_both_outputs_as_8bit_png(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "dark.png")
    result = run(str(tmp_path / "dark.png"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    for kind in ("enhance", "denoise"):
        written = Image.open(tmp_path / "out" / f"dark_{kind}.png")
        assert written.mode == "RGB" and written.size == (24, 20)
    brighter = np.asarray(Image.open(tmp_path / "out" / "dark_enhance.png")).mean()
    assert brighter > _dark().mean()


def test_linear_output_alone_stays_at_the_inputs_level(tmp_path):
    Image.fromarray(_dark(peak=40)).save(tmp_path / "cells.png")
    result = run(str(tmp_path / "cells.png"), "-o", str(tmp_path / "out"), "--output", "linear")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cells_linear.png"]
    linear = np.asarray(Image.open(tmp_path / "out" / "cells_linear.png")).astype(float)
    assert linear.shape == (20, 24, 3) and linear.mean() == pytest.approx(_dark(peak=40).mean(), rel=0.4)


def test_16bit_input_gives_16bit_output(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "deep.png"), _dark(peak=6000, dtype=np.uint16))
    assert run(str(tmp_path / "deep.png"), "-o", str(tmp_path)).exit_code == 0
    written = cv2.imread(str(tmp_path / "deep_denoise.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == (20, 24, 3)


def test_gray_stays_gray_and_odd_sizes_keep_their_size(tmp_path):
    Image.fromarray(_dark(17, 13, 1)).save(tmp_path / "g.png")
    assert run(str(tmp_path / "g.png"), "-o", str(tmp_path)).exit_code == 0
    written = Image.open(tmp_path / "g_enhance.png")
    assert written.mode == "L" and written.size == (13, 17)


def test_rgba_alpha_passes_through_untouched(tmp_path):
    rgba = _dark(channels=4)
    rgba[..., 3] = np.arange(rgba[..., 3].size).reshape(rgba.shape[:2]) % 256
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert run(str(tmp_path / "a.png"), "-o", str(tmp_path)).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a_denoise.png"))[..., 3], rgba[..., 3])


def test_colour_profile_and_exif_of_a_photo_are_embedded_in_its_outputs(tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0110], exif[0x0112] = "Night 1", 3  # camera model, upside down
    Image.fromarray(_dark()).save(tmp_path / "phone.jpg", icc_profile=profile, exif=exif)
    assert run(str(tmp_path / "phone.jpg"), "-o", str(tmp_path / "out")).exit_code == 0
    for kind in ("enhance", "denoise"):
        with Image.open(tmp_path / "out" / f"phone_{kind}.png") as written:
            assert written.info.get("icc_profile") == profile
            assert written.getexif()[0x0110] == "Night 1" and written.getexif()[0x0112] == 1


def test_folder_input_output_choice_loss_log_and_weights(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.fromarray(_dark()).save(folder / name)
    (folder / "notes.txt").write_text("ignored")
    result = run(str(folder), "-o", str(tmp_path / "out"), "--output", "denoise",
                 "--loss-log", str(tmp_path / "{stem}.json"), "--save-weights", str(tmp_path / "{stem}.pt"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_denoise.png", "b_denoise.png"]
    assert len(json.loads((tmp_path / "a.json").read_text())) == int(STEPS)
    weights = torch.load(tmp_path / "b.pt", weights_only=True)
    assert "enhance.in_conv.0.weight" in weights and "denoise_2.conv3.bias" in weights


def test_saved_weights_restart_the_fit(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    assert run(str(tmp_path / "x.png"), "-o", str(tmp_path / "a"), "--save-weights", str(tmp_path / "w.pt")).exit_code == 0
    result = CliRunner().invoke(cli, ["enhance", str(tmp_path / "x.png"), "-o", str(tmp_path / "b"),
                                      "--weights", str(tmp_path / "w.pt"), "--iters", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    first = np.asarray(Image.open(tmp_path / "a" / "x_denoise.png"))
    again = np.asarray(Image.open(tmp_path / "b" / "x_denoise.png"))
    assert np.abs(first.astype(int) - again).max() <= 1


def test_all_black_and_one_pixel_images_give_finite_outputs(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "black.png")
    Image.fromarray(np.full((1, 1, 3), 40, np.uint8)).save(tmp_path / "dot.png")
    result = run(str(tmp_path / "black.png"), str(tmp_path / "dot.png"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "dot_enhance.png").size == (1, 1)
    assert np.isfinite(np.asarray(Image.open(tmp_path / "out" / "black_denoise.png"), float)).all()


def test_mix_of_good_and_bad_inputs_processes_the_good_and_exits_1(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    result = run(str(tmp_path / "missing.png"), str(tmp_path / "empty.png"), str(tmp_path / "text.png"),
                 str(tmp_path / "cut.png"), str(tmp_path / "good.png"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    _no_traceback(result)
    for name, reason in [("missing.png", "no such file"), ("empty.png", "empty file"), ("text.png", "not an image"),
                         ("cut.png", "cannot decode")]:
        assert any(name in line and reason in line for line in result.output.splitlines()), (name, result.output)
    assert (tmp_path / "out" / "good_denoise.png").exists()
    assert result.output.splitlines()[-1] == "zeroig: 1 image(s) done, 4 failed (see the errors above)"


def test_existing_output_is_an_error_and_untouched_without_overwrite(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    (tmp_path / "x_enhance.png").write_bytes(b"keep me")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path))
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert (tmp_path / "x_enhance.png").read_bytes() == b"keep me"
    assert run(str(tmp_path / "x.png"), "-o", str(tmp_path), "--overwrite").exit_code == 0
    assert Image.open(tmp_path / "x_enhance.png").size == (24, 20)


def test_an_input_is_never_overwritten(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    Image.fromarray(_dark()).save(tmp_path / "x_enhance.png")
    before = (tmp_path / "x_enhance.png").read_bytes()
    result = run(str(tmp_path / "x.png"), str(tmp_path / "x_enhance.png"), "-o", str(tmp_path), "--overwrite")
    assert result.exit_code == 1 and "would overwrite an input" in result.output
    assert (tmp_path / "x_enhance.png").read_bytes() == before


def test_side_files_that_would_be_an_output_or_each_other_are_a_usage_error_before_any_fit(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    out = tmp_path / "out"
    for extra in (["--loss-log", str(out / "x_denoise.png")],
                  ["--loss-log", str(out / "same.bin"), "--save-weights", str(out / "same.bin")]):
        result = run(str(tmp_path / "x.png"), "-o", str(out), *extra)
        assert result.exit_code == 2 and "would both be" in result.output, result.output
        assert not out.exists()


def test_side_files_go_into_folders_made_for_them(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "--loss-log", str(tmp_path / "logs" / "x.json"),
                 "--save-weights", str(tmp_path / "weights" / "x.pt"))
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "logs" / "x.json").read_text())) == int(STEPS)
    assert (tmp_path / "weights" / "x.pt").stat().st_size > 0


def test_an_output_name_taken_by_a_folder_fails_that_image_before_its_fit(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    (tmp_path / "out" / "x_denoise.png").mkdir(parents=True)
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "--overwrite")
    assert result.exit_code == 1 and "x_denoise.png is a folder" in result.output
    assert not (tmp_path / "out" / "x_enhance.png").exists()


def test_one_image_given_twice_is_enhanced_once(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    result = run(str(tmp_path / "x.png"), str(tmp_path), str(tmp_path / "x.png"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "1 image(s)" in result.output and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x_denoise.png", "x_enhance.png"]


def _without_root_file_access() -> list[str]:
    """A command prefix under which file permissions hold (root reads every file otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv, which could drop root's file access")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unreadable_input_fails_alone(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "locked.png")
    Image.fromarray(_dark()).save(tmp_path / "ok.png")
    (tmp_path / "locked.png").chmod(0)
    command = [*_without_root_file_access(), sys.executable, "-m", "zeroig_plugin.cli", "enhance", "--iters", STEPS,
               "--device", "cpu", "--ensemble", "1", str(tmp_path / "locked.png"), str(tmp_path / "ok.png"),
               "-o", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert f"{tmp_path / 'locked.png'}: Permission denied" in result.stderr
    assert (tmp_path / "out" / "ok_denoise.png").exists()


def test_sigterm_stops_like_ctrl_c_keeping_the_images_done_and_leaving_nothing_partial(tmp_path, monkeypatch):
    import signal

    for name in ("a.png", "b.png"):
        Image.fromarray(_dark()).save(tmp_path / name)
    real_fit = ZeroIG.fit
    fits = []

    def fit_then_sigterm(self, *args, **kwargs):
        fits.append(1)
        if len(fits) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_fit(self, *args, **kwargs)

    def unhandled(signal_number, frame):  # what the test sees if the command leaves SIGTERM to it
        raise LookupError("SIGTERM reached the test's handler")

    monkeypatch.setattr(ZeroIG, "fit", fit_then_sigterm)
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        result = run(str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out"), "--ensemble", "1")
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the command's handler is gone again
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert "interrupted after 1 of 2 image(s)" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_denoise.png", "a_enhance.png"]


def test_output_folder_that_is_a_file_is_a_usage_error(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    (tmp_path / "file").write_text("")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "file"))
    assert result.exit_code == 2 and "file" in result.output


def test_output_folder_that_cannot_be_created_is_reported(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    (tmp_path / "file").write_text("")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "file" / "sub"))
    assert result.exit_code != 0 and "cannot create output folder" in result.output
    _no_traceback(result)


def test_non_checkpoint_and_wrong_shape_weights_are_named_errors(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path), "--weights", str(tmp_path / "junk.pt"))
    assert result.exit_code == 2 and "junk.pt" in result.output and "not a PyTorch checkpoint" in result.output
    from zeroig_plugin.networks import ZeroIGNet

    state = ZeroIGNet().state_dict()
    state["denoise_1.conv3.weight"] = torch.zeros(3, 48, 3, 3)
    torch.save(state, tmp_path / "shape.pt")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path), "--weights", str(tmp_path / "shape.pt"))
    assert result.exit_code == 2 and "shape.pt" in result.output and "denoise_1.conv3.weight" in result.output
    _no_traceback(result)


def test_usage_errors_exit_2(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    inference_only = CliRunner().invoke(cli, ["enhance", str(tmp_path / "x.png"), "-o", str(tmp_path), "--iters", "0"])
    assert inference_only.exit_code == 2 and "--weights" in inference_only.output
    assert run(str(tmp_path / "x.png"), "-o", str(tmp_path), "--mode", "nonsense").exit_code == 2
    bad_device = CliRunner().invoke(cli, ["enhance", str(tmp_path / "x.png"), "-o", str(tmp_path), "--device", "tpu"])
    assert bad_device.exit_code == 2 and "tpu" in bad_device.output


def test_help_is_instant_because_torch_is_not_imported():
    probe = ("import sys; from click.testing import CliRunner; from zeroig_plugin.cli import cli; "
             "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
             "assert 'enhance' in r.output and 'video' in r.output; print(sorted({'torch', 'av', 'napari'} & set(sys.modules)))")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_fit_crop_fits_on_crops_and_writes_the_whole_image(tmp_path):
    Image.fromarray(_dark(40, 48)).save(tmp_path / "x.png")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path), "--fit-crop", "16", "--loss-log", str(tmp_path / "l.json"))
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "x_denoise.png").size == (48, 40)
    whole = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "whole"), "--loss-log", str(tmp_path / "w.json"))
    assert whole.exit_code == 0
    assert json.loads((tmp_path / "l.json").read_text())[0] != json.loads((tmp_path / "w.json").read_text())[0]


def test_images_too_large_for_whole_image_steps_are_fitted_on_crops_with_a_note(tmp_path, monkeypatch):
    from zeroig_plugin import cli as cli_module, sizing

    monkeypatch.setattr(sizing, "memory_budget", lambda device: sizing.whole_image_fit_bytes(32, 32, device))
    monkeypatch.setattr(cli_module, "LARGE_FOR_CPU", 32 * 32)
    Image.fromarray(_dark(40, 48)).save(tmp_path / "x.png")
    logs = {}
    for fit_crop in ("auto", "16", "off"):
        log = tmp_path / f"{fit_crop}.json"
        result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / fit_crop), "--fit-crop", fit_crop, "--loss-log", str(log))
        assert result.exit_code == 0, result.output
        logs[fit_crop] = (json.loads(log.read_text()), result.output)
    assert "x.png is 48x40: each step fits two random 16x16 crops" in logs["auto"][1]
    assert logs["auto"][0] == logs["16"][0] != logs["off"][0]
    assert "crops" not in logs["16"][1], "a crop side the user chose needs no note"
    assert "whole-image fitting on a CPU takes long" in logs["off"][1]
    for bad in ("banana", "8"):
        rejected = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "bad"), "--fit-crop", bad)
        assert rejected.exit_code == 2 and "--fit-crop" in rejected.output
    framed = np.zeros((40, 48, 3), np.uint8)
    framed[6:34, 9:39] = _dark(28, 30)  # a picture of 840 pixels in black bars: within the budget
    Image.fromarray(framed).save(tmp_path / "framed.png")
    result = run(str(tmp_path / "framed.png"), "-o", str(tmp_path / "framed"))
    assert result.exit_code == 0 and "crops" not in result.output, result.output


def test_out_of_device_memory_is_one_line_with_what_bounds_the_memory(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(ZeroIG, "fit", out_of_memory)
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "out"))
    _no_traceback(result)
    assert result.exit_code == 1
    assert "x.png: CUDA out of memory. Tried to allocate 2.00 GiB (" in result.output and "--fit-crop" in result.output
    assert "more detail" not in result.output


def test_brightness_option_reaches_the_fit_and_is_checked(tmp_path):
    from zeroig_plugin import HEADROOM_BRIGHTNESS, MAX_BRIGHTNESS, cli as cli_module

    assert cli_module.MAX_BRIGHTNESS == MAX_BRIGHTNESS and cli_module.HEADROOM_BRIGHTNESS == HEADROOM_BRIGHTNESS
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    logs = {}
    for brightness in (None, "0.25"):
        log = tmp_path / f"{brightness}.json"
        extra = ["--brightness", brightness] if brightness else []
        result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / str(brightness)), "--loss-log", str(log), *extra)
        assert result.exit_code == 0, result.output
        logs[brightness] = json.loads(log.read_text())
    assert logs[None][0] != logs["0.25"][0]  # the exposure terms aim elsewhere from the first step
    too_bright = run(str(tmp_path / "x.png"), "-o", str(tmp_path / "b"), "--brightness", "0.9")
    assert too_bright.exit_code == 2 and "--brightness" in too_bright.output
    weights = tmp_path / "w.pt"
    ZeroIG(device="cpu").save(weights)
    def inference_only(mode: str, out: str):
        return CliRunner().invoke(cli, ["enhance", str(tmp_path / "x.png"), "-o", str(tmp_path / out), "--iters", "0",
                                        "--weights", str(weights), "--brightness", "0.3", "--mode", mode, "--device", "cpu"])

    assert inference_only("faithful", "c").exit_code == 2  # only the fit sets the level there
    assert inference_only("default", "d").exit_code == 0  # the improved readout's gain sets it
    level = np.asarray(Image.open(tmp_path / "d" / "x_denoise.png"), np.float64) / 255 @ [0.299, 0.587, 0.114]
    assert level.mean() == pytest.approx(0.3, abs=0.01)


def test_exposure_gain_flag_switches_the_fit_target_and_the_inference_only_check(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "x.png")
    logs = {}
    for flag in ("--exposure-gain", "--no-exposure-gain"):
        log = tmp_path / f"{flag}.json"
        result = run(str(tmp_path / "x.png"), "-o", str(tmp_path / flag), "--loss-log", str(log), flag)
        assert result.exit_code == 0, result.output
        logs[flag] = json.loads(log.read_text())
    assert logs["--exposure-gain"][0] != logs["--no-exposure-gain"][0]  # the fit aims at 0.35 or at 0.5
    weights = tmp_path / "w.pt"
    ZeroIG(device="cpu").save(weights)
    inference_only = CliRunner().invoke(cli, [
        "enhance", str(tmp_path / "x.png"), "-o", str(tmp_path / "i"), "--iters", "0", "--weights", str(weights),
        "--brightness", "0.3", "--no-exposure-gain", "--device", "cpu"])
    assert inference_only.exit_code == 2 and "only the fit sets the brightness" in inference_only.output


def test_acceleration_choices_are_the_engine_presets():
    from zeroig_plugin import cli as cli_module
    from zeroig_plugin.acceleration import PRESETS

    assert set(cli_module.ACCELERATIONS) == set(PRESETS)


def test_acceleration_fallbacks_are_reported_once(tmp_path):
    for index in range(2):
        Image.fromarray(_dark()).save(tmp_path / f"x{index}.png")
    result = run(str(tmp_path / "x0.png"), str(tmp_path / "x1.png"), "-o", str(tmp_path / "out"), "--acceleration", "max")
    assert result.exit_code == 0, result.output
    assert result.output.count("--acceleration max:") == 1 and "CUDA graphs need a CUDA device" in result.output
    plain = run(str(tmp_path / "x0.png"), "-o", str(tmp_path / "plain"))
    assert plain.exit_code == 0 and "--acceleration" not in plain.output


def test_tiff_stack_is_enhanced_plane_by_plane_into_a_stack_of_its_layout(tmp_path):
    import tifffile

    rng = np.random.default_rng(5)
    planes = rng.integers(0, 3000, (3, 2, 16, 20)).astype(np.uint16)  # ZCYX, dim 16-bit
    planes[:, 1] //= 4  # the second channel dimmer still
    tifffile.imwrite(tmp_path / "cells.tif", planes, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "ZCYX", "spacing": 0.5, "unit": "um"})
    tifffile.imwrite(tmp_path / "first_c1.tif", planes[0, 1])
    result = run(str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out"), "--ensemble", "1", "--iters-per-plane", "1",
                 "--loss-log", str(tmp_path / "losses.json"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cells_denoise.tif", "cells_enhance.tif"]
    with tifffile.TiffFile(tmp_path / "out" / "cells_denoise.tif") as tiff:
        denoised = tiff.asarray()
        assert tiff.series[0].axes == "ZCYX" and tiff.imagej_metadata["spacing"] == 0.5
        assert tiff.pages[0].tags["XResolution"].value == (2, 1)
    assert denoised.dtype == np.uint16 and denoised.shape == planes.shape
    assert (denoised.reshape(6, -1).mean(1) > planes.reshape(6, -1).mean(1)).all()
    # each channel starts a fresh fit: its first plane's linear output is exactly what that plane alone gives
    for name, path in (("stack", "cells.tif"), ("alone", "first_c1.tif")):
        both = run(str(tmp_path / path), "-o", str(tmp_path / name), "--ensemble", "1", "--output", "linear", "--iters-per-plane", "1")
        assert both.exit_code == 0, both.output
    stack_linear, single = (tifffile.imread(tmp_path / name / f"{stem}_linear.tif") for name, stem in (("stack", "cells"), ("alone", "first_c1")))
    assert np.abs(single.astype(int) - stack_linear[0, 1]).max() <= 1
    # later planes continue the channel's fit for --iters-per-plane steps
    assert [len(plane) for plane in json.loads((tmp_path / "losses.json").read_text())] == [2, 1, 1, 2, 1, 1]


def test_tiff_stack_planes_are_brought_up_by_one_gain_per_channel(tmp_path):
    import tifffile
    import torch

    from zeroig_plugin.improved import apply_gain

    bright = np.random.default_rng(9).integers(2000, 6000, (20, 20))
    planes = np.stack([np.stack([bright // 3, bright]), np.stack([bright, bright // 2])]).astype(np.uint16)  # ZCYX
    tifffile.imwrite(tmp_path / "cells.tif", planes, imagej=True, metadata={"axes": "ZCYX"})
    result = run(str(tmp_path / "cells.tif"), "-o", str(tmp_path), "--ensemble", "1", "--iters", "2", "--iters-per-plane", "1",
                 "--brightness", "0.3")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "cells_enhance.tif") as tiff:
        enhanced, gains = tiff.asarray(), json.loads(tiff.imagej_metadata["Info"])["stack_gain"]
    assert len(gains) == 2 and gains[0] < gains[1]  # channel 1's brightest plane is dimmer than channel 0's
    for channel, gain in enumerate(gains):  # every plane of a channel: its input brought up by the channel's gain
        expected = apply_gain(torch.from_numpy(planes[:, channel] / 65535.0).float(), torch.tensor(gain), linear_light=True)
        np.testing.assert_allclose(enhanced[:, channel] / 65535.0, expected.numpy(), atol=2 / 65535)
    denoised = tifffile.imread(tmp_path / "cells_denoise.tif").reshape(2, 2, -1).mean(-1) / 65535.0
    assert denoised[1, 0] == pytest.approx(0.3, abs=0.01) and denoised[0, 0] < 0.6 * denoised[1, 0]  # planes keep their order


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int32])
def test_tiff_stack_keeps_its_dtype_and_alpha(tmp_path, dtype):
    import tifffile

    rng = np.random.default_rng(6)
    planes = rng.integers(0, 50, (2, 12, 14, 4)).astype(np.uint8)  # two RGBA planes
    planes[..., 3] = rng.integers(0, 256, (2, 12, 14))
    stored = {np.uint8: planes, np.float32: planes.astype(np.float32) / 255, np.int32: planes.astype(np.int32) * 3000}[dtype]
    if dtype == np.int32:
        stored[0, 0, 0, 0] = 3_000_000  # counts beyond 16 bits, dim next to their peak
    tifffile.imwrite(tmp_path / "rgba.tif", stored, photometric="rgb", extrasamples=["unassalpha"])
    result = run(str(tmp_path / "rgba.tif"), "-o", str(tmp_path), "--ensemble", "1", "--output", "enhance")
    assert result.exit_code == 0, result.output
    written = tifffile.imread(tmp_path / "rgba_enhance.tif")
    assert written.dtype == dtype and written.shape == planes.shape
    assert np.array_equal(written[..., 3], stored[..., 3]) and written[..., :3].mean() > stored[..., :3].mean()


def test_float_stack_of_counts_comes_back_on_its_own_scale(tmp_path):
    import tifffile

    counts = np.random.default_rng(7).poisson(300.0, (2, 16, 16)).astype(np.float32)  # a camera's counts, not 0-1
    counts[0, 0, 0] = 4000.0
    tifffile.imwrite(tmp_path / "counts.tif", counts, photometric="minisblack")
    result = run(str(tmp_path / "counts.tif"), "-o", str(tmp_path), "--ensemble", "1", "--output", "linear", "--iters-per-plane", "1")
    assert result.exit_code == 0, result.output
    linear = tifffile.imread(tmp_path / "counts_linear.tif")
    assert linear.dtype == np.float32 and linear.shape == counts.shape
    assert linear.mean() == pytest.approx(counts.mean(), rel=0.4) and linear.max() > 1


@pytest.mark.parametrize("planes", [1, 3])
def test_nan_in_a_float_tiff_stays_nan_in_every_output_and_the_rest_is_enhanced(tmp_path, planes):
    import tifffile

    stored = np.random.default_rng(9).uniform(0.0, 0.1, (planes, 24, 24)).astype(np.float32).squeeze()
    stored[..., :, :5] = np.nan  # outside a registered field
    stored[..., 12, 12] = np.nan  # a masked pixel
    stored[..., 20, 20] = np.inf  # a saturated or divided-by-zero pixel
    tifffile.imwrite(tmp_path / "field.tif", stored, photometric="minisblack")
    result = run(str(tmp_path / "field.tif"), "-o", str(tmp_path / "out"), "--ensemble", "1", "--iters-per-plane", "1")
    assert result.exit_code == 0, result.output
    no_data = ~np.isfinite(stored)
    assert f"{no_data.sum()} NaN or infinite values (no data) fitted as their nearest data and written back as NaN" in result.output
    for kind in ("enhance", "denoise"):
        written = tifffile.imread(tmp_path / "out" / f"field_{kind}.tif")
        assert written.shape == stored.shape and np.array_equal(np.isnan(written), no_data)
        assert np.nanmean(written) > 3 * stored[~no_data].mean()


def test_a_flat_float_tiff_with_a_masked_pixel_comes_out_as_it_does_without_it(tmp_path):
    import tifffile

    flat = np.full((24, 24), 0.05, np.float32)
    masked = flat.copy()
    masked[12, 12] = np.nan
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    tifffile.imwrite(tmp_path / "masked.tif", masked)
    result = run(str(tmp_path / "flat.tif"), str(tmp_path / "masked.tif"), "-o", str(tmp_path / "out"), "--iters", "2")
    assert result.exit_code == 0, result.output
    assert "picture" not in result.output  # not framed by flat borders around the one missing pixel
    for kind in ("enhance", "denoise"):
        whole = tifffile.imread(tmp_path / "out" / f"flat_{kind}.tif")
        written = tifffile.imread(tmp_path / "out" / f"masked_{kind}.tif")
        assert np.isnan(written[12, 12]) and np.array_equal(np.isnan(written), np.isnan(masked))
        np.testing.assert_allclose(written[~np.isnan(masked)], whole[~np.isnan(masked)], atol=1e-6)


def test_a_float_tiff_with_no_data_at_all_is_refused(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "blank.tif", np.full((2, 8, 8), np.nan, np.float32), photometric="minisblack")
    result = run(str(tmp_path / "blank.tif"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "blank.tif: every value is NaN (no data)" in result.output
    _no_traceback(result)


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_one_plane_tiff_gives_tiffs_in_its_dtype_scale_and_pixel_size(tmp_path, dtype):
    import tifffile

    counts = np.random.default_rng(8).poisson(200.0, (16, 18)).astype(dtype)  # float: counts, not 0-1
    counts[0, 0] = 4000  # a hot pixel: the float image is dim next to its peak
    tifffile.imwrite(tmp_path / "cells.tif", counts, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "um"})
    result = run(str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out"), "--ensemble", "1", "--output", "linear")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cells_linear.tif"]
    with tifffile.TiffFile(tmp_path / "out" / "cells_linear.tif") as tiff:
        linear = tiff.asarray()
        assert tiff.pages[0].tags["XResolution"].value == (4, 1) and tiff.imagej_metadata["unit"] == "um"
    assert linear.dtype == dtype and linear.shape == counts.shape
    if dtype == np.float32:  # on the counts' scale, not 0-1 (uint16 is on its dtype's range anyway)
        assert linear.mean() == pytest.approx(counts.mean(), rel=0.4)


def test_ome_tiff_outputs_keep_the_ome_name_and_pixel_size(tmp_path):
    import tifffile

    planes = np.random.default_rng(9).integers(0, 900, (2, 12, 14)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells.ome.tiff", planes, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeZ": 1.5})
    result = run(str(tmp_path / "cells.ome.tiff"), "-o", str(tmp_path / "out"), "--ensemble", "1", "--output", "linear",
                 "--iters-per-plane", "1")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cells_linear.ome.tif"]
    with tifffile.TiffFile(tmp_path / "out" / "cells_linear.ome.tif") as tiff:
        pixels = tifffile.xml2dict(tiff.ome_metadata)["OME"]["Image"]["Pixels"]
        assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeZ"]) == (0.3, 1.5) and tiff.asarray().shape == planes.shape


def test_outputs_record_the_settings_that_made_them(tmp_path):
    import tifffile

    exif = Image.Exif()
    exif[0x010F], exif[0x0131] = "Canon", "Firmware 1.0"  # make, software
    Image.fromarray(_dark()).save(tmp_path / "photo.jpg", exif=exif)
    Image.fromarray(_dark()).save(tmp_path / "w.png")
    assert run(str(tmp_path / "w.png"), "-o", str(tmp_path / "fit"), "--save-weights", str(tmp_path / "night.pt")).exit_code == 0
    result = CliRunner().invoke(cli, [
        "enhance", str(tmp_path / "photo.jpg"), "-o", str(tmp_path / "out"), "--device", "cpu", "--iters", "3",
        "--weights", str(tmp_path / "night.pt"), "--brightness", "0.3", "--no-exposure-gain", "--ensemble", "2",
        "--fit-crop", "16",
    ])
    assert result.exit_code == 0, result.output
    for kind in ("enhance", "denoise"):
        with Image.open(tmp_path / "out" / f"photo_{kind}.png") as written:
            record = json.loads(written.text["Description"])
            assert written.text["Software"] == record["software"] and record["software"].startswith("zeroig ")
            assert written.getexif()[0x0131] == record["software"] and written.getexif()[0x010F] == "Canon"
        assert {key: record[key] for key in ("output", "mode", "steps", "start", "brightness", "exposure_gain",
                                              "fit_crop", "ensemble", "device")} == {
            "output": kind, "mode": "improved", "steps": 3, "start": "checkpoint night.pt", "brightness": 0.3,
            "exposure_gain": False, "fit_crop": 16, "ensemble": 2, "device": "cpu",
        }
    # a faithful TIFF stack: ImageJ's Info holds the record, with the steps of the later planes
    planes = np.random.default_rng(3).integers(0, 900, (2, 12, 14)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells.tif", planes, imagej=True, metadata={"axes": "ZYX"})
    result = run(str(tmp_path / "cells.tif"), "-o", str(tmp_path / "stack"), "--mode", "faithful", "--seed", "5",
                 "--output", "linear", "--iters-per-plane", "1")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "stack" / "cells_linear.tif") as tiff:
        record = json.loads(tiff.imagej_metadata["Info"])
        assert tiff.pages[0].tags["Software"].value == record["software"]
    assert (record["mode"], record["output"], record["steps"], record["steps_per_later_plane"], record["start"]) == (
        "faithful", "linear", int(STEPS), 1, "seeded init, seed 5")
    assert record["ensemble"] == 1 and record["flat_borders_kept"] is False and record["input"] == "cells.tif"


def test_a_failed_input_leaves_its_output_names_to_the_next_input_of_the_same_stem(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "a.gif")  # unsupported: fails before writing anything
    Image.fromarray(_dark()).save(tmp_path / "a.webp")
    result = run(str(tmp_path / "a.gif"), str(tmp_path / "a.webp"), "-o", str(tmp_path / "out"), "--ensemble", "1")
    assert result.exit_code == 1
    assert "a.gif: unsupported image format GIF" in result.output and "same name" not in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_denoise.png", "a_enhance.png"]
    lines = result.output.splitlines()
    note = next(i for i, line in enumerate(lines) if "a.webp writes the same files as" in line)
    assert "enhanced only if" in lines[note] and note < next(i for i, line in enumerate(lines) if "unsupported" in line)


def test_a_pipe_and_an_unreadable_folder_fail_alone(tmp_path):
    Image.fromarray(_dark()).save(tmp_path / "ok.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "locked").mkdir()
    Image.fromarray(_dark()).save(tmp_path / "locked" / "inside.png")
    (tmp_path / "locked").chmod(0)
    command = [*_without_root_file_access(), sys.executable, "-m", "zeroig_plugin.cli", "enhance", "--iters", STEPS,
               "--device", "cpu", "--ensemble", "1", str(tmp_path / "pipe.png"), str(tmp_path / "locked"),
               str(tmp_path / "ok.png"), "-o", str(tmp_path / "out")]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "pipe.png: not a regular file" in result.stderr and f"{tmp_path / 'locked'}: Permission denied" in result.stderr
    assert (tmp_path / "out" / "ok_denoise.png").exists()


def test_brightness_headroom_is_set_per_channel_from_each_first_plane_and_recorded(tmp_path):
    import tifffile

    planes = np.full((2, 2, 32, 32), 200, np.uint16)  # ZCYX; channel 0 sparse, channel 1 a dense field
    for top, left in ((3, 3), (15, 20)):
        planes[:, 0, top : top + 6, left : left + 6] = 9000
    planes[:, 1] = np.random.default_rng(2).integers(9000, 16000, (2, 32, 32))
    tifffile.imwrite(tmp_path / "cells.tif", planes, imagej=True, metadata={"axes": "ZCYX"})
    result = run(str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out"), "--brightness", "headroom", "--output", "linear",
                 "--no-exposure-gain", "--ensemble", "1", "--iters-per-plane", "1")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out" / "cells_linear.tif") as tiff:
        sparse, dense = json.loads(tiff.imagej_metadata["Info"])["brightness"]
    assert 0.05 <= sparse < 0.2 and dense == 0.5
    wrong = run(str(tmp_path / "cells.tif"), "-o", str(tmp_path / "x"), "--brightness", "bright")
    assert wrong.exit_code == 2 and "'bright' is not a number or 'headroom'" in wrong.output


def test_for_microscopy_gives_the_microscopy_defaults_and_explicit_options_win(tmp_path):
    cells = np.full((32, 32), 300, np.uint16)  # a sparse sample: two bright cells on a dim background
    cells[4:10, 4:10] = cells[20:26, 18:24] = 9000
    Image.fromarray(cells).save(tmp_path / "cells.png")

    def written(folder: str, *options: str) -> dict[str, dict]:
        result = run(str(tmp_path / "cells.png"), "-o", str(tmp_path / folder), "--ensemble", "1", *options)
        assert result.exit_code == 0, result.output
        records = {}
        for path in sorted((tmp_path / folder).iterdir()):
            with Image.open(path) as image:
                records[path.name] = json.loads(image.text["Description"])
        return records

    microscopy = written("m", "--for", "microscopy")
    assert list(microscopy) == ["cells_linear.png"]
    assert microscopy["cells_linear.png"]["exposure_gain"] is True  # as for photos: it denoised the pairs better
    assert microscopy["cells_linear.png"]["brightness"] < 0.2  # from the highlights, not mid-grey
    assert microscopy["cells_linear.png"]["checkpoint_selection"] == "risk"  # the weights linear is best with
    assert microscopy["cells_linear.png"]["averaged_with_tv"] is True
    photos = written("p")
    assert list(photos) == ["cells_denoise.png", "cells_enhance.png"]
    assert (photos["cells_denoise.png"]["brightness"], photos["cells_denoise.png"]["exposure_gain"]) == (0.5, True)
    chosen = written("c", "--for", "microscopy", "--output", "denoise", "--brightness", "0.4", "--exposure-gain")
    assert list(chosen) == ["cells_denoise.png"]
    assert (chosen["cells_denoise.png"]["brightness"], chosen["cells_denoise.png"]["exposure_gain"]) == (0.4, True)
    assert photos["cells_denoise.png"]["checkpoint_selection"] == chosen["cells_denoise.png"]["checkpoint_selection"] == "enhanced"
    assert photos["cells_denoise.png"]["averaged_with_tv"] and chosen["cells_denoise.png"]["averaged_with_tv"]  # under the global tone
    assert not written("v", "--no-average-with-tv")["cells_denoise.png"]["averaged_with_tv"]
    assert photos["cells_denoise.png"]["finished_with_tv"] is True and chosen["cells_denoise.png"]["finished_with_tv"] is False
    assert photos["cells_enhance.png"]["finished_with_tv"] is False  # only denoise is finished
    assert "sub-images" in photos["cells_denoise.png"]["finish_calibration"] and photos["cells_enhance.png"]["finish_calibration"] is None
    assert written("u", "--no-finish-with-tv")["cells_denoise.png"]["finished_with_tv"] is False
    assert written("a", "--for", "microscopy", "--output", "denoise", "--finish-with-tv")["cells_denoise.png"]["finished_with_tv"] is True
    plain = written("n", "--for", "microscopy", "--no-average-with-tv")["cells_linear.png"]
    assert plain["averaged_with_tv"] is False
    faithful = written("f", "--for", "microscopy", "--mode", "faithful")["cells_linear.png"]
    assert (faithful["mode"], faithful["brightness"], faithful["exposure_gain"]) == ("faithful", 0.5, False)
    assert faithful["checkpoint_selection"] is None
    assert faithful["averaged_with_tv"] is False  # the published computation unless asked
    assert written("g", "--mode", "faithful", "--output", "denoise")["cells_denoise.png"]["finished_with_tv"] is False

    weights = tmp_path / "w.pt"
    ZeroIG(device="cpu").save(weights)
    inference_only = CliRunner().invoke(cli, [
        "enhance", str(tmp_path / "cells.png"), "-o", str(tmp_path / "i"), "--for", "microscopy", "--iters", "0",
        "--weights", str(weights), "--device", "cpu", "--ensemble", "1"])
    assert inference_only.exit_code == 0, inference_only.output
    assert [p.name for p in (tmp_path / "i").iterdir()] == ["cells_linear.png"]


def test_a_grey_tiff_enhanced_as_a_photo_gets_one_note_about_for_microscopy(tmp_path):
    import tifffile

    cells = np.random.default_rng(1).integers(100, 900, (2, 16, 16)).astype(np.uint16)
    for index, plane in enumerate(cells):
        tifffile.imwrite(tmp_path / f"cells{index}.tif", plane)
    Image.fromarray(cells[0]).save(tmp_path / "cells.png")
    Image.fromarray(_dark()).save(tmp_path / "colour.png")
    tifffile.imwrite(tmp_path / "colour.tif", _dark(16, 16))
    hint = "--for microscopy writes it denoised at its own intensities"

    def output(folder: str, *args: str) -> str:
        result = run(*args, "-o", str(tmp_path / folder), "--ensemble", "1")
        assert result.exit_code == 0, result.output
        return result.output

    assert output("grey", str(tmp_path / "cells0.tif"), str(tmp_path / "cells1.tif")).count(hint) == 1
    assert hint not in output("others", *(str(tmp_path / name) for name in ("cells.png", "colour.png", "colour.tif")))
    assert hint not in output("microscopy", str(tmp_path / "cells0.tif"), "--for", "microscopy")
    assert hint not in output("chosen", str(tmp_path / "cells0.tif"), "--output", "denoise")
