"""The napari plugin's Qt-free logic: intensity scaling, plane walking, warm-started stacks.

These need neither napari nor a display, so they are not marked ``napari`` and run everywhere.
"""
from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from napari_zeroig import processing
from napari_zeroig.processing import IntensityScale, RunSettings, StackLayout, enhance_stack
from zeroig_plugin import InputError, ZeroIG, engine, sizing
from zeroig_plugin.imageio import value_scale

TINY = RunSettings(steps=1, later_steps=1, device="cpu", output="all")


def run_to_end(generator):
    """Drain a processing generator: (the progress ticks, the returned outputs)."""
    ticks = []
    while True:
        try:
            ticks.append(next(generator))
        except StopIteration as stop:
            return ticks, stop.value


@pytest.fixture
def model_spy(monkeypatch):
    """Every ZeroIG a run creates, in order (to see warm starts: one model per channel)."""
    models: list[ZeroIG] = []

    def factory(settings):
        def new_model():
            models.append(ZeroIG(mode=settings.mode, device=settings.device))
            return models[-1]

        return new_model

    monkeypatch.setattr(RunSettings, "model_factory", factory)
    return models


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_8_and_16_bit_data_scales_by_dtype_range_and_round_trips(dtype):
    values = np.array([0, 7, np.iinfo(dtype).max], dtype=dtype)
    scale = IntensityScale.for_data(values)
    unit = scale.to_unit(values)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    np.testing.assert_array_equal(scale.from_unit(unit), values)
    assert scale.from_unit(unit).dtype == dtype


@pytest.mark.parametrize("dtype, peak", [(np.int16, 4000), (np.int32, 4000), (np.int32, 300_000), (np.uint32, 300_000)])
def test_other_non_negative_integers_are_read_from_zero_as_the_command_line_does(dtype, peak):
    values = np.array([0, 7, 200, peak], dtype=dtype)  # e.g. a dim camera image read as signed
    scale = IntensityScale.for_data(values)
    assert (scale.low, scale.high) == (0.0, min(np.iinfo(dtype).max, max(65535.0, peak)))
    assert scale.high == value_scale(values).scale
    np.testing.assert_array_equal(scale.from_unit(scale.to_unit(values)), values)
    brightened = np.linspace(0, 1, 11, dtype=np.float32)  # every level an output can take comes back unclipped
    np.testing.assert_allclose(scale.from_unit(brightened).astype(float), brightened * scale.high, atol=0.5)
    signed = IntensityScale.for_data(np.array([-1000, 0, 3000], dtype=np.int16))
    assert -1000 <= signed.low < 0 < signed.high <= 3000  # negative values: the percentiles


def test_small_bright_structures_keep_their_intensity_in_float_and_negative_data():
    rng = np.random.default_rng(0)
    field = rng.uniform(90.0, 110.0, (48, 48))
    field[10, 10] = field[30, 31] = 3000.0  # two beads: under 0.1 % of the pixels
    for data in (field.astype(np.float32), (field - 1024).astype(np.int16)):  # as measured, and CT-like
        scale = IntensityScale.for_data(data)
        assert (scale.low, scale.high) == (data.min(), data.max())
        np.testing.assert_allclose(scale.from_unit(scale.to_unit(data)).astype(float), data, atol=0.51)


def test_float_data_on_the_unit_range_is_used_as_it_is_so_a_dim_layer_is_brightened():
    dim = np.random.default_rng(7).uniform(0.0, 0.05, (24, 24)).astype(np.float32)
    scale = IntensityScale.for_data(dim)
    assert (scale.low, scale.high) == (0.0, 1.0)
    settings = RunSettings(steps=2, device="cpu", output="denoise", brightness=0.5, ensemble=1)
    _, outputs = run_to_end(enhance_stack(dim, StackLayout(dim.shape, rgb=False), settings))
    assert outputs.denoised.mean() > 5 * dim.mean() and outputs.denoised.max() > dim.max()


