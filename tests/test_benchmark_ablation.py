"""benchmarks/ablation.py --front-ends: its base rows are what the front ends run, and its table reads them."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest


@pytest.mark.parametrize("kind", ["photos", "microscopy"])
def test_each_kinds_first_fit_and_row_are_what_zeroig_enhance_for_that_kind_runs(kind, benchmark_script):
    """The front end's row fits the recipe `zeroig enhance --for KIND` fits (the napari plugin's
    for microscopy, which a CLI test keeps equal) and scores the output it writes."""
    from zeroig_plugin import ZeroIG
    from zeroig_plugin.cli import IMAGE_KINDS

    quality, ablation = benchmark_script("quality"), benchmark_script("ablation")
    defaults = IMAGE_KINDS[kind]
    _, first_fit, output, _ = ablation.FRONT_END_ROWS[kind][0]
    assert first_fit == next(iter(ablation.FRONT_END_FITS[kind]))
    fit = ablation.FRONT_END_FITS[kind][first_fit]
    benchmarked = quality.model_for(fit["mode"], brightness=fit.get("brightness"), selection=fit.get("selection"))
    written = ZeroIG(mode="default", device="cpu", fit_crop=None, brightness=defaults["brightness"],
                     exposure_gain=defaults["exposure_gain"], select_for="linear" if defaults["output"] == "linear" else None)
    assert replace(benchmarked.recipe, name=written.recipe.name, description=written.recipe.description) == written.recipe
    assert benchmarked._brightness_from_image == written._brightness_from_image
    if defaults["output"] == "linear":
        assert output == ("linear_tv" if defaults["average_with_tv"] else "linear")
    elif defaults["average_with_tv"]:  # the photos' denoise: the averaged linear under the global tone, finished
        assert defaults["finish_with_tv"] and output == "global_average_tv"
    else:
        assert output == ("denoise_tv" if defaults["finish_with_tv"] else "denoise")


def test_every_other_row_changes_one_setting_of_its_kinds_front_end(benchmark_script):
    """A row reads the front end's fit with another output, or another fit with the front end's
    output whose settings differ from the front end's in one field."""
    ablation = benchmark_script("ablation")
    for kind, rows in ablation.FRONT_END_ROWS.items():
        fits = ablation.FRONT_END_FITS[kind]
        _, base_fit, base_output, _ = rows[0]
        for row, fit, output, _ in rows[1:]:
            if fit == base_fit:
                assert output != base_output, row
                continue
            assert output == base_output, row
            flat = lambda settings: {**{k: v for k, v in settings.items() if k != "selection"}, **settings.get("selection", {})}  # noqa: E731
            base, changed = flat(fits[base_fit]), flat(fits[fit])
            assert len({key for key in {*base, *changed} if base.get(key) != changed.get(key)}) == 1, row


def test_a_front_end_run_is_tabled_per_row_against_the_front_ends_output(tmp_path, benchmark_script):
    """Two steps on one held-out photo: the table's rows are the run's scores, and the finished
    output's difference from as fitted is printed against the front end's row."""
    ablation = benchmark_script("ablation")
    out = tmp_path / "fe"
    assert ablation.main(["--front-ends", "--datasets", "skimage-synthetic", "--steps", "2", "--images", "1",
                          "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    (images,) = report["results"].values()
    scores = images["cli"]["astronaut"]["checkpoints"]["2"]
    summary = (tmp_path / "fe_summary.md").read_text()
    written, fitted = scores["global_average_tv"], scores["denoise"]
    assert f"| `global_average_tv` | {written['psnr']:.2f} / {written['ssim']:.3f} |" in summary
    assert f"| `denoise` | {fitted['psnr']:.2f} / {fitted['ssim']:.3f} ({fitted['psnr'] - written['psnr']:+.2f}) |" in summary
    merged = tmp_path / "again"
    assert ablation.main(["--front-ends", "--table", str(out.with_suffix(".json")), "--out", str(merged)]) == 0
    assert (tmp_path / "again_summary.md").read_text() == summary


def test_the_recipe_ablation_tables_each_row_from_its_fit_against_the_default(tmp_path, benchmark_script):
    """Two steps on one camera-darkened photo: every row of ROWS is fitted, and the summary gives its
    final `denoise` scores and its difference from the default's."""
    ablation = benchmark_script("ablation")
    out = tmp_path / "ab"
    assert ablation.main(["--datasets", "skimage-camera", "--steps", "2", "--images", "1", "--threads", "1",
                          "--out", str(out)]) == 0
    (modes,) = json.loads(out.with_suffix(".json").read_text())["results"].values()
    summary = (tmp_path / "ab_summary.md").read_text()

    def final_denoise(label):
        (result,) = modes[label].values()
        return result["checkpoints"]["2"]["denoise"]

    default = final_denoise(ablation.ROWS[2][1])["psnr"]
    for row, label, what in ablation.ROWS:
        scores = final_denoise(label)
        cell = f"{scores['psnr']:.2f} / {scores['ssim']:.3f}"
        if row != ablation.DEFAULT_ROW:
            cell += f" ({scores['psnr'] - default:+.2f})"
        assert f"| {row} | {what} | {cell} |" in summary, row
