"""The napari plugin in a real viewer: discovery, widget runs, stacks, cancel, samples, menu.

Run under a display: ``xvfb-run -a .venv/bin/pytest -m napari tests/test_napari_plugin.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_zeroig._widget import PLUGIN_NAME, WIDGET_NAME, ZeroIGWidget  # noqa: E402
from zeroig_plugin import PUBLISHED_BRIGHTNESS  # noqa: E402

pytestmark = pytest.mark.napari
RUN_TIMEOUT_MS = 120_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def docked_widget(viewer) -> ZeroIGWidget:
    """The plugin's widget, docked the way the Plugins menu does it (through npe2)."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    return widget


def run_and_wait(qtbot, widget: ZeroIGWidget, layer, steps=1, later_steps=1, on_progress=None, **choices) -> None:
    """Run ``widget`` on ``layer`` on the CPU and wait for the worker to finish."""
    widget.select_layer(layer)
    widget["steps"].value, widget["later_steps"].value = steps, later_steps
    widget["device"].value = "cpu"
    for name, value in choices.items():
        widget[name].value = value
    widget["run"].native.click()
    assert widget.running
    if on_progress is not None:
        widget.worker.yielded.connect(on_progress)
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def test_manifest_is_discovered_through_the_entry_point():
    from importlib.metadata import entry_points

    from npe2 import PluginManager

    assert entry_points(group="napari.manifest")["napari-zeroig"].value == "napari_zeroig:napari.yaml"
    manager = PluginManager()
    manager.discover()
    manifest = manager.get_manifest(PLUGIN_NAME)
    contributions = manifest.contributions
    assert [widget.display_name for widget in contributions.widgets] == [WIDGET_NAME]
    assert {sample.key for sample in contributions.sample_data} == {"fluorescence", "dark_photo"}
    assert [item.command for item in contributions.menus["napari/layers/filter"]] == ["zeroig.open_for_active_layer"]


def test_gray_uint16_run_adds_every_output_with_the_input_placement(viewer, qtbot):
    image = np.random.default_rng(0).integers(100, 300, (32, 32)).astype(np.uint16)
    layer = viewer.add_image(
        image.copy(), name="cells", scale=(0.5, 0.25), translate=(10, -3), axis_labels=("y", "x"),
        units=("um", "um"), metadata={"objective": "60x", "stage": {"x": 1.5}}, colormap="magma", contrast_limits=(90, 320),
    )
    widget = docked_widget(viewer)
    run_and_wait(qtbot, widget, layer, output="all")
    assert [each.name for each in viewer.layers] == ["cells", "cells enhanced", "cells denoised", "cells denoised (linear)"]
    linear = viewer.layers["cells denoised (linear)"]
    assert tuple(linear.contrast_limits) == (90, 320)  # shown like the input: it keeps the input's intensities
    for output in viewer.layers[1:]:
        assert output.data.dtype == np.uint16 and output.data.shape == image.shape
        np.testing.assert_array_equal(output.scale, layer.scale)
        np.testing.assert_array_equal(output.translate, layer.translate)
        assert output.axis_labels == ("y", "x") and tuple(map(str, output.units)) == ("micrometer",) * 2
        assert output.metadata["objective"] == "60x" and output.colormap.name == "magma"
    # each output layer's metadata says what made it; the input's is untouched
    assert [each.metadata["zeroig"]["output"] for each in viewer.layers[1:]] == ["enhance", "denoise", "linear"]
    assert {each.metadata["zeroig"]["input"] for each in viewer.layers[1:]} == {"cells"}
    viewer.layers["cells denoised"].metadata["stage"]["x"] = 2.0  # an output's metadata is its own, nested values too
    assert layer.metadata == {"objective": "60x", "stage": {"x": 1.5}}
    np.testing.assert_array_equal(layer.data, image)
    assert widget["status"].value == "done, added enhanced and denoised and denoised (linear)"


def test_the_default_output_is_the_linear_denoised_layer(viewer, qtbot):
    layer = viewer.add_image(np.random.default_rng(3).integers(0, 40, (24, 24)).astype(np.uint8), name="dim")
    widget = docked_widget(viewer)
    assert widget["output"].value == "linear" == widget.settings().output
    run_and_wait(qtbot, widget, layer)
    assert [each.name for each in viewer.layers] == ["dim", "dim denoised (linear)"]


def test_rgb_uint8_run_with_one_output(viewer, qtbot):
    image = np.random.default_rng(1).integers(0, 50, (32, 32, 3)).astype(np.uint8)
    layer = viewer.add_image(image, name="photo", rgb=True)
    widget = docked_widget(viewer)
    run_and_wait(qtbot, widget, layer, output="enhance")
    assert [each.name for each in viewer.layers] == ["photo", "photo enhanced"]
    enhanced = viewer.layers["photo enhanced"]
    assert enhanced.rgb and enhanced.data.dtype == np.uint8 and enhanced.data.shape == image.shape