def test_8_and_16_bit_data_is_scaled_by_its_dtype_without_reading_a_lazy_layer_whole():
    class Lazy:
        """A layer's array that refuses to be read whole, as a big dask or zarr array should not be."""

        dtype, shape, ndim = np.dtype(np.uint16), (40, 512, 512), 3

        def __array__(self, *args, **kwargs):
            raise AssertionError("read whole")

    scale = IntensityScale.for_data(Lazy())
    assert (scale.low, scale.high) == (0.0, 65535.0)


def test_float_data_scales_by_robust_percentiles_where_a_few_wild_values_would_black_it_out():
    rng = np.random.default_rng(0)
    values = rng.uniform(200.0, 300.0, 100_000)
    values[:5] = 1e9  # a few hot pixels do not set the range
    scale = IntensityScale.for_data(values.astype(np.float32))
    assert 200.0 <= scale.low < 201.0 and 299.0 < scale.high <= 300.0
    back = scale.from_unit(scale.to_unit(values))
    assert back.dtype == np.float32 and back.max() == pytest.approx(scale.high)


def test_percentile_scaling_for_integers_keeps_the_dtype():
    values = np.linspace(-1000, 3000, 10_001).astype(np.int16)  # CT-like Hounsfield units
    scale = IntensityScale.for_data(values, scaling="percentiles")
    assert -1000 < scale.low < -990 and 2990 < scale.high < 3000
    back = scale.from_unit(scale.to_unit(values))
    assert back.dtype == np.int16 and np.abs(back[10:-10].astype(int) - values[10:-10]).max() <= 1


def test_constant_and_non_numeric_data():
    assert IntensityScale.for_data(np.full(4, 3.0)).to_unit(np.full(4, 3.0)).tolist() == [0.0] * 4
    with pytest.raises(InputError):
        IntensityScale.for_data(np.zeros(4, dtype=bool))
    with pytest.raises(InputError):
        IntensityScale.for_data(np.full(4, np.nan))


def test_no_data_is_fitted_as_its_nearest_data_not_as_a_dark_hole():
    plane = np.full((16, 16), 120.0, np.float32)
    plane[8, 8] = np.nan
    plane[:, :3] = np.nan  # outside a registered field: a flat border at the low end
    unit = IntensityScale(100.0, 140.0, np.dtype(np.float32)).to_unit(plane)
    assert np.all(unit[:, 3:] == np.float32(0.5)) and np.all(unit[:, :3] == 0.0)


def test_nan_and_infinities_in_float_data_are_no_data_and_nan_in_the_outputs():
    data = np.random.default_rng(3).uniform(100.0, 140.0, (2, 24, 24)).astype(np.float32)
    data[:, :, :4] = np.nan  # outside a registered field
    data[1, 10, 10] = np.nan
    data[0, 20, 20] = np.inf  # a saturated or divided-by-zero pixel
    no_data = ~np.isfinite(data)
    _, outputs = run_to_end(enhance_stack(data, StackLayout(data.shape, rgb=False, stack_axis=0), TINY))
    for values in outputs.requested().values():
        assert values.dtype == np.float32 and np.array_equal(np.isnan(values), no_data)
    assert abs(np.nanmean(outputs.linear) - data[~no_data].mean()) < 0.2 * data[~no_data].mean()


def test_planes_walk_the_stack_axis_fastest_per_channel():
    layout = StackLayout((2, 3, 4, 8, 8), rgb=False, stack_axis=1, channel_axis=0)
    assert layout.channels == 2 and layout.planes_per_channel == 12
    first = list(layout.planes(0))
    assert first[:4] == [(0, z, 0, slice(None), slice(None)) for z in range(3)] + [(0, 0, 1, slice(None), slice(None))]
    assert all(index[0] == 1 for index in layout.planes(1))


@pytest.mark.parametrize(
    "shape, rgb, stack, channel",
    [((8, 8, 3), True, None, 0), ((8, 8), False, 0, None), ((4, 8, 8), False, 0, 0), ((8, 8, 5), True, None, None)],
)
def test_impossible_layouts_are_refused(shape, rgb, stack, channel):
    with pytest.raises(InputError):
        StackLayout(shape, rgb, stack, channel)


