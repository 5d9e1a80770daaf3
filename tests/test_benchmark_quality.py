"""benchmarks/quality.py writes its results where asked: a run's files are not lost to another's."""
from __future__ import annotations

import json

import pytest


def test_out_names_with_dots_are_kept_whole_and_the_partial_file_is_removed(tmp_path, benchmark_script):
    """Two runs named ``..._b0.5`` and ``..._b0.25`` once both wrote ``..._b0.json``."""
    quality = benchmark_script("quality")
    for brightness in ("0.5", "0.25"):
        assert quality.main([
            "--datasets", "skimage-synthetic", "--images", "1", "--size", "24", "--steps", "2",
            "--modes", "faithful", "--brightness", brightness, "--threads", "1",
            "--out", str(tmp_path / f"run_b{brightness}"),
        ]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run_b0.25.json", "run_b0.25.md", "run_b0.5.json", "run_b0.5.md",
    ]
    for brightness in ("0.5", "0.25"):
        report = json.loads((tmp_path / f"run_b{brightness}.json").read_text())
        assert report["settings"]["brightness"] == float(brightness)
        (result,) = report["results"]["skimage-synthetic"].values()
        (scored,) = result.values()
        assert scored["brightness"] == float(brightness)
        assert set(scored["checkpoints"]["2"]) == {"enhance", "denoise", "linear", "denoise_tv", "global_tv", "global_average_tv"}


def test_intensity_matched_runs_also_score_linear_averaged_with_tv(benchmark_script):
    """The microscopy front ends' output, ``linear`` averaged with calibrated TV, is scored beside
    ``linear`` where outputs are intensity-matched: after two steps the fit has removed little
    noise, and the average with TV is nearer the clean image; photos get no such score, but their
    denoise finished by TV, nearer the clean image for the same reason."""
    import numpy as np

    quality = benchmark_script("quality")
    rows, cols = np.mgrid[0:48, 0:48]
    clean = (0.2 + 0.15 * np.sin(rows / 6.0) * np.cos(cols / 9.0)).astype(np.float32)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    results = {match: next(iter(quality.run_one("default", noisy, clean, [2], match, "cpu", None).values())) for match in (True, False)}
    matched, as_photo = (results[match]["checkpoints"]["2"] for match in (True, False))
    assert set(as_photo) == {"enhance", "denoise", "linear", "denoise_tv", "global_tv", "global_average_tv"} and "denoise_tv" not in matched
    assert matched["linear_tv"]["psnr"] > matched["linear"]["psnr"] + 1
    assert as_photo["denoise_tv"]["ssim"] > as_photo["denoise"]["ssim"] + 0.05
    photo_table = quality.table({"results": {"lol15-dev": {"default": {"photo": results[False]}}}})
    assert f"finished by TV {as_photo['denoise_tv']['psnr']:.2f}" in photo_table
    markdown = quality.table({"results": {"microscopy-dev": {"default": {"plane": results[True]}}}})
    assert f"with TV {matched['linear_tv']['psnr']:.2f}" in markdown