def test_stack_run_goes_plane_by_plane(viewer, qtbot):
    stack = np.random.default_rng(2).integers(0, 1000, (3, 24, 24)).astype(np.uint16)
    layer = viewer.add_image(stack, name="timelapse", axis_labels=("t", "y", "x"), scale=(5, 1, 1))
    widget = docked_widget(viewer)
    widget.select_layer(layer)
    assert widget["stack_axis"].value == 0 and widget["channel_axis"].value is None
    ticks, shown = [], []
    run_and_wait(qtbot, widget, layer, output="denoise", ensemble="2",
                 on_progress=lambda tick: ticks.append(tick) or shown.append(widget["status"].value))
    denoised = viewer.layers["timelapse denoised"]
    assert denoised.data.shape == stack.shape and denoised.data.dtype == np.uint16
    np.testing.assert_array_equal(denoised.scale, (5, 1, 1))
    # per plane: its fitting step, then its inference (2 views, each with a statistics pass)
    assert [tick.plane for tick in ticks] == sorted(tick.plane for tick in ticks) and ticks[-1].plane == 3
    assert ticks[0].step == 1 and shown[0].startswith("plane 1/3, step 1/1")
    assert shown[-1] == "plane 3/3, inference pass 4/4"
    assert ticks[-1].done == ticks[-1].total == 3 * (1 + 4)


def test_the_status_says_when_a_plane_is_fitted_on_crops(viewer, qtbot, monkeypatch):
    from zeroig_plugin import sizing

    monkeypatch.setattr(sizing, "memory_budget", lambda device: sizing.whole_image_fit_bytes(32, 32, device))
    layer = viewer.add_image(np.random.default_rng(3).integers(0, 1000, (40, 40)).astype(np.uint16), name="large")
    widget = docked_widget(viewer)
    widget.select_layer(layer)
    shown = []
    run_and_wait(qtbot, widget, layer, output="denoise", ensemble="1", on_progress=lambda tick: shown.append(widget["status"].value))
    assert shown[0].startswith("plane 1/1, step 1/1 on 16x16 crops")


def test_channel_axis_is_guessed_from_its_label(viewer):
    stack = np.zeros((2, 3, 16, 16), np.uint16)
    layer = viewer.add_image(stack, name="multichannel", axis_labels=("c", "z", "y", "x"), channel_axis=None)
    widget = docked_widget(viewer)
    widget.select_layer(layer)
    assert widget["channel_axis"].value == 0 and widget["stack_axis"].value == 1


def test_the_ensemble_choice_reaches_the_run_settings(viewer):
    widget = docked_widget(viewer)
    assert widget.settings().ensemble is None  # the mode's
    widget["ensemble"].value = "2"
    assert widget.settings().ensemble == 2


def test_cancel_stops_the_run_and_the_viewer_stays_usable(viewer, qtbot):
    layer = viewer.add_image(np.full((32, 32), 20, np.uint8), name="dark")
    widget = docked_widget(viewer)
    ticks = []

    def cancel_on_first_step(tick):
        ticks.append(tick)
        widget["cancel"].native.click()

    run_and_wait(qtbot, widget, layer, steps=10_000, on_progress=cancel_on_first_step)
    assert ticks and ticks[-1].done < 1_000  # steps already queued to the UI still report; see the processing test
    assert [each.name for each in viewer.layers] == ["dark"]
    assert widget["status"].value == "cancelled" and widget["run"].enabled
    run_and_wait(qtbot, widget, layer, output="enhance")
    assert "dark enhanced" in viewer.layers


