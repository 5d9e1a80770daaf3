"""benchmarks/photo_finish.py: each way of finishing a photo's denoise, scored from a fit or from saved outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest


def test_a_fit_is_scored_finished_each_way_and_its_saved_outputs_score_the_same(benchmark_script, tmp_path):
    script = benchmark_script("photo_finish")
    common = ["--datasets", "skimage-camera", "--names", "astronaut", "--size", "48"]
    assert script.main([*common, "--steps", "2", "--threads", "1", "--keep-outputs", str(tmp_path / "fit.npz"),
                        "--out", str(tmp_path / "fit")]) == 0
    assert script.main(["--rescore", str(tmp_path / "fit.npz"), "--out", str(tmp_path / "again")]) == 0
    fitted, again = (json.loads((tmp_path / f"{name}.json").read_text())["results"] for name in ("fit", "again"))
    for row, images in fitted["skimage-camera"].items():  # the same to float rounding (the cast's and level's sums)
        again_scores = again["skimage-camera"][row]["astronaut"]
        assert images["astronaut"] == {key: pytest.approx(value, rel=1e-5) for key, value in again_scores.items()}
    rows = fitted["skimage-camera"]
    assert len(rows) == 8 and all(list(images) == ["astronaut"] for images in rows.values())
    # after two steps the fit has removed little noise: TV of it is nearer the clean photo
    as_fitted, finished = (rows[row]["astronaut"] for row in ("denoise (as fitted)", "TV of denoise, calibrated (the default)"))
    assert finished["ssim"] > as_fitted["ssim"] + 0.01
    assert rows["non-local means of denoise, calibrated"]["astronaut"]["psnr"] > as_fitted["psnr"] + 0.05
    assert "| TV of denoise, calibrated (the default) |" in (tmp_path / "again.md").read_text()


def test_the_default_row_is_what_the_engine_infers_with_finish_with_tv(benchmark_script):
    from zeroig_plugin import ZeroIG

    script = benchmark_script("photo_finish")
    rng = np.random.default_rng(3)
    dark = np.clip(0.1 + 0.05 * rng.standard_normal((32, 32, 3)), 0, 1).astype(np.float32)
    model = ZeroIG(device="cpu")
    model.fit(dark, 2)
    plain = model.infer(dark, ensemble=1)
    model.finish_with_tv = True
    engine = model.infer(dark, ensemble=1).denoise
    rows = script.finishes(plain.enhance, plain.denoise)
    np.testing.assert_allclose(rows["TV of denoise, calibrated (the default)"], engine, atol=1e-6)