def test_kept_outputs_are_the_ones_scored_and_rescore_alike_in_photo_finish(tmp_path, benchmark_script):
    """``--keep-outputs`` saves the photo pairs' last outputs of the first mode, so that the ways of
    finishing them can be scored again later (the device check keeps its 2000-step LOL fits so), and
    ``linear``, from which the global tone is scored."""
    import numpy as np

    from zeroig_plugin.classical import FINISH_STRIDE, calibrated_tv

    quality = benchmark_script("quality")
    kept = tmp_path / "outputs.npz"
    assert quality.main([
        "--datasets", "skimage-synthetic", "--names", "astronaut", "chelsea", "--size", "24", "--steps", "2",
        "--modes", "default", "faithful", "--threads", "1", "--keep-outputs", str(kept), "--out", str(tmp_path / "run"),
    ]) == 0
    saved = np.load(kept)
    assert sorted(saved.files) == sorted(["fit_settings"] + [f"skimage-synthetic/{name}/{array}" for name in ("astronaut", "chelsea")
                                                           for array in ("low", "high", "enhance", "denoise", "linear")])
    assert json.loads(str(saved["fit_settings"]))["mode"].startswith("improved")  # the first mode's, not faithful's
    assert not list(tmp_path.glob("*.partial.npz"))
    assert benchmark_script("photo_finish").main(["--rescore", str(kept), "--out", str(tmp_path / "finish")]) == 0
    scored = json.loads((tmp_path / "run.json").read_text())["results"]["skimage-synthetic"]
    default = next(images for label, images in scored.items() if label.startswith("improved"))
    rescored = json.loads((tmp_path / "finish.json").read_text())["results"]["skimage-synthetic"]
    for name in ("astronaut", "chelsea"):
        last = default[name]["checkpoints"]["2"]
        assert rescored["denoise (as fitted)"][name]["psnr"] == last["denoise"]["psnr"]
        assert rescored["TV of denoise, calibrated (the default)"][name]["ssim"] == last["denoise_tv"]["ssim"]
        global_tone = calibrated_tv(quality.brightened(saved[f"skimage-synthetic/{name}/linear"], 0.5, True), stride=FINISH_STRIDE)[0]
        assert quality.score(global_tone, saved[f"skimage-synthetic/{name}/high"], False) == last["global_tv"]


def test_the_camera_set_is_the_held_out_photos_darkened_as_a_camera_records_them(benchmark_script):
    """``skimage-camera`` pairs the same photos with :func:`simulate_dark_capture`'s 8-bit dark captures."""
    import numpy as np

    from zeroig_plugin.demo import simulate_dark_capture

    quality = benchmark_script("quality")
    resize = lambda array: quality.prepare(array, None, 24, None)  # noqa: E731
    (name, low, high), = quality.pairs("skimage-camera", 1, None, resize)
    (_, scaled, same_high), = quality.pairs("skimage-synthetic", 1, None, resize)
    np.testing.assert_array_equal(high, same_high)
    np.testing.assert_array_equal(low, simulate_dark_capture(high, seed=0))
    assert not np.allclose(low, scaled, atol=0.02)


def test_the_global_tone_score_of_a_fit_is_what_the_default_infers_and_finishes(benchmark_script):
    """``global_tv`` reads a fit as the default's global tone does (``improved-global-tone`` fits the
    same, only its readout differs), finished by calibrated TV as the image CLI finishes a photo: so
    one fit of the variant scores the local tone (``denoise_tv``) and the global one."""
    import numpy as np

    quality = benchmark_script("quality")
    (_, low, high), = quality.pairs("skimage-camera", 1, None, lambda array: quality.prepare(array, None, 32, None))
    scored = {mode: next(iter(quality.run_one(mode, low, high, [3], False, "cpu", None).values()))["checkpoints"]["3"]
              for mode in ("default", "improved-global-tone")}
    default = scored["default"]["denoise_tv"]
    assert scored["improved-global-tone"]["global_tv"] == {key: pytest.approx(value, rel=1e-4) for key, value in default.items()}
    assert scored["default"]["global_tv"] == {key: pytest.approx(value, rel=1e-4) for key, value in default.items()}
    assert scored["default"]["denoise_tv"] != scored["improved-global-tone"]["denoise_tv"]
    model = quality.model_for("default")
    model.fit(low, 3)
    model.average_with_tv = model.finish_with_tv = True  # `zeroig enhance --average-with-tv` on a photo
    written = quality.score(model.infer(low).denoise, high, False)
    assert scored["default"]["global_average_tv"] == {key: pytest.approx(value, rel=1e-4) for key, value in written.items()}
    assert scored["default"]["global_average_tv"] != scored["default"]["global_tv"]
    assert np.isfinite(default["psnr"])