def test_closing_the_widget_mid_run_stops_the_run_and_nothing_reports_to_it(viewer, qtbot):
    layer = viewer.add_image(np.full((32, 32), 20, np.uint8), name="dark")
    widget = docked_widget(viewer)
    widget.select_layer(layer)
    widget["steps"].value, widget["device"].value = 10_000, "cpu"
    widget["run"].native.click()
    worker, ticks = widget.worker, []
    worker.yielded.connect(ticks.append)
    qtbot.waitUntil(lambda: bool(ticks), timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        widget.native.deleteLater()  # as closing its viewer does
    assert ticks[-1].done < 1_000 and [each.name for each in viewer.layers] == ["dark"]


def test_a_bad_checkpoint_becomes_a_notification(viewer, qtbot, tmp_path):
    from napari.utils.notifications import notification_manager

    bogus = tmp_path / "weights.pt"
    bogus.write_text("not a checkpoint")
    layer = viewer.add_image(np.zeros((16, 16), np.uint8), name="dark")
    widget = docked_widget(viewer)
    already = len(notification_manager.records)
    run_and_wait(qtbot, widget, layer, checkpoint=bogus)
    messages = [str(record.message) for record in notification_manager.records[already:]]
    assert widget["status"].value.startswith("failed") and "weights.pt" in widget["status"].value
    assert len(messages) == 1 and "weights.pt: not a PyTorch checkpoint" in messages[0]
    assert [each.name for each in viewer.layers] == ["dark"] and widget["run"].enabled


def test_layers_menu_action_docks_the_widget_for_the_active_layer(viewer):
    from napari._app_model import get_app_model

    first = viewer.add_image(np.zeros((16, 16), np.uint8), name="first")
    viewer.add_image(np.zeros((16, 16), np.uint16), name="second")
    viewer.layers.selection.active = first
    app = get_app_model()
    assert "zeroig.open_for_active_layer" in [item.command.id for item in app.menus.get_menu("napari/layers/filter")]
    app.commands.execute_command("zeroig.open_for_active_layer").result()
    assert docked_widget(viewer)["image"].value is first


@pytest.mark.parametrize(
    "key, dtype, rgb", [("fluorescence", np.uint16, False), ("dark_photo", np.uint8, True)]
)
def test_sample_data_opens(viewer, key, dtype, rgb):
    viewer.open_sample(PLUGIN_NAME, key)
    layer = viewer.layers[-1]
    assert layer.data.dtype == dtype and layer.rgb == rgb and layer.data.shape[:2] == (256, 256)


def test_the_brightness_choice_reaches_the_run_settings(viewer):
    widget = docked_widget(viewer)
    assert widget.settings().brightness == "headroom" and not widget["brightness"].enabled
    widget["headroom"].value = False
    assert widget["brightness"].enabled and widget.settings().brightness == PUBLISHED_BRIGHTNESS
    widget["brightness"].value = 0.3
    assert widget.settings().brightness == pytest.approx(0.3)
    assert widget.settings().exposure_gain is True
    widget["exposure_gain"].value = False
    assert widget.settings().exposure_gain is False


def test_a_run_refused_before_it_starts_says_why_in_the_status(viewer, qtbot, tmp_path):
    bogus = tmp_path / "weights.pt"
    bogus.write_text("not a checkpoint")
    layer = viewer.add_image(np.zeros((16, 16), np.uint8), name="dark")
    widget = docked_widget(viewer)
    run_and_wait(qtbot, widget, layer, checkpoint=bogus)
    widget["checkpoint"].value = None
    widget["steps"].value = 0
    widget["run"].native.click()
    assert not widget.running
    assert widget["status"].value.startswith("failed: 0 steps apply a checkpoint")  # not the earlier run's failure


def test_outputs_of_channels_split_by_channel_axis_blend_like_their_inputs(viewer, qtbot):
    channels = np.random.default_rng(4).integers(0, 500, (2, 24, 24)).astype(np.uint16)
    viewer.add_image(channels, name=["nuclei", "actin"], channel_axis=0, colormap=["cyan", "magenta"])
    actin = viewer.layers["actin"]
    assert actin.blending == "additive"  # napari's overlay of channels
    widget = docked_widget(viewer)
    run_and_wait(qtbot, widget, actin, ensemble="1")
    output = viewer.layers["actin denoised (linear)"]
    assert output.blending == "additive" and output.colormap.name == "magenta"  # not hiding the channels below


def test_the_linear_output_is_shown_like_its_input_rgb_and_gamma_included(viewer, qtbot):
    image = np.random.default_rng(5).integers(0, 3000, (24, 24, 3)).astype(np.uint16)
    layer = viewer.add_image(image, name="dim rgb", rgb=True, contrast_limits=(0, 4000), gamma=0.5)
    widget = docked_widget(viewer)
    run_and_wait(qtbot, widget, layer, ensemble="1")
    linear = viewer.layers["dim rgb denoised (linear)"]
    assert tuple(linear.contrast_limits) == (0, 4000) and linear.gamma == 0.5


def test_the_chosen_layer_stays_chosen_when_renamed(viewer):
    viewer.add_image(np.zeros((16, 16), np.uint8), name="first")
    stack = viewer.add_image(np.zeros((3, 16, 16), np.uint16), name="stack")
    widget = docked_widget(viewer)
    widget.select_layer(stack)
    widget["stack_axis"].value = None  # the user's choice, kept too
    stack.name = "stack of cells"
    assert widget["image"].value is stack and widget["image"].current_choice == "stack of cells"
    assert widget["stack_axis"].value is None and len(widget["stack_axis"].choices) == 2