def test_gray_uint16_plane_keeps_shape_dtype_and_input(model_spy):
    image = np.random.default_rng(1).integers(100, 400, (32, 32)).astype(np.uint16)
    original = image.copy()
    layout = StackLayout(image.shape, rgb=False)
    ticks, outputs = run_to_end(enhance_stack(image, layout, TINY))
    # one fitting step, then the default mode's 8 views, each with its statistics pass
    assert ticks[0].done == 1 and ticks[-1].done == ticks[-1].total == TINY.progress_total(layout) == 1 + 16
    assert outputs.enhanced.shape == outputs.denoised.shape == outputs.linear.shape == image.shape
    assert outputs.enhanced.dtype == outputs.denoised.dtype == outputs.linear.dtype == np.uint16
    np.testing.assert_array_equal(image, original)


def test_each_requested_output_carries_the_settings_that_made_it(tmp_path):
    image = np.random.default_rng(6).integers(0, 40, (3, 16, 16)).astype(np.uint8)
    settings = RunSettings(steps=2, later_steps=1, device="cpu", output="both", ensemble=2, brightness=0.3)
    _, outputs = run_to_end(enhance_stack(image, StackLayout(image.shape, rgb=False, stack_axis=0), settings))
    assert sorted(outputs.requested()) == sorted(outputs.provenance) == ["denoised", "enhanced"]
    record = outputs.provenance["denoised"]
    assert (record["output"], record["steps"], record["steps_per_later_plane"], record["ensemble"]) == ("denoise", 2, 1, 2)
    assert (record["brightness"], record["exposure_gain"], record["scaling"], record["start"]) == (0.3, True, "auto", "seeded init, seed 2")
    # under the exposure gain, denoise is the linear output averaged with TV, brought up by one gain
    assert record["averaged_with_tv"] is True
    assert outputs.provenance["enhanced"] == {**record, "output": "enhance", "averaged_with_tv": False}


def test_rgba_alpha_is_passed_through(model_spy):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 60, (32, 32, 4)).astype(np.uint8)
    settings = RunSettings(steps=1, later_steps=1, device="cpu", output="enhance")
    _, outputs = run_to_end(enhance_stack(image, StackLayout(image.shape, rgb=True), settings))
    assert outputs.denoised is None and outputs.enhanced.dtype == np.uint8
    np.testing.assert_array_equal(outputs.enhanced[..., 3], image[..., 3])


def test_stack_planes_are_warm_started_and_channels_fitted_apart(model_spy):
    stack = np.random.default_rng(3).uniform(0, 5, (2, 3, 24, 24)).astype(np.float32)
    settings = RunSettings(steps=2, later_steps=1, device="cpu", output="denoise")
    layout = StackLayout(stack.shape, rgb=False, stack_axis=1, channel_axis=0)
    ticks, outputs = run_to_end(enhance_stack(stack, layout, settings))
    assert len(model_spy) == 2  # one model per channel, carried from plane to plane
    assert [model.steps_done for model in model_spy] == [2 + 1 + 1] * 2
    assert ticks[-1].done == ticks[-1].total == settings.progress_total(layout) == 2 * (2 + 1 + 1 + 3 * 16)
    assert ticks[-1].plane == ticks[-1].planes == 6
    assert outputs.denoised.dtype == np.float32 and outputs.denoised.shape == stack.shape
    for channel in range(2):  # floats map back into each channel's own range
        scale = IntensityScale.for_data(stack[channel])
        assert scale.low <= outputs.denoised[channel].min() and outputs.denoised[channel].max() <= scale.high + 1e-4


