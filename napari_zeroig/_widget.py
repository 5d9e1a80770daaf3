"""The ZERO-IG dock widget: pick a layer and settings, fit in a worker thread, add result layers.

The fitting runs in a :func:`napari.qt.threading.thread_worker` generator that yields progress
every few steps and inference passes (about ten times a second), so the viewer stays responsive,
a napari progress bar advances with the steps, passes and planes, and Cancel takes effect before
the next step or pass. Errors become napari notifications.
"""
from __future__ import annotations

import copy
import threading
from functools import partial

import napari.layers
import napari.viewer
import torch
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import notification_manager, show_error, show_info

from zeroig_plugin import (
    HEADROOM_BRIGHTNESS,
    MAX_BRIGHTNESS,
    PUBLISHED_BRIGHTNESS,
    ZeroIGError,
    available_modes,
    describe_device,
    release_freed_memory,
)

from .processing import (
    ENSEMBLE_CHOICES,
    OUTPUT_CHOICES,
    SCALING_CHOICES,
    Progress,
    RunSettings,
    StackLayout,
    StackOutputs,
    enhance_stack,
)

PLUGIN_NAME = "zeroig"  # npe2 names a plugin after its distribution
WIDGET_NAME = "ZERO-IG enhance"
CHANNEL_LABELS = {"c", "ch", "channel", "channels"}
ONE_LINE_ERRORS = (ZeroIGError, FloatingPointError, MemoryError, torch.cuda.OutOfMemoryError)
"""Failures a user can act on (bad input or checkpoint, a diverged fit, too big for memory): shown
as one line; anything else is a bug and gets napari's notification with its traceback."""


@thread_worker(ignore_errors=True)  # the widget reports errors itself (see ZeroIGWidget._on_error)
def enhance_in_thread(data, layout: StackLayout, settings: RunSettings, should_cancel):
    """:func:`enhance_stack` in a worker thread: yields its progress, returns its outputs. The fit's
    freed memory goes back to the system when it ends (napari keeps running)."""
    try:
        return (yield from enhance_stack(data, layout, settings, should_cancel))
    finally:
        release_freed_memory()


def device_choices() -> list[str]:
    """``auto``, ``cpu`` and each CUDA device of this machine."""
    return ["auto", "cpu", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]


def carried_properties(source: napari.layers.Image) -> dict:
    """The input layer's placement in the world, axis names, units, metadata and look."""
    properties = {
        "scale": source.scale,
        "translate": source.translate,
        "rotate": source.rotate,
        "shear": source.shear,
        "affine": source.affine,
        "axis_labels": source.axis_labels,
        "units": source.units,
        "metadata": _own_copy(source.metadata),
        "rgb": source.rgb,
        "blending": source.blending,
    }
    if not source.rgb:
        properties["colormap"] = source.colormap
    return properties


def _own_copy(metadata: dict) -> dict:
    """A deep copy of a layer's metadata, so that editing an output's does not edit its input's;
    a shallow one where a reader stored something that cannot be copied (an open file)."""
    try:
        return copy.deepcopy(metadata)
    except (TypeError, copy.Error):
        return dict(metadata)


OUTPUT_LAYER_SUFFIXES = {"enhanced": "enhanced", "denoised": "denoised", "linear": "denoised (linear)"}


