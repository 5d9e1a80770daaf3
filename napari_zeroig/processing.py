"""The numpy side of the napari plugin, with no Qt import: intensity scaling, plane layout and
warm-started processing of stacks as a generator that reports progress step by step.

Intensity scaling (what users should know), ``scaling="auto"``, nothing clipped, outputs mapped
back exactly:

* ``uint8`` and ``uint16`` data is divided by its dtype's range (``0..255``, ``0..65535``), so a
  dim 12-bit camera image stored as ``uint16`` stays dim, which is what ZERO-IG brightens; other
  integers with no negative value (``int16``, ``int32``, ``uint32``) by 65535 or their maximum
  where it is above, at most their dtype's maximum (``int16``: 32767), as the command line reads
  them (``zeroig_plugin.value_scale``); outputs are rounded back to the input's dtype.
* float data within ``0..1`` is used as it is, so a dim layer stays dim and can be brightened;
  float data of any other range, and integers with negative values (CT in ``int16``), are mapped
  from their minimum to their maximum (over the whole layer, per channel when there is a channel
  axis): a bead or an implant a few pixels across keeps its intensity. Only where a few wild
  values would leave 99.9 % of the data under a thousandth of that range (a 1e9 among hundreds)
  are the percentiles below used instead.
* ``scaling="percentiles"`` maps the 0.1th and 99.9th percentiles to 0 and 1 and clips values
  beyond, which flattens structures covering under 0.1 % of the pixels: for data whose extremes
  are outliers (hot pixels) rather than structures.
* the alpha channel of RGBA data is copied to the outputs as it is.
* NaN and infinities in float data (no data: outside a registered field, masked pixels) are
  fitted as their nearest data (whole rows and columns without data as a flat border) and are
  NaN in the outputs, as the command line does.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from zeroig_plugin import (
    ENSEMBLE_SIZES, HEADROOM_BRIGHTNESS, MAX_BRIGHTNESS, ImageOutputs, InputError, StackExposure, ZeroIG,
    brightness_applied, fill_no_data, get_recipe, inference_passes, load_state_dict, processing_record, value_scale,
)

__all__ = [
    "IntensityScale",
    "StackLayout",
    "Progress",
    "StackOutputs",
    "RunSettings",
    "enhance_stack",
    "OUTPUT_CHOICES",
    "SCALING_CHOICES",
    "ENSEMBLE_CHOICES",
    "LOW_PERCENTILE",
    "HIGH_PERCENTILE",
]

LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9
PERCENTILE_SAMPLE = 4_000_000  # values read to estimate float percentiles on big layers
MIN_PICTURE_SHARE = 1e-3  # below this share of the full range the picture is lost to float32 and the fit's 1e-4 offset
REPORT_INTERVAL_S = 0.1  # fit about this long between progress reports (one step at least)
OUTPUTS_OF_CHOICE = {
    "linear": ("linear",), "denoise": ("denoise",), "enhance": ("enhance",),
    "both": ("enhance", "denoise"), "all": ("enhance", "denoise", "linear"),
}
OUTPUT_CHOICES = tuple(OUTPUTS_OF_CHOICE)
OUTPUT_FIELDS = ("enhanced", "denoised", "linear")  # StackOutputs' arrays, in ImageOutputs' order
SCALING_CHOICES = ("auto", "percentiles")
ENSEMBLE_CHOICES = ("mode's", *map(str, ENSEMBLE_SIZES))  # inference passes averaged over flips and transposes


@dataclass(frozen=True)
class IntensityScale:
    """A linear map between a layer's values (``low``..``high`` in ``dtype``) and ``[0, 1]``."""

    low: float
    high: float
    dtype: np.dtype

    @classmethod
    def for_data(cls, data: np.ndarray, scaling: str = "auto") -> IntensityScale:
        """``auto``: non-negative integers as the command line reads them
        (``zeroig_plugin.value_scale``: the dtype's range for ``uint8`` and ``uint16``, else 0 to
        65535 or the peak, at most the dtype's maximum); floats within ``0..1`` as they are; other
        floats and data with negative values from their minimum to their maximum, so nothing is
        clipped, unless a few wild values (1e9 among hundreds) would leave 99.9 % of the data under
        a thousandth of that range: then, and with ``percentiles``, the robust percentiles, values
        beyond clipped."""
        dtype = np.dtype(data.dtype)
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise InputError(f"cannot enhance {dtype} data: expected integers or floats")
        if scaling == "auto" and dtype in (np.uint8, np.uint16):  # by the dtype alone: a lazy layer is not read whole
            return cls(0.0, value_scale(np.empty(0, dtype)).scale, dtype)
        values = np.asarray(data)
        if scaling == "auto" and np.issubdtype(dtype, np.integer) and int(values.min(initial=0)) >= 0:
            return cls(0.0, value_scale(values).scale, dtype)
        lowest, highest = _finite_extremes(values)
        if not np.isfinite(lowest):
            raise InputError("the image has no finite values")
        if scaling == "auto" and np.issubdtype(dtype, np.floating) and 0.0 <= lowest and highest <= 1.0:
            return cls(0.0, 1.0, dtype)  # already on the unit range: a dim layer stays dim, to be brightened
        low, high = _robust_range(values)
        if scaling == "auto" and high - lowest >= MIN_PICTURE_SHARE * (highest - lowest):
            low, high = lowest, highest
        if high <= low:  # a constant image
            high = low + 1.0
        return cls(low, high, dtype)

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """``values`` (a plane, ``(Y, X)`` or ``(Y, X, 3)``) as float32 in ``[0, 1]``; NaN and
        infinities (no data) filled from the nearest data, as the command line fits them
        (``zeroig_plugin.fill_no_data``)."""
        unit = (np.asarray(values, dtype=np.float64) - self.low) / (self.high - self.low)
        return np.clip(fill_no_data(unit), 0.0, 1.0).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """``[0, 1]`` values back in this scale's range and dtype (rounded for integers)."""
        values = self.low + np.asarray(unit, dtype=np.float64) * (self.high - self.low)
        if np.issubdtype(self.dtype, np.integer):
            values = np.clip(np.rint(values), np.iinfo(self.dtype).min, np.iinfo(self.dtype).max)
        return values.astype(self.dtype)


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    """The 0.1th and 99.9th percentiles of the finite ``values``, from a sample on big layers."""
    flat = values.reshape(-1)
    sample = flat[:: max(1, math.ceil(flat.size / PERCENTILE_SAMPLE))].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if not sample.size:  # the sample's stride missed the few finite values
        sample = flat[np.isfinite(flat)].astype(np.float64)
    low, high = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE])
    return float(low), float(high)


