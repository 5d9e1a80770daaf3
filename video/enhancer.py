"""The warm-state frame enhancer: one ZERO-IG model fitted frame after frame.

Design: the fit runs on a copy of each frame downscaled (area averaging) so its longest side is
``fit_size`` pixels, and inference runs on the full frame in one forward pass (the networks are
fully convolutional). Downscaling, not cropping, keeps the frame's global mean brightness, which
the ZERO-IG exposure target is computed from, so the exposure does not jump from frame to frame.

The first frame, and the first frame after a scene cut, get ``first_iters`` steps from the
initial weights; every other frame gets ``iters_per_frame`` steps continuing from the previous
frame's weights and Adam state. Inference uses an exponential moving average of the fitted
weights across frames (``weight_smoothing``): each frame's few Adam steps jitter the weights,
and the average keeps that jitter out of the picture while still following slow changes.

What is left after that is per-frame noise that the denoiser passes differently each frame; a
motion-compensated recursive filter on the output (:mod:`video.temporal`, ``temporal_strength``)
blends each frame with the previous filtered one where they agree to within that noise, and
restarts with the fit (first frame, scene cuts).

Letterbox and pillarbox bars (flat borders, :mod:`zeroig_plugin.borders`) are left out of the fit
and the inference and copied to the output as they came in, as the image front ends do. The box
they enclose is found on the first frame of each scene (the first that is not blank, after a fade
from black) and only grows within it (a frame whose dark edge happens to be flat further in does
not shrink the picture), so the fit's input keeps its size from frame to frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from zeroig_plugin import (
    ENSEMBLE_SIZES, ContentBox, InputError, ZeroIG, find_content, get_recipe, paste_content, processing_record,
)

from .scenecut import SceneCutDetector
from .temporal import TemporalFilter

__all__ = ["WarmStartSettings", "FrameReport", "WarmStartEnhancer", "DEFAULTS"]

_INTEGER_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
# torch has no uint16 math on every device, and makes no tensor of every float (float128, big-endian)
_UPLOAD_DTYPE = {np.dtype(np.uint8): np.uint8, np.dtype(np.uint16): np.int32}
_ROUNDING = 1e-3  # how far a float frame may stray outside [0, 1] (resampling, colour conversion) and be clamped


def _blank(frame: torch.Tensor, tolerance: float) -> bool:
    """Whether ``frame`` holds one value to within ``tolerance`` (a fade's black); its top row is
    read first, so a frame with a picture costs no full-frame pass."""
    return all(float(part.amax() - part.amin()) <= tolerance for part in (frame[..., 0, :], frame))


def _one_colour(frame: torch.Tensor) -> bool:
    """Whether every channel of ``frame`` ``(1, 3, H, W)`` holds one value throughout; its top row
    is read first, so a frame with a picture costs no full-frame pass."""
    return all(bool((part.amax(-1) == part.amin(-1)).all()) for part in (frame[..., 0, :], frame.flatten(2)))


def _checked(frame: torch.Tensor) -> torch.Tensor:
    """``frame`` ``(1, 3, H, W)`` clamped to ``[0, 1]`` if it is within rounding of it; else an
    :class:`InputError` (0-255 floats, NaN, an empty frame), as clamping would whiten or blank it."""
    if frame.ndim != 4 or frame.shape[:2] != (1, 3) or frame.numel() == 0:
        raise InputError(f"expected a (1, 3, H, W) RGB frame, got shape {tuple(frame.shape)}")
    low, high = (float(value) for value in torch.aminmax(frame))
    if not (-_ROUNDING <= low and high <= 1 + _ROUNDING):  # NaN fails both comparisons
        raise InputError(
            f"frame values must lie in [0, 1] (float frames), found {low:g} to {high:g}: "
            "divide 0-255 floats by 255; NaN and infinite values cannot be enhanced"
        )
    return frame.clamp(0, 1)


def _quantize(image: torch.Tensor) -> torch.Tensor:
    """Float in ``[0, 1]`` -> uint8, rounded, on the image's device."""
    return (image * 255 + 0.5).clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class WarmStartSettings:
    """How much to fit per frame, on what size, and which output to keep.

    Attributes:
        first_iters: steps on the first frame and after each scene cut, from the initial weights.
        iters_per_frame: steps on every later frame, continuing from the previous frame.
        fit_size: longest side of the downscaled copy the fit runs on; 0 fits at native size.
        scene_cut_threshold: frame-difference statistic above which the model is reset
            (see :mod:`video.scenecut`); ``None`` never resets.
        weight_smoothing: decay of the moving average of weights used for inference
            (0 infers with the latest weights); restarted at the first frame and every cut.
        output: ``"enhance"`` (brightened) or ``"denoise"`` (brightened and denoised).
        tile: inference tile side for very large frames, ``None`` for one pass.
        temporal_strength: weight of the previous filtered frame in the temporal filter on the
            output (:class:`video.temporal.TemporalFilter`) where nothing moved, in ``[0, 1)``;
            0 switches the filter off. Restarted at the first frame and every cut.
        keep_borders: leave flat borders (letterbox bars) out of the fit and the inference and
            pass them through; ``None`` follows the mode (on in the improved modes, off in
            ``faithful``).
        border_tolerance: the most a bar's values may differ (0-1 scale): a codec leaves a few
            levels of noise on black bars (x264 ultrafast: 0-3 of 255), where a whole row of a
            dark scene spans more with its sensor noise.
        ensemble: inference passes per frame averaged over flips and transposes (1, 2, 4 or 8;
            see ``ZeroIG.infer``): N times the per-frame inference cost. 1 by default, where the
            image front ends use the mode's 8: a frame's budget is small, and the temporal filter
            averages across frames already.
        exposure_gain: bring each frame's output to the brightness by one gain after a fit aimed
            lower (the image front ends' default, ``ZeroIG(exposure_gain=...)``). Off by default:
            a frame's few steps leave the fit short of the level, and the gain would then lift
            each frame the rest of the way at once, noise included (surgical clips: output luma
            0.48 against the references' 0.20, warping error 2.4 against 0.69 x1e-3).
    """

    first_iters: int = 100
    iters_per_frame: int = 2
    fit_size: int = 128
    scene_cut_threshold: float | None = 1.3
    weight_smoothing: float = 0.9
    output: str = "denoise"
    tile: int | None = None
    temporal_strength: float = 0.8
    ensemble: int = 1
    exposure_gain: bool = False
    keep_borders: bool | None = None
    border_tolerance: float = 4 / 255

    def __post_init__(self):
        if self.first_iters < 0 or self.iters_per_frame < 0 or self.fit_size < 0:
            raise ValueError("first_iters, iters_per_frame and fit_size must be >= 0")
        if not 0 <= self.border_tolerance < 1:
            raise ValueError("border_tolerance must be in [0, 1)")
        if not 0 <= self.weight_smoothing < 1:
            raise ValueError("weight_smoothing must be in [0, 1)")
        if not 0 <= self.temporal_strength < 1:
            raise ValueError("temporal_strength must be in [0, 1)")
        if self.ensemble not in ENSEMBLE_SIZES:
            raise ValueError(f"ensemble must be one of {ENSEMBLE_SIZES}, not {self.ensemble!r}")
        if self.output not in ("enhance", "denoise"):
            raise ValueError(f"output must be 'enhance' or 'denoise', not {self.output!r}")


DEFAULTS = WarmStartSettings()


@dataclass(frozen=True)
class FrameReport:
    """What the enhancer did for one frame; ``picture_box``: the part within the frame's flat
    borders (letterbox bars) that was fitted and enhanced, ``None`` when there were none;
    ``fit_crop``: the side of the random crops the frame's fit ran on, where the fitted view was
    too large for a whole-view step in the device's memory (native ``fit_size`` on large frames),
    else ``None``. A frame of one value throughout is passed through unfitted: 0 steps."""

    index: int
    steps: int
    scene_cut: bool
    cut_statistic: float
    loss: float | None
    picture_box: ContentBox | None
    fit_crop: int | None = None


class WarmStartEnhancer:
    """Enhances frames one at a time, keeping the fitted weights and optimiser between them.

    Args:
        settings: fit budget and output choice (:class:`WarmStartSettings`).
        mode, device, seed, brightness: passed to :class:`zeroig_plugin.ZeroIG` (``brightness``:
            the mean luminance each frame's fit aims at; ``None`` is the published 0.5).
        weights: a checkpoint path or state dict to start from (and to return to on a scene cut).

    Example (inside an OpenCV capture loop)::

        enhancer = WarmStartEnhancer(device="auto")
        ok, bgr = capture.read()
        while ok:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            out = cv2.cvtColor(enhancer.enhance(rgb), cv2.COLOR_RGB2BGR)
            ok, bgr = capture.read()
    """

    def __init__(
        self,
        settings: WarmStartSettings = DEFAULTS,
        *,
        mode: str = "default",
        device: str = "auto",
        seed: int = 2,
        weights: str | os.PathLike | dict | None = None,
        brightness: float | None = None,
    ):
        self.settings = settings
        self.keep_borders = get_recipe(mode).keep_borders if settings.keep_borders is None else settings.keep_borders
        # keep_borders=False: the enhancer crops to its own box, one that holds still within a scene.
        exposure = {"brightness": brightness, "exposure_gain": settings.exposure_gain, "keep_borders": False}
        self.model = ZeroIG(mode=mode, device=device, seed=seed, weights=weights, **exposure)
        self._weights_file = weights if isinstance(weights, (str, os.PathLike)) else None
        self._smoothed = (
            ZeroIG(mode=mode, device=self.model.device, seed=seed, weights=self.model.state_dict(), **exposure)
            if settings.weight_smoothing
            else None
        )
        self._cuts = SceneCutDetector(settings.scene_cut_threshold)
        self._temporal_filter = TemporalFilter(settings.temporal_strength)
        self._box: ContentBox | None = None
        self.frames_done = 0
        self._frames_fitted = 0
        self.last_report: FrameReport | None = None

    @property
    def device(self):
        return self.model.device

    def processing_record(self) -> dict[str, object]:
        """The settings that make this enhancer's frames
        (:func:`zeroig_plugin.processing_record`), with the video's own: the steps per later
        frame, the fit's frame size, the scene cuts, the weight smoothing and the temporal filter.
        ``fit_crop`` is known once a frame has been fitted."""
        settings = self.settings
        return processing_record(
            self.model, settings.output, settings.first_iters, ensemble=settings.ensemble, weights=self._weights_file,
            flat_borders_kept=self.keep_borders, steps_per_later_frame=settings.iters_per_frame,
            fit_size=settings.fit_size or "native", scene_cut_threshold=settings.scene_cut_threshold,
            weight_smoothing=settings.weight_smoothing, temporal_strength=settings.temporal_strength,
        )

    def enhance(self, frame: np.ndarray) -> np.ndarray:
        """Enhance the next frame of the sequence.

        Args:
            frame: ``(H, W, 3)`` RGB, uint8 (0-255), uint16 (0-65535) or float in ``[0, 1]``.

        Raises:
            InputError: another shape or dtype, an empty frame, or float values outside
                ``[0, 1]`` (NaN included); the enhancer's state is left as it was.

        Returns:
            ``(H, W, 3)`` RGB ``settings.output`` image: uint8 for integer input, float32 in
            ``[0, 1]`` for float input.
        """
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise InputError(f"expected an (H, W, 3) RGB frame, got shape {frame.shape}")
        result = self.enhance_tensor(self._upload(frame))[0].permute(1, 2, 0)
        if np.issubdtype(frame.dtype, np.floating):
            return result.float().cpu().numpy()
        return _quantize(result).cpu().numpy()

    def enhance_tensor(self, frame: torch.Tensor) -> torch.Tensor:
        """Fit on the downscaled frame, infer on the full frame, then filter it temporally
        (within the frame's borders, with ``keep_borders``; the borders are passed through).

        Args:
            frame: float ``(1, 3, H, W)`` in ``[0, 1]`` on :attr:`device`.

        Returns:
            float ``(1, 3, H, W)`` in ``[0, 1]`` on :attr:`device`: the ``settings.output`` image,
            temporally filtered when ``settings.temporal_strength`` is above 0.

        Raises:
            InputError: as :meth:`enhance`, before any state changes.
        """
        frame = _checked(frame)
        if _one_colour(frame):
            return self._passed_through(frame)
        is_cut, statistic = self._cuts.update(frame)
        fresh = self._frames_fitted == 0 or is_cut
        if is_cut:
            self._restart()
        steps = self.settings.first_iters if fresh else self.settings.iters_per_frame
        box = self._content_box(frame, fresh)
        picture = box.crop(frame)
        fit_view = self.fit_view(picture)
        report = self.model.fit(fit_view, steps) if steps else None
        # Normalisation statistics from the view the fit saw: what it optimised, and no extra
        # full-frame pass (they only matter for modes that read out with image statistics).
        outputs = self._inference_model(restart=fresh).infer_tensor(
            picture, tile=self.settings.tile, statistics_from=fit_view.permute(2, 0, 1).unsqueeze(0),
            ensemble=self.settings.ensemble,
        )
        output = self._temporal(getattr(outputs, self.settings.output), box, frame, reset=fresh)
        self.last_report = FrameReport(
            self.frames_done, steps, is_cut, statistic, report.losses[-1] if report and report.losses else None,
            None if box.covers(*frame.shape[-2:]) else box, report.crop_size if report else None,
        )
        self.frames_done += 1
        self._frames_fitted += 1
        return output

    def _passed_through(self, frame: torch.Tensor) -> torch.Tensor:
        """A frame of one value throughout (a recorder's digital black, a no-signal screen) as it
        is: it holds nothing to fit, and the networks would only paint texture into it. It is
        not fitted, does not count as the scene's previous frame for cut detection, and leaves
        the temporal filter as it was."""
        self.last_report = FrameReport(self.frames_done, 0, False, 0.0, None, None)
        self.frames_done += 1
        return frame

    def _temporal(self, picture: torch.Tensor, box: ContentBox, frame: torch.Tensor, reset: bool) -> torch.Tensor:
        """``picture`` (the output within ``box``) framed by ``frame``'s borders, through the
        temporal filter; the bars are put back after it, which may have warped picture into them."""
        if box.covers(*frame.shape[-2:]):
            return self._temporal_filter(picture, reset=reset)
        filtered = self._temporal_filter(paste_content(frame, box, picture), reset=reset)
        return paste_content(frame, box, box.crop(filtered))

    def _content_box(self, frame: torch.Tensor, fresh: bool) -> ContentBox:
        """What the borders of ``frame`` ``(1, 3, H, W)`` enclose, grown to hold the box of the
        scene so far (a new scene starts from its first frame's); the whole frame without
        ``keep_borders``. A blank frame (a fade's black) is all picture but sets no box."""
        height, width = frame.shape[-2:]
        if not self.keep_borders:
            return ContentBox.whole(height, width)
        if fresh:
            self._box = None
        tolerance = self.settings.border_tolerance
        box = find_content(frame, tolerance)
        if box.covers(height, width) and _blank(frame, tolerance):
            return box
        if self._box is not None and self._box.bottom <= height and self._box.right <= width:
            box = box.union(self._box)
        self._box = box
        return box

    def fit_view(self, frame: torch.Tensor) -> torch.Tensor:
        """The copy of ``frame`` ``(1, 3, H, W)`` the fit runs on, as float32 ``(h, w, 3)`` on the
        device: area-downscaled there so its longest side is ``fit_size``."""
        height, width = frame.shape[-2:]
        longest = max(height, width)
        if self.settings.fit_size and longest > self.settings.fit_size:
            scale = self.settings.fit_size / longest
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            frame = F.interpolate(frame, size=size, mode="area")
        return frame[0].permute(1, 2, 0).float()

    def _inference_model(self, restart: bool) -> ZeroIG:
        """The model to infer with: the fitted one, or the moving average of its weights,
        moved ``1 - weight_smoothing`` of the way to them (or onto them when ``restart``)."""
        if self._smoothed is None:
            return self.model
        fitted = self.model.state_dict()
        weight = 1.0 if restart else 1.0 - self.settings.weight_smoothing
        with torch.no_grad():
            for name, average in self._smoothed.net.state_dict().items():
                if average.is_floating_point():
                    average.lerp_(fitted[name], weight)
                else:
                    average.copy_(fitted[name])
        return self._smoothed

    def _upload(self, frame: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` numpy -> float ``(1, 3, H, W)`` in ``[0, 1]`` on the device, copying the
        integer data across (4x less than float) and scaling there."""
        dtype = frame.dtype.newbyteorder("=")  # big-endian data (FITS, some TIFFs) holds the same values
        scale = _INTEGER_SCALE.get(dtype)
        if scale is None and not np.issubdtype(dtype, np.floating):
            raise InputError(f"expected a uint8, uint16 or float frame, got dtype {frame.dtype}")
        data = np.ascontiguousarray(frame, dtype=_UPLOAD_DTYPE.get(dtype, np.float32))
        tensor = torch.from_numpy(data if data.flags.writeable else data.copy())  # torch warns on read-only memory
        tensor = tensor.to(self.device, non_blocking=True).permute(2, 0, 1).unsqueeze(0).float()
        return tensor / scale if scale else tensor

    def _restart(self) -> None:
        """Back to the initial weights (seeded init or the given checkpoint) and a fresh optimiser."""
        self.model.reset()