class ZeroIGWidget(Container):
    """Dock widget: image layer, steps, device, mode, output, checkpoint, stack and channel axes.

    Its fields are reachable by name for scripts, e.g. ``widget["steps"].value = 500``:
    image, steps, later_steps, device, runs_on, mode, output, scaling, ensemble, headroom, brightness, exposure_gain,
    average_with_tv, checkpoint, stack_axis, channel_axis, run, cancel, status.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self._viewer = viewer
        self._layer = ComboBox(name="image", choices=self._image_layers)
        self._steps = SpinBox(
            name="steps", value=RunSettings.steps, min=0, max=100_000,
            tooltip="fitting steps on the first plane (the published method uses 2000; 0 applies a checkpoint as is)",
        )
        self._later_steps = SpinBox(
            name="later_steps", label="steps per next plane", value=RunSettings.later_steps, min=0, max=100_000,
            tooltip="fitting steps on each later plane of a stack, starting from the previous plane's fit",
        )
        self._device = ComboBox(name="device", choices=device_choices())
        self._device_name = Label(name="runs_on")
        self._mode = ComboBox(name="mode", choices=available_modes())
        self._output = ComboBox(
            name="output", choices=OUTPUT_CHOICES, value=RunSettings.output,
            tooltip="linear: denoised at the layer's own intensities (proportional to them, shown with the input's "
            "contrast limits), for quantitative images; denoise: brightened and denoised; enhance: brightened; "
            "both: enhance and denoise; all: the three. linear alone keeps the fit's weights with the lowest "
            "estimated error of linear; the others, the weights that denoise best by the published loss's score",
        )
        self._scaling = ComboBox(
            name="scaling", choices=SCALING_CHOICES,
            tooltip="auto, nothing clipped: uint8 and uint16 by their dtype's range, other non-negative integers "
            "from 0 to 65535 or their maximum (int16: at most 32767), floats and negative data from their "
            "minimum to their maximum. percentiles: the 0.1-99.9 percentiles to 0-1, values beyond clipped "
            "(for hot pixels)",
        )
        self._ensemble = ComboBox(
            name="ensemble", choices=ENSEMBLE_CHOICES,
            tooltip="inference passes averaged over flips and transposes of each plane (geometric self-ensemble: "
            "a little less noise for that many passes); mode's: 8 for the improved modes, 1 for faithful",
        )
        self._headroom = CheckBox(
            name="headroom", value=True, text="brightness from the highlights",
            tooltip="set the brightness from each channel's first plane so that its brightest structures are "
            "not clipped (at most 0.5); a sparse sample aimed at mid-grey is clipped, which costs denoising. "
            "Not in mode faithful, which keeps the published 0.5",
        )
        self._brightness = FloatSpinBox(
            name="brightness", value=PUBLISHED_BRIGHTNESS, min=0.05, max=MAX_BRIGHTNESS, step=0.05, enabled=False,
            tooltip="mean level (of the scaled range) of the enhanced planes, without the headroom rule; 0.5 "
            "(mid-grey) is the published rule's target",
        )
        self._exposure_gain = CheckBox(
            name="exposure_gain", value=RunSettings.exposure_gain,
            tooltip="fit aimed at 0.7 of the brightness, one gain bringing the denoised output up to it (as in the "
            "image command line; it denoised the microscopy pairs better, the linear output level); a stack's "
            "planes share one gain (one tone curve: a dim plane stays dimmer than a bright one); off: the "
            "fit's own exposure rule sets the level, as published. Not in mode faithful",
        )
        self._average_with_tv = CheckBox(
            name="average_with_tv", value=RunSettings.average_with_tv, text="average linear with TV",
            tooltip="average the linear output half and half with the plane denoised by total variation, its "
            "weight chosen on the plane itself (Noise2Self): two denoisers whose errors differ, which "
            "denoised three of the four microscopy benchmark pairs better than either alone. Not in mode faithful",
        )
        self._checkpoint = FileEdit(name="checkpoint", mode="r", filter="*.pt *.pth *.ckpt", nullable=True)
        self._stack_axis = ComboBox(
            name="stack_axis", choices=self._axis_choices,
            tooltip="planes are fitted along this axis (time or z), each starting from its neighbour's fit",
        )
        self._channel_axis = ComboBox(
            name="channel_axis", choices=self._axis_choices,
            tooltip="each channel along this axis is enhanced on its own, as gray planes",
        )
        self._run_button = PushButton(name="run", text="Run")
        self._cancel_button = PushButton(name="cancel", text="Cancel", enabled=False)
        self._status = Label(name="status", value="idle")
        super().__init__(
            widgets=[
                self._layer, self._steps, self._later_steps, self._device, self._device_name, self._mode,
                self._output, self._scaling, self._ensemble, self._headroom, self._brightness, self._exposure_gain,
                self._average_with_tv, self._checkpoint,
                self._stack_axis, self._channel_axis, self._run_button, self._cancel_button, self._status,
            ]
        )
        self._cancel_requested = threading.Event()
        self._worker = None
        self._reports: list[tuple] = []  # the running worker's signals and the widget's slots on them
        self._progress_bar: progress | None = None
        self._layer.changed.connect(self._choose_axes)
        self._device.changed.connect(self._show_device)
        self._headroom.changed.connect(lambda on: setattr(self._brightness, "enabled", not on))
        self._run_button.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self.native.destroyed.connect(self._abandon_run)
        self._choose_axes()
        self._show_device()

    @property
    def worker(self):
        """The running job's napari ``GeneratorWorker`` (its ``yielded`` signal carries the
        :class:`~napari_zeroig.processing.Progress` ticks), or ``None`` when idle."""
        return self._worker

    @property
    def running(self) -> bool:
        return self._worker is not None

    def select_layer(self, layer: napari.layers.Image) -> None:
        """Make ``layer`` the one the next run enhances."""
        self._layer.reset_choices()
        self._layer.value = layer

    def reset_choices(self, *_) -> None:
        """Fresh layer and axis choices (napari calls this when layers are added, removed, moved or
        renamed); the chosen layer stays chosen under a new name."""
        chosen = self._layer.value
        if chosen is not None:
            # magicgui keeps the choice whose text was shown: show the chosen layer's current name first
            self._layer.native.setItemText(self._layer.native.currentIndex(), chosen.name)
        super().reset_choices()

    def _image_layers(self, _widget=None) -> list[tuple[str, napari.layers.Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, napari.layers.Image)]

    def _axis_choices(self, _widget=None) -> list[tuple[str, int | None]]:
        """``none`` and each axis outside the image plane, named by its label and size."""
        layer = self._layer.value
        choices: list[tuple[str, int | None]] = [("none", None)]
        if layer is None:
            return choices
        for axis in range(layer.ndim - 2):
            choices.append((f"{axis}: {layer.axis_labels[axis]} ({layer.data.shape[axis]})", axis))
        return choices

    def _choose_axes(self) -> None:
        """Fresh axis choices for the selected layer; guess the channel axis from its label."""
        self._stack_axis.reset_choices()
        self._channel_axis.reset_choices()
        layer = self._layer.value
        if layer is None:
            return
        outer = range(layer.ndim - 2)
        channel = None if layer.rgb else next((a for a in outer if layer.axis_labels[a].lower() in CHANNEL_LABELS), None)
        stacks = [axis for axis in outer if axis != channel]
        self._channel_axis.value = channel
        self._stack_axis.value = stacks[-1] if stacks else None

    def _show_device(self) -> None:
        try:
            self._device_name.value = describe_device(self._device.value)
        except ZeroIGError as error:
            self._device_name.value = str(error)

    def settings(self) -> RunSettings:
        """The run settings the widget shows."""
        return RunSettings(
            steps=self._steps.value,
            later_steps=self._later_steps.value,
            mode=self._mode.value,
            device=self._device.value,
            output=self._output.value,
            scaling=self._scaling.value,
            checkpoint=self._checkpoint.value,
            ensemble=None if self._ensemble.value == ENSEMBLE_CHOICES[0] else int(self._ensemble.value),
            brightness=HEADROOM_BRIGHTNESS if self._headroom.value else self._brightness.value,
            exposure_gain=self._exposure_gain.value,
            average_with_tv=self._average_with_tv.value,
        )

    def run(self) -> None:
        """Start enhancing the selected layer in a worker thread (ignored while one runs)."""
        layer = self._layer.value
        if self.running:
            return
        if layer is None:
            show_info("ZERO-IG: add or choose an image layer first")
            return
        try:
            if layer.multiscale:
                raise ZeroIGError(f"{layer.name}: multiscale (pyramid) layers are not supported")
            layout = StackLayout(tuple(layer.data.shape), layer.rgb, self._stack_axis.value, self._channel_axis.value)
            settings = self.settings()
            total = settings.progress_total(layout)
        except ZeroIGError as error:
            self._on_error(error)
            return
        self._cancel_requested.clear()
        self._progress_bar = progress(total=total, desc=f"ZERO-IG {layer.name}")
        worker = enhance_in_thread(layer.data, layout, settings, self._cancel_requested.is_set)
        self._reports = [(worker.yielded, self._on_progress), (worker.returned, partial(self._add_outputs, layer)),
                         (worker.errored, self._on_error), (worker.finished, self._on_finished)]
        for signal, slot in self._reports:
            signal.connect(slot)
        self._worker = worker
        self._set_running(True)
        self._status.value = f"starting on {self._device_name.value}"
        worker.start()

    def cancel(self) -> None:
        """Stop the run before its next step; no layer is added."""
        if self.running:
            self._cancel_requested.set()
            self._status.value = "cancelling"

    def _abandon_run(self) -> None:
        """The widget is gone (its viewer closed): stop the run before its next step, and let it
        report to nothing that was deleted with the widget."""
        self._cancel_requested.set()
        worker, self._worker = self._worker, None
        if worker is None:
            return
        for signal, slot in self._reports:
            signal.disconnect(slot)
        if self._progress_bar is not None:
            worker.finished.connect(self._progress_bar.close)
            self._progress_bar = None

    def _set_running(self, running: bool) -> None:
        self._run_button.enabled = not running
        self._cancel_button.enabled = running

    def _on_progress(self, tick: Progress) -> None:
        text = f"plane {tick.plane}/{tick.planes}, "
        if tick.inference_pass is not None:
            text += f"inference pass {tick.inference_pass}/{tick.inference_passes}"
        else:
            text += f"step {tick.step}/{tick.steps}"
            if tick.fit_crop is not None:
                text += f" on {tick.fit_crop}x{tick.fit_crop} crops"
            if tick.loss is not None:
                text += f", loss {tick.loss:.4g}"
        self._status.value = text
        bar = self._progress_bar  # napari's bar processes Qt events, which may finish the run meanwhile
        if bar is not None:
            bar.set_description(text)  # before the update, whose events may bring a newer tick's text
            bar.update(tick.done - bar.n)

    def _add_outputs(self, source: napari.layers.Image, outputs: StackOutputs | None) -> None:
        """Add ``<name> enhanced`` / ``<name> denoised`` / ``<name> denoised (linear)`` (the fields of
        ``outputs`` requested) beside ``source``; the linear one with the input's contrast limits and gamma."""
        if outputs is None:
            self._status.value = "cancelled"
            show_info(f"ZERO-IG: cancelled, no layer added for {source.name}")
            return
        added = []
        for field, data in outputs.requested().items():
            suffix = OUTPUT_LAYER_SUFFIXES[field]
            added.append(suffix)
            properties = carried_properties(source)
            properties["metadata"]["zeroig"] = {**outputs.provenance[field], "input": source.name}
            look = {"contrast_limits": source.contrast_limits, "gamma": source.gamma} if field == "linear" else {}
            self._viewer.add_image(data, name=f"{source.name} {suffix}", **properties, **look)
        self._status.value = f"done, added {' and '.join(added)}"

    def _on_error(self, error: Exception) -> None:
        """A notification for a failed run: one line for :data:`ONE_LINE_ERRORS`, else with traceback.

        (napari 0.9.2's workers do not relay errors themselves: their notifying mixin is never
        initialised, so this is the only report.)
        """
        self._status.value = f"failed: {error}"
        if isinstance(error, ONE_LINE_ERRORS):
            show_error(f"ZERO-IG: {error or type(error).__name__}")
        else:
            notification_manager.receive_error(type(error), error, error.__traceback__)

    def _on_finished(self) -> None:
        if self._progress_bar is not None:
            self._progress_bar.close()
            self._progress_bar = None
        self._worker = None
        self._set_running(False)


def open_for_active_layer(viewer: napari.viewer.Viewer) -> None:
    """Layers menu action: dock the ZERO-IG widget with the active image layer selected."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    layer = viewer.layers.selection.active
    if isinstance(layer, napari.layers.Image):
        widget.select_layer(layer)