def _finite_extremes(values: np.ndarray) -> tuple[float, float]:
    """The smallest and largest finite values of ``values`` (``inf, -inf`` where it holds none), without a copy."""
    if not np.issubdtype(values.dtype, np.floating):
        return float(values.min()), float(values.max())
    finite = np.isfinite(values)
    return float(values.min(where=finite, initial=np.inf)), float(values.max(where=finite, initial=-np.inf))


@dataclass(frozen=True)
class StackLayout:
    """Where the image plane lies in a layer's array and how the other axes are walked.

    The plane is the last two axes, or the two before the colour axis when ``rgb``. Each channel
    of ``channel_axis`` is processed on its own, as gray planes. Within a channel the planes are
    visited with ``stack_axis`` varying fastest, so each plane's fit starts from the weights of
    its neighbour along that axis.
    """

    shape: tuple[int, ...]
    rgb: bool
    stack_axis: int | None = None
    channel_axis: int | None = None

    def __post_init__(self) -> None:
        ndim = len(self.shape)
        if self.rgb and (ndim < 3 or self.shape[-1] not in (3, 4)):
            raise InputError(f"an RGB(A) layer needs a last axis of 3 or 4, got shape {self.shape}")
        if ndim < 2 + self.rgb:
            raise InputError(f"expected at least a 2D image, got shape {self.shape}")
        if self.rgb and self.channel_axis is not None:
            raise InputError("an RGB(A) layer has its colours in the last axis: leave the channel axis at none")
        for name, axis in (("stack", self.stack_axis), ("channel", self.channel_axis)):
            if axis is not None and axis not in self.outer_axes:
                raise InputError(f"the {name} axis must be one of the non-image axes {self.outer_axes}, got {axis}")
        if self.stack_axis is not None and self.stack_axis == self.channel_axis:
            raise InputError("the stack axis and the channel axis must differ")

    @property
    def plane_axes(self) -> tuple[int, int]:
        ndim = len(self.shape)
        return (ndim - 3, ndim - 2) if self.rgb else (ndim - 2, ndim - 1)

    @property
    def outer_axes(self) -> tuple[int, ...]:
        """The axes that are neither the image plane nor the colour axis."""
        return tuple(range(self.plane_axes[0]))

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else self.shape[self.channel_axis]

    @property
    def walk_axes(self) -> tuple[int, ...]:
        """The axes walked within one channel, slowest first, the stack axis last."""
        axes = [axis for axis in self.outer_axes if axis not in (self.channel_axis, self.stack_axis)]
        return (*axes, self.stack_axis) if self.stack_axis is not None else tuple(axes)

    @property
    def planes_per_channel(self) -> int:
        return math.prod(self.shape[axis] for axis in self.walk_axes)

    def planes(self, channel: int) -> Iterator[tuple]:
        """Index tuples selecting each plane of ``channel``, in warm-start order."""
        for position in np.ndindex(*(self.shape[axis] for axis in self.walk_axes)):
            index: list = [slice(None)] * len(self.shape)
            if self.channel_axis is not None:
                index[self.channel_axis] = channel
            for axis, at in zip(self.walk_axes, position):
                index[axis] = at
            yield tuple(index)


