"""Geometric self-ensemble at inference: the views, their inverses, and the engine's averaging."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zeroig_plugin import ZeroIG, ZeroIGError, inference_passes, sizing
from zeroig_plugin.cli import cli
from zeroig_plugin.engine import RECEPTIVE_MARGIN
from zeroig_plugin.ensemble import EnsembleMean, check_ensemble_size, dihedral, undo_dihedral
from zeroig_plugin.improved import apply_gain, exposure_gain
from zeroig_plugin.objective import Outputs, image_statistics, infer
from zeroig_plugin.recipes import get_recipe


@pytest.fixture(scope="module")
def dark() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((18, 26, 3)) * 0.15).astype(np.float32)


def test_the_views_are_the_eight_symmetries_and_undo_inverts_each():
    x = torch.rand(1, 3, 5, 7)
    views = [dihedral(x, view) for view in range(8)]
    assert [tuple(v.shape[-2:]) for v in views] == [(5, 7)] * 4 + [(7, 5)] * 4
    assert len({v.numpy().tobytes() for v in views}) == 8, "eight different symmetries"
    for view, viewed in enumerate(views):
        assert torch.equal(undo_dihedral(viewed, view), x)
    assert torch.equal(views[1], x.flip(-1)) and torch.equal(views[2], x.flip(-2))


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_an_equivariant_computation_is_unchanged_by_the_ensemble(size):
    x = torch.rand(1, 3, 6, 9)
    mean = EnsembleMean()
    for view in range(size):
        mean.add(Outputs(dihedral(x, view) * 2, dihedral(x, view).square(), -dihedral(x, view)), view)
    averaged = mean.result()
    assert torch.allclose(averaged.enhance, x * 2) and torch.allclose(averaged.denoise, x.square())
    assert torch.allclose(averaged.linear, -x)


def test_ensemble_sizes_other_than_1_2_4_8_are_refused(dark):
    with pytest.raises(ZeroIGError, match="ensemble size must be one of 1, 2, 4, 8"):
        check_ensemble_size(3)
    with pytest.raises(ZeroIGError, match="got 3"):
        ZeroIG(device="cpu").infer(dark, ensemble=3)


def test_the_published_mode_makes_one_pass_and_the_improved_modes_average_eight():
    assert get_recipe("faithful").inference_ensemble == 1
    assert get_recipe("improved").inference_ensemble == get_recipe("crop").inference_ensemble == 8


def test_the_engine_averages_each_view_inferred_with_its_own_statistics(dark):
    model = ZeroIG(mode="improved", device="cpu")
    model.fit(dark, 2)
    image = torch.from_numpy(dark).permute(2, 0, 1)[None]
    net = model._inference_net().eval()
    with torch.no_grad():
        views = [infer(net, dihedral(image, v), image_statistics(net, dihedral(image, v))) for v in range(8)]
    model.net.train()

    def exposed(linear: torch.Tensor) -> np.ndarray:  # the default's global tone: one gain in linear light (item 6)
        gain = exposure_gain(linear, model.recipe.brightness, linear_light=True)
        return apply_gain(linear, gain, linear_light=True)[0].permute(1, 2, 0).numpy()

    expected = exposed(torch.stack([undo_dihedral(o.linear, v) for v, o in enumerate(views)]).mean(0))
    averaged, single = model.infer(dark), model.infer(dark, ensemble=1)
    assert np.abs(averaged.denoise - expected).max() < 1e-5  # the gain scales float rounding up
    assert np.abs(single.denoise - exposed(views[0].linear)).max() < 1e-5
    assert np.abs(averaged.denoise - single.denoise).max() > 1e-4, "the views differ: the networks are not equivariant"


def test_the_ensemble_is_exact_when_tiled_and_with_borrowed_statistics():
    rng = np.random.default_rng(1)
    image = (rng.random((70, 90, 3)) * 0.2).astype(np.float32)
    model = ZeroIG(mode="improved", device="cpu")
    model.fit(image, 2)
    whole, tiled = model.infer(image), model.infer(image, tile=32)
    assert np.abs(whole.denoise - tiled.denoise).max() < 1e-5
    assert np.abs(whole.enhance - tiled.enhance).max() < 1e-5
    assert np.array_equal(model.infer(image, statistics_from=image).denoise, whole.denoise)


def test_the_cli_ensemble_option_reaches_the_inference(tmp_path):
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 50, (20, 24, 3)).astype(np.uint8)).save(tmp_path / "x.png")
    weights = tmp_path / "w.pt"
    ZeroIG(device="cpu").save(weights)

    def enhance(*args):
        out = tmp_path / "-".join(args or ("default",))
        result = CliRunner().invoke(cli, ["enhance", str(tmp_path / "x.png"), "-o", str(out), "--weights", str(weights),
                                          "--iters", "0", "--device", "cpu", "--output", "denoise", *args])
        assert result.exit_code == 0, result.output
        return np.asarray(Image.open(out / "x_denoise.png"))

    default, one, eight = enhance(), enhance("--ensemble", "1"), enhance("--ensemble", "8")
    assert np.array_equal(default, eight) and not np.array_equal(one, eight)
    bad = CliRunner().invoke(cli, ["enhance", str(tmp_path / "x.png"), "-o", str(tmp_path), "--ensemble", "3"])
    assert bad.exit_code == 2 and "--ensemble" in bad.output


def test_inference_reports_progress_per_pass_over_views_and_tiles():
    image = (np.random.default_rng(2).random((70, 90, 3)) * 0.2).astype(np.float32)
    model = ZeroIG(mode="improved", device="cpu")
    calls = []
    model.infer(image, tile=32, ensemble=2, progress=lambda done, total: calls.append((done, total)))
    # 3 x 3 tiles and 2 views: each view's statistics (9 tile passes each), then 18 tile passes
    assert calls == [(9, 36), (18, 36)] + [(done, 36) for done in range(19, 37)]
    calls.clear()
    model.infer(image, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(done, 16) for done in range(1, 17)]
    calls.clear()
    ZeroIG(mode="faithful", device="cpu").infer(image, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]  # one view, the running statistics: one pass


def test_the_pass_count_is_known_before_the_model_and_a_closed_inference_leaves_it_usable(monkeypatch):
    image = (np.random.default_rng(4).random((70, 90, 3)) * 0.2).astype(np.float32)
    model = ZeroIG(mode="improved", device="cpu")
    ticks = []
    model.infer(image, tile=32, ensemble=4, progress=lambda done, total: ticks.append(total))
    assert set(ticks) == {inference_passes("improved", 70, 90, tile=32, ensemble=4)} == {4 * 9 * 2}
    assert inference_passes("faithful", 70, 90) == 1 and inference_passes("default", 70, 90) == 16
    window = 2048 + 2 * RECEPTIVE_MARGIN
    buffers = 5000 * 4000 * sizing.WHOLE_IMAGE_BUFFER_BYTES_PER_PIXEL
    monkeypatch.setattr(sizing, "memory_budget", lambda device: buffers + sizing.inference_bytes(window, window))
    assert inference_passes("faithful", 5000, 4000, device="cpu") == 3 * 2, "no tile given: as large as memory allows"
    monkeypatch.undo()

    passes = model.infer_in_passes(image)
    next(passes)
    assert not model.net.training
    passes.close()
    assert model.net.training
    report = model.fit(image, 1)
    assert report.steps_done == 1 and np.isfinite(model.infer(image).denoise).all()