def test_a_stacks_planes_are_brought_up_by_one_gain_and_keep_their_relative_levels():
    import torch

    from zeroig_plugin.improved import apply_gain

    bright = np.random.default_rng(8).integers(2000, 6000, (24, 24))
    stack = np.stack([bright, bright // 3]).astype(np.uint16)  # one field, then a third of the light
    layout = StackLayout(stack.shape, rgb=False, stack_axis=0)
    settings = RunSettings(steps=2, later_steps=1, device="cpu", output="all", ensemble=1, brightness=0.3)
    _, outputs = run_to_end(enhance_stack(stack, layout, settings))
    gain = outputs.provenance["enhanced"]["stack_gain"]
    assert outputs.provenance["denoised"]["stack_gain"] == gain and "stack_gain" not in outputs.provenance["linear"]
    unit = torch.from_numpy(stack / 65535.0).float()
    expected = apply_gain(unit, torch.tensor(gain), linear_light=True).numpy()  # each plane's input, one gain, on the light
    np.testing.assert_allclose(outputs.enhanced / 65535.0, expected, atol=2 / 65535)
    levels = outputs.denoised.reshape(2, -1).mean(1) / 65535.0
    assert levels[0] == pytest.approx(0.3, abs=0.01) and levels[1] < 0.6 * levels[0]  # on its own it would reach 0.3 too
    _, published = run_to_end(enhance_stack(stack, layout, replace(settings, mode="faithful")))
    assert "stack_gain" not in published.provenance["denoised"]  # the published fit sets each plane's level


def test_cancel_stops_before_the_next_step(model_spy):
    image = np.zeros((32, 32), np.uint8)
    cancel = threading.Event()
    run = enhance_stack(image, StackLayout(image.shape, False), RunSettings(steps=50, device="cpu"), cancel.is_set)
    first = next(run)
    cancel.set()
    ticks, outputs = run_to_end(run)
    assert outputs is None and ticks == []
    assert first.done == model_spy[0].steps_done == 1  # the first report comes after one step


def test_inference_reports_each_pass_and_cancel_stops_before_the_next(model_spy, monkeypatch):
    monkeypatch.setattr(processing, "REPORT_INTERVAL_S", 0.0)  # every pass looks slow
    image = np.random.default_rng(7).integers(0, 60, (24, 24)).astype(np.uint8)
    layout, settings = StackLayout(image.shape, False), RunSettings(steps=1, device="cpu", ensemble=2)
    ticks, outputs = run_to_end(enhance_stack(image, layout, settings))
    passes = [(tick.inference_pass, tick.inference_passes, tick.done) for tick in ticks[1:]]
    assert ticks[0].inference_pass is None and passes == [(n, 4, 1 + n) for n in range(1, 5)] and outputs is not None

    cancel = threading.Event()
    run = enhance_stack(image, layout, settings, cancel.is_set)
    assert next(run).inference_pass is None
    assert next(run).inference_pass == 1
    cancel.set()
    assert run_to_end(run) == ([], None)


def test_reports_come_in_chunks_of_steps_on_fast_devices(model_spy, monkeypatch):
    monkeypatch.setattr(processing, "REPORT_INTERVAL_S", 1e9)  # every step looks fast
    image = np.zeros((16, 16), np.uint8)
    settings = RunSettings(steps=5, device="cpu", output="enhance")
    ticks, _ = run_to_end(enhance_stack(image, StackLayout(image.shape, False), settings))
    assert [(tick.step, tick.done) for tick in ticks] == [(1, 1), (5, 5), (5, 5 + 16)]
    assert model_spy[0].steps_done == 5


def _memory_for_16x16_tiles(monkeypatch):
    """As if a plane's one-pass inference did not fit the device's memory, which 16x16 tiles do."""
    monkeypatch.setattr(engine, "automatic_tile", lambda height, width, device, margin: 16)


@pytest.fixture(scope="module")
def seeded_weights(tmp_path_factory):
    """A checkpoint of the seeded init, for runs of 0 steps (a checkpoint applied as it is)."""
    path = tmp_path_factory.mktemp("weights") / "seeded.pt"
    ZeroIG(device="cpu").save(path)
    return path


def test_planes_too_large_for_the_device_memory_are_inferred_in_tiles_with_the_same_result(monkeypatch, seeded_weights):
    image = np.random.default_rng(4).integers(0, 80, (40, 40, 3)).astype(np.uint8)
    layout = StackLayout(image.shape, rgb=True)
    inference_only = RunSettings(steps=0, device="cpu", checkpoint=seeded_weights)
    whole_ticks, whole = run_to_end(enhance_stack(image, layout, inference_only))
    assert whole_ticks[-1].total == 8 * 2
    _memory_for_16x16_tiles(monkeypatch)
    ticks, tiled = run_to_end(enhance_stack(image, layout, inference_only))
    assert ticks[-1].done == ticks[-1].total == inference_only.inference_passes(layout) == 8 * 3 * 3 * 2
    np.testing.assert_array_equal(tiled.enhanced, whole.enhanced)
    np.testing.assert_array_equal(tiled.denoised, whole.denoised)


def test_planes_too_large_for_the_device_memory_are_fitted_on_crops(monkeypatch):
    image = np.random.default_rng(5).integers(0, 80, (40, 40)).astype(np.uint16)
    crops = []
    original_fit = ZeroIG.fit

    def fit_spy(model, *args, **kwargs):
        report = original_fit(model, *args, **kwargs)
        crops.append(report.crop_size)
        return report

    monkeypatch.setattr(ZeroIG, "fit", fit_spy)
    settings = RunSettings(steps=1, later_steps=1, device="cpu", output="denoise")
    run_to_end(enhance_stack(image, StackLayout(image.shape, rgb=False), settings))
    monkeypatch.setattr(sizing, "memory_budget", lambda device: sizing.whole_image_fit_bytes(32, 32, device))
    ticks, outputs = run_to_end(enhance_stack(image, StackLayout(image.shape, rgb=False), settings))
    assert crops == [None, 16]
    assert [tick.fit_crop for tick in ticks if tick.inference_pass is None] == [16], "the widget shows it"
    assert outputs.denoised.shape == image.shape and outputs.denoised.dtype == np.uint16


def test_the_ensemble_setting_reaches_the_inference(monkeypatch, seeded_weights):
    image = np.random.default_rng(6).integers(0, 80, (24, 24, 3)).astype(np.uint8)
    layout = StackLayout(image.shape, rgb=True)
    sizes = []
    original_infer = ZeroIG.infer_in_passes

    def spy(model, unit, tile=None, ensemble=None):
        sizes.append(ensemble)
        return original_infer(model, unit, tile, ensemble=ensemble)

    monkeypatch.setattr(ZeroIG, "infer_in_passes", spy)
    inference_only = RunSettings(steps=0, device="cpu", checkpoint=seeded_weights)
    _, two = run_to_end(enhance_stack(image, layout, replace(inference_only, ensemble=2)))
    _, default = run_to_end(enhance_stack(image, layout, inference_only))
    assert sizes == [2, None]
    assert two.enhanced is two.denoised is None  # the default output: linear alone
    assert not np.array_equal(two.linear, default.linear)
    with pytest.raises(InputError, match="ensemble"):
        RunSettings(ensemble=3)


def test_zero_steps_need_a_checkpoint_and_record_no_brightness_they_did_not_apply(seeded_weights):
    with pytest.raises(InputError, match="0 steps apply a checkpoint"):
        RunSettings(steps=0)
    image = np.random.default_rng(6).integers(0, 40, (24, 24)).astype(np.uint8)
    layout = StackLayout(image.shape, rgb=False)
    for exposure_gain, recorded in ((False, None), (True, 0.6)):
        settings = RunSettings(steps=0, device="cpu", checkpoint=seeded_weights, brightness=0.6, ensemble=1,
                               exposure_gain=exposure_gain, output="denoise")
        _, outputs = run_to_end(enhance_stack(image, layout, settings))
        assert outputs.provenance["denoised"]["brightness"] == recorded


def test_exposure_gain_is_on_by_default_reaches_the_model_and_leaves_faithful_as_published():
    assert RunSettings(device="cpu").model_factory()().recipe.fit_brightness_ratio == 0.7
    assert RunSettings(device="cpu", exposure_gain=False).model_factory()().recipe.fit_brightness_ratio is None
    assert RunSettings(device="cpu", mode="faithful").model_factory()().recipe.fit_brightness_ratio is None


def test_linear_alone_selects_checkpoints_for_linear_and_other_outputs_for_denoise():
    assert RunSettings(device="cpu").model_factory()().checkpoint_selection == "risk"
    for output in ("all", "both", "denoise", "enhance"):
        assert RunSettings(device="cpu", output=output).model_factory()().checkpoint_selection == "enhanced"


def test_the_brightness_setting_reaches_the_fit(dark_scene_rgb8):
    assert RunSettings(brightness=0.3, device="cpu").model_factory()().recipe.brightness == 0.3
    with pytest.raises(InputError, match="brightness"):
        RunSettings(brightness=0.9)
    plane = dark_scene_rgb8[..., 0]
    layout = StackLayout(plane.shape, rgb=False)
    means = {}
    for brightness in (0.25, 0.7):
        settings = RunSettings(steps=100, device="cpu", output="denoise", ensemble=1, brightness=brightness)
        _, outputs = run_to_end(enhance_stack(plane, layout, settings))
        means[brightness] = outputs.denoised.mean() / 255
    assert means[0.25] == pytest.approx(0.25, abs=0.1) and means[0.7] == pytest.approx(0.7, abs=0.1)


def test_by_default_each_channel_aims_at_the_headroom_of_its_first_plane_except_in_faithful_mode():
    rng = np.random.default_rng(4)
    sparse = np.full((2, 48, 48), 300, np.uint16)  # channel 0: three bright cells on a dim background
    for top, left in ((5, 5), (20, 30), (35, 10)):
        sparse[0, top : top + 6, left : left + 6] = 9000
    sparse[1] = rng.integers(9000, 16000, (48, 48))  # channel 1: a dense field
    layout = StackLayout(sparse.shape, rgb=False, channel_axis=0)
    _, outputs = run_to_end(enhance_stack(sparse, layout, RunSettings(steps=1, device="cpu", output="linear", ensemble=1)))
    assert RunSettings().brightness == "headroom"
    sparse_channel, dense_channel = outputs.provenance["linear"]["brightness"]
    assert 0.05 <= sparse_channel < 0.2 and dense_channel == 0.5  # the dense field stays at the ceiling
    faithful = RunSettings(device="cpu", mode="faithful").model_factory()()
    faithful.fit(sparse[0].astype(np.float32) / 65535, 0)
    assert faithful.recipe.brightness == 0.5


def test_the_plugins_defaults_are_the_command_lines_for_microscopy():
    from zeroig_plugin.cli import IMAGE_KINDS

    settings = RunSettings()
    chosen = {"output": settings.output, "brightness": settings.brightness, "exposure_gain": settings.exposure_gain,
              "average_with_tv": settings.average_with_tv, "finish_with_tv": False}  # the plugin leaves denoise as fitted
    assert chosen == IMAGE_KINDS["microscopy"]


def test_zero_fill_is_passed_through_and_the_bar_ends_at_its_total(monkeypatch):
    """A registered plane's zero fill stays zero; tiled, it needs fewer passes than planned."""
    rng = np.random.default_rng(9)
    image = np.zeros((40, 40), np.uint16)
    image[:, 14:] = rng.integers(200, 900, (40, 26))
    _memory_for_16x16_tiles(monkeypatch)
    settings = RunSettings(steps=1, device="cpu", output="all", ensemble=1)
    layout = StackLayout(image.shape, rgb=False)
    ticks, outputs = run_to_end(enhance_stack(image, layout, settings))
    assert ticks[-1].inference_passes < settings.inference_passes(layout)  # 26 columns: fewer tiles
    assert ticks[-1].done == ticks[-1].total == settings.progress_total(layout)
    assert [tick.done for tick in ticks] == sorted(tick.done for tick in ticks)
    for result in (outputs.enhanced, outputs.denoised, outputs.linear):
        assert not result[:, :14].any() and result[:, 14:].mean() > 0