@dataclass(frozen=True)
class RunSettings:
    """What the user chose: steps for the first and each later plane, engine and outputs.

    ``ensemble``: inference passes averaged over flips and transposes of each plane (1, 2, 4 or
    8; ``None``: the mode's, 8 for the improved modes). ``brightness``: the mean level, in
    ``(0, 0.8]`` of the scaled range, of the enhanced planes (``None``: the published 0.5), or
    ``"headroom"`` (the default): set from each channel's first plane so that its highlights are
    not clipped, at most 0.5 (``ZeroIG(brightness="headroom")``; mode ``faithful`` keeps the
    published 0.5). A sparse fluorescence sample aimed at mid-grey has its structures clipped in
    the brightened image the second denoiser learns from; on the microscopy crops (128x128, two
    seeds) the headroom denoised better (BENCHMARKS.md, "Brightness from the highlights").

    ``exposure_gain`` (on by default, as in the image command line): the fit aims at 0.7 of the
    brightness and one gain brings ``denoise`` up to it (a global tone); off, the fit's own
    exposure rule sets the level, as published; mode ``faithful`` keeps the published
    computation. On the four microscopy pairs at full size (512x512, 1000 steps) the gain lifted
    ``denoise`` by 2.2 dB in the mean and left ``linear`` averaged with TV, the default output,
    level (BENCHMARKS.md, "Napari with the exposure gain"). A stack's planes share one gain per
    channel, the smallest of theirs (:class:`~zeroig_plugin.StackExposure`): one tone curve for
    all of them, so a dim plane stays dimmer than a bright one.

    With ``output`` ``"linear"`` alone (the default), checkpoint selection keeps the weights with the
    lowest estimated error of ``linear`` (``ZeroIG(select_for="linear")``); with other outputs,
    the mode's score, which serves ``denoise``.

    ``average_with_tv`` (on by default) averages ``linear`` half and half with the plane denoised
    by total variation, its weight chosen on the plane by Noise2Self's loss
    (``ZeroIG(average_with_tv=True)``): on the microscopy crops +0.2 to +2.3 dB on three pairs of
    four, 0.07 dB less on FMD (BENCHMARKS.md, "The fit averaged with a classical denoiser"); mode
    ``faithful`` keeps the published computation."""

    steps: int = 300
    later_steps: int = 50
    mode: str = "default"
    device: str = "auto"
    output: str = "linear"
    scaling: str = "auto"
    checkpoint: str | os.PathLike | None = None
    ensemble: int | None = None
    brightness: float | str | None = HEADROOM_BRIGHTNESS
    exposure_gain: bool = True
    average_with_tv: bool = True

    def __post_init__(self) -> None:
        if self.steps < 0 or self.later_steps < 0:
            raise InputError("steps must be 0 or more")
        if self.steps == 0 and not self.checkpoint:
            raise InputError("0 steps apply a checkpoint as it is: choose a checkpoint, or fit for some steps")
        if self.output not in OUTPUT_CHOICES:
            raise InputError(f"output must be one of {', '.join(OUTPUT_CHOICES)}, got {self.output!r}")
        if self.scaling not in SCALING_CHOICES:
            raise InputError(f"scaling must be one of {', '.join(SCALING_CHOICES)}, got {self.scaling!r}")
        if self.ensemble is not None and self.ensemble not in ENSEMBLE_SIZES:
            raise InputError(f"ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, got {self.ensemble!r}")
        if self.brightness not in (None, HEADROOM_BRIGHTNESS) and not (
            isinstance(self.brightness, (int, float)) and 0 < self.brightness <= MAX_BRIGHTNESS
        ):
            raise InputError(f"brightness must be in (0, {MAX_BRIGHTNESS}] or {HEADROOM_BRIGHTNESS!r}, got {self.brightness!r}")

    def model_factory(self) -> Callable[[], ZeroIG]:
        """A maker of fresh models (which fit planes too large for a whole-plane step in the device's
        memory on random crops); the checkpoint is read once, here."""
        weights = load_state_dict(self.checkpoint) if self.checkpoint else None
        published = get_recipe(self.mode).name == "faithful"
        return lambda: ZeroIG(
            mode=self.mode, device=self.device, weights=weights, brightness=self._model_brightness(),
            exposure_gain=self.exposure_gain and not published,
            select_for=self.output if self.output == "linear" else None,
            average_with_tv=self.average_with_tv and not published,
        )

    def _model_brightness(self) -> float | str | None:
        """``brightness`` as the engine takes it: the headroom rule is not part of the published method."""
        if self.brightness == HEADROOM_BRIGHTNESS and get_recipe(self.mode).name == "faithful":
            return None
        return self.brightness

    def inference_passes(self, layout: StackLayout) -> int:
        """Inference passes per plane of ``layout``: views times tiles, statistics passes included."""
        height, width = (layout.shape[axis] for axis in layout.plane_axes)
        return inference_passes(self.mode, height, width, ensemble=self.ensemble, device=self.device)

    def progress_total(self, layout: StackLayout) -> int:
        """Units of progress in a run on ``layout``: one per fitting step and per inference pass."""
        later_planes = layout.planes_per_channel - 1
        fitting = self.steps + later_planes * self.later_steps
        return layout.channels * (fitting + layout.planes_per_channel * self.inference_passes(layout))


class Progress(NamedTuple):
    """A progress report: ``done`` of ``total`` units (steps and inference passes), where the run
    is; ``inference_pass`` is ``None`` while the plane is being fitted; ``fit_crop``: the side of
    the random crops the plane's fit runs on, where the plane is too large for a whole-plane step
    in the device's memory."""

    done: int
    total: int
    plane: int
    planes: int
    step: int
    steps: int
    loss: float | None
    inference_pass: int | None = None
    inference_passes: int | None = None
    fit_crop: int | None = None


class StackOutputs(NamedTuple):
    """The requested outputs, each shaped and typed like the input; ``None`` when not requested.
    In the order of :class:`~zeroig_plugin.ImageOutputs`; ``linear``: denoised at the input's own
    intensities (see ``ZeroIG.infer``). ``provenance``: for each requested output's field name,
    the settings that made it (:func:`~zeroig_plugin.processing_record`)."""

    enhanced: np.ndarray | None
    denoised: np.ndarray | None
    linear: np.ndarray | None
    provenance: dict[str, dict]

    def requested(self) -> dict[str, np.ndarray]:
        """The requested outputs by field name."""
        return {field: data for field, data in zip(OUTPUT_FIELDS, self) if data is not None}


def enhance_stack(
    data: np.ndarray,
    layout: StackLayout,
    settings: RunSettings,
    should_cancel: Callable[[], bool] = lambda: False,
) -> Generator[Progress, None, StackOutputs | None]:
    """Fit and infer ``data`` plane by plane, yielding :class:`Progress` as it goes.

    Each channel gets a fresh model; its first plane is fitted for ``settings.steps`` steps and
    every later plane, continuing from the previous plane's weights and Adam state, for
    ``settings.later_steps``. Steps run in chunks of about ``REPORT_INTERVAL_S`` (the first of
    each plane is one step), each followed by a report, so fast devices are not held up by a
    report per step; the inference of each plane reports its passes (views and tiles) at most
    that often, and after its last. ``should_cancel`` is checked before every step and every
    inference pass. Returns the outputs, or ``None`` when cancelled. ``data`` is only read.

    With the exposure gain, a channel's planes are brought up by one gain
    (:class:`~zeroig_plugin.StackExposure`, the smallest of the planes' own): ``enhance`` and
    ``denoise`` map equal intensities in any two planes to equal values, as ``linear`` does.
    """
    new_model = settings.model_factory()
    scales = _channel_scales(data, layout, settings.scaling)
    wanted = OUTPUTS_OF_CHOICE[settings.output]
    targets = [np.empty(data.shape, data.dtype) if kind in wanted else None for kind in ImageOutputs._fields]
    brought_up_later = layout.planes_per_channel > 1 and any(kind in wanted for kind in ("enhance", "denoise"))
    planes, total = layout.channels * layout.planes_per_channel, settings.progress_total(layout)
    # A plane with flat borders is inferred in fewer tiles than planned: its passes are spread
    # over the planned units, so the bar still ends at the total.
    planned_passes = settings.inference_passes(layout)
    done = plane = 0
    brightness: list[float] = []  # each channel's
    stack_gains: list[float] = []  # each channel's, where its planes share one

    def store(index: tuple, values: ImageOutputs | dict[str, np.ndarray], scale: IntensityScale) -> None:
        """Write a plane's outputs (all, or those named) into their targets, alpha copied back."""
        named = values._asdict() if isinstance(values, ImageOutputs) else values
        source = np.asarray(data[index])
        alpha = source[..., 3:] if layout.rgb else None
        no_data = ~np.isfinite(source[..., :3] if layout.rgb else source) if np.issubdtype(data.dtype, np.floating) else None
        for target, kind in zip(targets, ImageOutputs._fields):
            if target is not None and kind in named:
                restored = scale.from_unit(named[kind])
                if no_data is not None:
                    restored[no_data] = np.nan
                target[index] = restored if alpha is None else np.concatenate([restored, alpha], axis=-1)

    for channel, scale in enumerate(scales):
        exposure = None
        for order, index in enumerate(layout.planes(channel)):
            plane += 1
            plane_steps = settings.steps if order == 0 else settings.later_steps
            source = np.asarray(data[index])
            unit = scale.to_unit(source[..., :3] if layout.rgb else source)
            if order == 0:
                model = new_model()
                exposure = StackExposure(model) if brought_up_later and StackExposure.applies_to(model) else None
            step, chunk = 0, 1
            while step < plane_steps:
                started = time.perf_counter()
                report = model.fit(unit, min(chunk, plane_steps - step), should_cancel=should_cancel)
                if report.cancelled:
                    return None
                step, done = step + report.steps_done, done + report.steps_done
                yield Progress(done, total, plane, planes, step, plane_steps, report.losses[-1], fit_crop=report.crop_size)
                seconds_per_step = (time.perf_counter() - started) / report.steps_done
                chunk = max(1, int(REPORT_INTERVAL_S / seconds_per_step))
            passes = model.infer_in_passes(unit, ensemble=settings.ensemble)
            reported = time.perf_counter()
            while True:
                if should_cancel():
                    passes.close()
                    return None
                try:
                    passes_done, plane_passes = next(passes)
                except StopIteration as finished:
                    result = finished.value
                    break
                if passes_done < plane_passes and time.perf_counter() - reported < REPORT_INTERVAL_S:
                    continue
                units = passes_done * planned_passes // plane_passes
                yield Progress(done + units, total, plane, planes, plane_steps, plane_steps, None, passes_done, plane_passes)
                reported = time.perf_counter()
            done += planned_passes
            if order == 0:  # a fitted or inferred plane has set it (the headroom rule)
                brightness.append(brightness_applied(model, settings.steps))
            if exposure is None:
                store(index, result, scale)
            else:
                exposure.add(index, unit, result.linear)
                store(index, {"linear": result.linear}, scale)
        if exposure is not None:
            for index, enhance, denoise in exposure.brought_up():
                if should_cancel():
                    return None
                store(index, {"enhance": enhance, "denoise": denoise}, scale)
            stack_gains.append(exposure.gain)
    provenance = {
        field: processing_record(
            model, kind, settings.steps, ensemble=settings.ensemble, weights=settings.checkpoint,
            steps_per_later_plane=settings.later_steps, scaling=settings.scaling,
            brightness=brightness[0] if len(brightness) == 1 else brightness,
            **({"stack_gain": stack_gains[0] if len(stack_gains) == 1 else stack_gains}
               if stack_gains and kind != "linear" else {}),
        )
        for field, kind, target in zip(OUTPUT_FIELDS, ImageOutputs._fields, targets) if target is not None
    }
    return StackOutputs(*targets, provenance)


def _channel_scales(data: np.ndarray, layout: StackLayout, scaling: str) -> list[IntensityScale]:
    """One intensity scale per channel (the colour channels of RGB share one, alpha excluded)."""
    by_dtype = scaling == "auto" and data.dtype in (np.uint8, np.uint16)
    if layout.channel_axis is None or by_dtype:
        return [IntensityScale.for_data(data[..., :3] if layout.rgb else data, scaling)] * layout.channels
    before = (slice(None),) * layout.channel_axis
    return [IntensityScale.for_data(data[(*before, channel)], scaling) for channel in range(layout.channels)]
