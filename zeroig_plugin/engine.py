"""The one fitting engine behind every front end (image CLI, napari, video, scripts).

A :class:`ZeroIG` holds the three networks, their optimiser and (for recipes that use it) a
weight average. ``fit`` runs self-supervised steps on one image, continuing from whatever state
the object holds, so calling it frame after frame is a warm start; ``infer`` gives the two outputs.
"""
from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Generator, Hashable, Iterator, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .acceleration import Acceleration, AutocastNetworks, convolution_precision, resolve_acceleration
from .borders import ContentBox, find_content, paste_content
from .checkpoint import load_state_dict, network_from_state_dict, save_state_dict
from .classical import FINISH_STRIDE, average_with_tv as average_linear_with_tv, tv_denoised
from .ensemble import EnsembleMean, check_ensemble_size, dihedral
from .errors import CheckpointError, DeviceError, InputError
from .host_memory import keep_freed_memory, release_freed_memory
from .improved import HEADROOM_BRIGHTNESS, apply_gain, headroom_brightness
from .improved import exposure_gain as gain_to_brightness
from .networks import Statistics, ZeroIGNet, published_init
from .noise import noise_variance
from .objective import (
    MAX_BRIGHTNESS, Outputs, drift_threshold, first_denoised, image_statistics, infer, is_gray,
    pair_consistency_map, risk_blocks, stein_risk_map, tied_choice,
)
from .recipes import RISK_SCORE, Recipe, get_recipe
from .sizing import (
    FIT_CROPS_PER_STEP, automatic_tile, budget_beside, fit_crop_side, inference_bytes, selection_window,
    whole_image_fit_bytes,
)

__all__ = [
    "ZeroIG", "FitReport", "ImageOutputs", "resolve_device", "describe_device", "inference_passes", "ProgressCallback",
    "risk_inputs",
]

T = TypeVar("T")

ProgressCallback = Callable[[int, int, "float | None"], None]
"""Called after each step with ``(steps_done, steps_total, loss)``; ``loss`` is the loss computed
before that step, given every ``loss_every`` steps and on the last step, else ``None``."""

_INTEGER_PEAKS = {("u", 1): 255.0, ("u", 2): 65535.0}
"""uint8 and uint16 images (any byte order), by ``(kind, itemsize)``, are divided by these, as
:func:`~zeroig_plugin.imageio.value_scale` reads them."""
RANGE_ROUNDING = 1e-3  # how far float values may stray outside [0, 1] and be clamped, as for video frames
MIN_FIT_SIDE = 16  # the blur's reflect padding needs 11 pixels; tiny images are edge-padded to this


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` as a torch device.

    Raises:
        DeviceError: the name is unknown or that device is not on this machine.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise DeviceError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available here (use --device cpu or auto)")
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return resolved


def describe_device(device: str | torch.device = "auto") -> str:
    """A human name for what ``device`` will run on, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'' if threads == 1 else 's'})"


class FitReport(NamedTuple):
    """What one ``fit`` call did: the loss before each step it ran, how many, whether cancelled,
    and the side of the random crops its steps fitted (``None``: the whole image)."""

    losses: list[float]
    steps_done: int
    cancelled: bool
    crop_size: int | None = None


class ImageOutputs(NamedTuple):
    """``enhance``, ``denoise`` and ``linear`` (:class:`~zeroig_plugin.objective.Outputs`) as
    float32 arrays in ``[0, 1]``, laid out like the input."""

    enhance: np.ndarray
    denoise: np.ndarray
    linear: np.ndarray


@dataclass
class _Layout:
    """How an input array was laid out, to give outputs the same layout back."""

    gray: bool
    trailing_channel: bool
    height: int
    width: int


def _to_tensor(image: np.ndarray | torch.Tensor, device: torch.device) -> tuple[torch.Tensor, _Layout]:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` floats in ``[0, 1]``, or ``uint8`` / ``uint16``
    (divided by 255 / 65535, as images are read) -> ``(1, 3, H, W)`` float32 on ``device``.

    Gray is replicated to three channels.
    """
    if isinstance(image, torch.Tensor):  # stays on its device when that is ``device``
        floating, peak = image.is_floating_point(), 255.0 if image.dtype == torch.uint8 else None
    else:
        image = np.asarray(image)
        floating, peak = np.issubdtype(image.dtype, np.floating), _INTEGER_PEAKS.get((image.dtype.kind, image.dtype.itemsize))
    shape = tuple(image.shape)
    if len(shape) == 2:
        layout = _Layout(True, False, *shape)
    elif len(shape) == 3 and shape[-1] in (1, 3):
        layout = _Layout(shape[-1] == 1, True, *shape[:2])
    else:
        raise InputError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {shape}")
    if not floating and peak is None:
        raise InputError(f"expected a float image in [0, 1], uint8 or uint16, got dtype {image.dtype} "
                         "(zeroig_plugin.imageio.to_float maps other types as the command line reads them)")
    if 0 in shape:
        raise InputError(f"the image is empty (shape {shape})")
    tensor = image.detach() if isinstance(image, torch.Tensor) else _float32_tensor(image)
    tensor = tensor.reshape(*shape[:2], -1).to(device=device, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)
    if peak is not None:
        tensor = tensor / peak
    _check_range(tensor)
    tensor = tensor.clamp(0, 1).expand(-1, 3, -1, -1) if layout.gray else tensor.clamp(0, 1)
    return tensor.contiguous(), layout


def _check_range(tensor: torch.Tensor) -> None:
    """Refuse values that clamping to ``[0, 1]`` would whiten or blank (0-255 floats), beyond
    rounding (resampling, colour conversion), and NaN or infinite ones."""
    low, high = (float(value) for value in torch.aminmax(tensor))
    if not (math.isfinite(low) and math.isfinite(high)):  # NaN spreads to both
        raise InputError("the image contains NaN or infinite values")
    if low < -RANGE_ROUNDING or high > 1 + RANGE_ROUNDING:
        raise InputError(
            f"expected float values in [0, 1], found {low:g} to {high:g}: divide 0-255 floats by 255 "
            "(0-65535 by 65535), or clip them"
        )


def _float32_tensor(array: np.ndarray) -> torch.Tensor:
    """A float numpy array of any width or byte order (FITS data is big-endian) as a float32
    tensor, which torch cannot make of every one (``float128``, big-endian) itself."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    return torch.from_numpy(array if array.flags.writeable else array.copy())  # torch warns on read-only memory


def _is_flat(image: torch.Tensor) -> bool:
    """Whether every channel of ``(1, C, H, W)`` holds one value throughout."""
    return bool((image.amax(dim=(-2, -1)) == image.amin(dim=(-2, -1))).all())


def _padded_to_fit(image: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` edge-padded at the bottom and right to sides of at least ``MIN_FIT_SIDE``."""
    height, width = image.shape[-2:]
    pad_h, pad_w = max(0, MIN_FIT_SIDE - height), max(0, MIN_FIT_SIDE - width)
    return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image


def _framed(output: torch.Tensor, image: torch.Tensor, box: ContentBox) -> torch.Tensor:
    """The output for ``box`` of ``image`` (edge padding cut off) framed by ``image``'s borders."""
    output = output[..., : box.height, : box.width]
    return output if box.covers(*image.shape[-2:]) else paste_content(image, box, output)


def _to_array(tensor: torch.Tensor, layout: _Layout) -> np.ndarray:
    tensor = tensor[0]
    if layout.gray:
        tensor = tensor.mean(0, keepdim=True)
    array = tensor.permute(1, 2, 0).float().cpu().numpy()
    return array[..., 0] if not layout.trailing_channel else array


@dataclass
class _WeightAverage:
    """An exponential moving average of the networks' weights (buffers copied as they are)."""

    net: ZeroIGNet
    decay: float
    updates: int = field(default=0)

    def update(self, live: ZeroIGNet) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            averaged = list(self.net.parameters())
            torch._foreach_lerp_(averaged, list(live.parameters()), 1 - decay)
            for mine, theirs in zip(self.net.buffers(), live.buffers()):
                mine.copy_(theirs)


@dataclass
class _ScoredCheck:
    """One checkpoint scored for selection: the score, the score on a grid of blocks
    (:func:`objective.risk_blocks`), the tiebreak among those tied with the lowest
    (:func:`objective.tied_choice`; Stein's risk: the output's mean divergence; the pair score:
    minus the step), and the weights."""

    score: float
    blocks: torch.Tensor
    tiebreak: float
    weights: dict[str, torch.Tensor]


@dataclass
class _BestWeights:
    """The weights inference uses, chosen among the checkpoints scored on one image (``key``) by the
    rule of :func:`objective.tied_choice`, which may move back to an earlier one; the lowest score
    seen, and every checkpoint scored."""

    key: tuple
    window: ContentBox  # the part of the image every checkpoint of it is scored on
    score: float
    net: ZeroIGNet
    checks: list[_ScoredCheck] = field(default_factory=list)


def _image_key(image: torch.Tensor) -> tuple:
    """A cheap fingerprint telling one fitted image from another (one host read per ``fit``)."""
    return (tuple(image.shape), float(image[..., ::7, ::7].double().sum()))


def risk_inputs(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise variance of ``image`` ``(1, 3, H, W)`` (:func:`noise.noise_variance`) and the
    engine's one probe for :func:`objective.stein_risk` (standard normal, seed 0), each
    ``(1, 3, H, W)`` on the image's device. For a gray image (three equal channels) one channel's
    estimate and probe serve all three."""
    probe = torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    channels = 1 if is_gray(image) else 3
    probe = probe[:, :channels].expand_as(probe)
    variance = noise_variance(image[:, :channels]).expand_as(image)
    return variance.contiguous(), probe.to(image.device).contiguous()


class ZeroIG:
    """Zero-shot ZERO-IG enhancement: fit to one image (or frame after frame) and infer.

    Args:
        mode: a recipe name (see :func:`zeroig_plugin.recipes.available_modes`); ``faithful`` is
            the published computation.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seeds the published init (and crop sampling).
        weights: a checkpoint path or a state dict to start from instead of the seeded init.
        optimizer_state: an Adam state dict from :meth:`optimizer_state_dict` to resume with.
        acceleration: ``auto`` (CUDA: channels-last, whole-step CUDA graphs, TF32 convolutions;
            CPU: plain eager), ``exact`` (as auto in full float32), ``off`` (plain eager float32),
            ``max`` (adds bf16 networks and torch.compile) or an
            :class:`~zeroig_plugin.acceleration.Acceleration`. Unavailable parts fall back to
            eager; ``acceleration_notes`` says which and why.
        fit_crop: fit on random native-resolution ``fit_crop x fit_crop`` crops instead of the
            recipe's own choice (as many per step as the recipe's crops, else
            ``FIT_CROPS_PER_STEP``), so a step's cost and memory stop growing with the image;
            inference still covers the whole image. ``"auto"`` (the default) keeps the recipe's
            setting until an image is too large for a whole-image step in this device's memory
            (:func:`~zeroig_plugin.sizing.automatic_fit_crop`: over 80 % of a GPU's, or half of
            the host's, at the measured cost per pixel); from that fit on, the model fits on the
            largest crops that fit.
            ``None`` keeps the recipe's setting whatever the size.
        brightness: the outputs' mean luminance, in ``(0, 0.8]``, that the fit's exposure rule
            aims at (and, with ``exposure_gain``, one gain at inference brings them to); ``None``
            keeps the recipe's (0.5, mid-grey, as published). One dark image cannot tell a night
            scene from a dim room: lower it for scenes meant to stay dark. ``"headroom"`` sets it
            from the first image fitted (or inferred), within its borders, to leave its highlights
            unclipped (:func:`~zeroig_plugin.improved.headroom_brightness`, at most the recipe's):
            for microscopy, whose levels are a display setting.
        exposure_gain: whether the fit aims at 0.7 of ``brightness`` and inference brings the
            outputs to it by one gain on their light, sRGB decoded (the improved modes' default:
            ``denoise`` is ``linear`` brought up, ``enhance`` the input, a global tone),
            or the fit's exposure rule alone sets the level (``False``; the published way, and the
            video pipeline's, whose few steps per frame leave the fit short of its level); ``None``
            keeps the recipe's.
        keep_borders: whether flat borders (letterbox bars, zero fill; :mod:`borders`) are left
            out of the fit and the inference and passed through to the outputs as they came in
            (the improved modes' default), or fitted and enhanced as picture (``False``, the
            published way); ``None`` keeps the recipe's.
        select_for: the output the checkpoint selection of the improved modes serves. ``"linear"``
            ranks checkpoints by Stein's unbiased estimate of that output's error
            (:func:`~zeroig_plugin.objective.stein_risk`, read with its standard error:
            :func:`~zeroig_plugin.objective.tied_choice`), the microscopy front ends'
            choice when ``linear`` is all they write: on the traced microscopy fits it kept
            ``linear`` better than the pair score in the mean (docs/quality.md, item 4).
            ``None`` (or ``"denoise"``, ``"enhance"``) keeps the mode's score, the published loss's
            pair term, which serves ``denoise`` better. The outputs of one inference come from one
            set of weights, so a caller writing ``denoise`` too should leave it ``None``.
        average_with_tv: whether ``linear`` is averaged half and half with the input denoised by
            total variation, its weight chosen on the image by Noise2Self's loss
            (:func:`~zeroig_plugin.classical.average_with_tv`): the default of the microscopy
            front ends and of the image CLI. Two denoisers whose errors differ: on the microscopy
            crops `linear` gained 0.2 to 2.3 dB on three pairs and lost 0.07 on FMD
            (docs/quality.md, item 10). ``enhance`` is not changed; with the global tone of the
            improved modes ``denoise`` is the averaged ``linear`` brought up (photos after 2000
            steps: LOL +0.06 dB, +0.005 SSIM; docs/quality.md, item 6). TV's strength (over the
            noise level) is calibrated on the first image inferred, and kept until :meth:`reset`.
        finish_with_tv: whether ``denoise`` is passed through total variation whose strength is
            calibrated on that output by Noise2Self's loss on its pixel-shuffled sub-images
            (:func:`~zeroig_plugin.classical.tv_denoised`, :data:`~zeroig_plugin.classical.FINISH_STRIDE`):
            the image CLI's default for photos. It takes out the noise the networks leave, most at
            full size (LOL at 600x400, 300 steps: SSIM +0.14; docs/quality.md, item 11); an
            output with little noise left is barely changed. ``enhance`` and ``linear`` are not
            changed. The strength is kept like ``average_with_tv``'s.
        widths: ``enhancer_width``, ``denoiser_width``, ``second_denoiser_width`` for a seeded init.

    Example:
        >>> model = ZeroIG(device="cpu")
        >>> report = model.fit(dark_rgb_float, steps=100)
        >>> out = model.infer(dark_rgb_float)
        >>> out.denoise.shape == dark_rgb_float.shape
        True
    """

    def __init__(
        self,
        mode: str = "default",
        device: str | torch.device = "auto",
        seed: int = 2,
        weights: str | os.PathLike | dict | None = None,
        optimizer_state: dict | None = None,
        acceleration: str | Acceleration = "auto",
        fit_crop: int | str | None = "auto",
        brightness: float | str | None = None,
        exposure_gain: bool | None = None,
        keep_borders: bool | None = None,
        select_for: str | None = None,
        average_with_tv: bool = False,
        finish_with_tv: bool = False,
        **widths: int,
    ):
        self.recipe: Recipe = get_recipe(mode)
        self.average_with_tv = average_with_tv
        self.finish_with_tv = finish_with_tv
        self._tv_strength: float | None = None
        self._finish_strength: float | None = None
        self._brightness_from_image = brightness == HEADROOM_BRIGHTNESS
        if isinstance(brightness, str) and not self._brightness_from_image:
            raise ValueError(f"brightness must be a number or {HEADROOM_BRIGHTNESS!r}, got {brightness!r}")
        if brightness is not None and not self._brightness_from_image:
            if not 0 < brightness <= MAX_BRIGHTNESS:
                raise ValueError(f"brightness must be in (0, {MAX_BRIGHTNESS}], got {brightness}")
            self.recipe = replace(self.recipe, brightness=brightness)
        self.recipe = self.recipe.with_exposure_gain(exposure_gain)
        if keep_borders is not None:
            self.recipe = replace(self.recipe, keep_borders=keep_borders)
        if select_for not in (None, *ImageOutputs._fields):
            raise ValueError(f"select_for must be None or one of {', '.join(ImageOutputs._fields)}, got {select_for!r}")
        self.recipe = self.recipe.selecting_for(select_for)
        self._crops_when_large = fit_crop == "auto"
        if fit_crop is not None and not self._crops_when_large:
            if isinstance(fit_crop, str) or fit_crop < MIN_FIT_SIDE:
                raise ValueError(f"fit_crop must be 'auto', None or a side of at least {MIN_FIT_SIDE}, got {fit_crop!r}")
            self._fit_on_crops(int(fit_crop))
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.acceleration, self.acceleration_notes = resolve_acceleration(acceleration, self.device)
        self.seed = seed
        if weights is None:
            net = published_init(seed, **widths)
        elif isinstance(weights, dict):
            net = network_from_state_dict(weights)
        else:
            net = network_from_state_dict(load_state_dict(weights), source=str(weights))
        self._starting_state = {key: value.detach().clone() for key, value in net.state_dict().items()}
        self.net = net.to(self.device)
        if self.acceleration.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer = self._new_optimizer()
        if optimizer_state is not None:
            self._load_optimizer_state(optimizer_state)
        self._average = (
            _WeightAverage(copy.deepcopy(self.net).requires_grad_(False), self.recipe.weight_average)
            if self.recipe.weight_average
            else None
        )
        self._forget_selection()
        self._risk_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None
        self._crop_generator = torch.Generator().manual_seed(seed)
        self._loss = self.recipe.loss
        self._loss_compiled = False
        dtype = self.acceleration.network_dtype
        self._loss_net = AutocastNetworks(self.net, dtype) if dtype is not None else self.net
        self._graph: _GraphedStep | None = None
        self._warmup_key: tuple | None = None
        self._warmup_steps = 0
        self.steps_done = 0
        self._released_after_step: int | None = None

    @property
    def mode(self) -> str:
        return self.recipe.name

    def _fit_on_crops(self, side: int) -> None:
        crops = self.recipe.crops_per_step if self.recipe.crop_size else FIT_CROPS_PER_STEP
        self.recipe = replace(self.recipe, crop_size=side, crops_per_step=crops)

    def _fit_crop_for(self, height: int, width: int) -> int | None:
        """The side of the random crops a fit of a ``height x width`` image (within its flat
        borders) runs on with this model, or ``None`` for the whole image (``fit_crop`` above)."""
        return fit_crop_side(self.recipe.crop_size, self._crops_when_large, height, width, self.device)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        options = {}
        if self.device.type == "cuda":
            options["fused"] = True
        if self.acceleration.cuda_graph:
            options["capturable"] = True
        return torch.optim.Adam(
            self.net.parameters(),
            lr=self.recipe.learning_rate,
            betas=(0.9, 0.999),
            weight_decay=self.recipe.weight_decay,
            **options,
        )

    def reset(self, seed: int | None = None) -> None:
        """Back to the starting weights (the checkpoint given, else the seeded init) with a fresh
        optimiser, e.g. after a scene cut; a ``seed`` instead re-draws the published init with it."""
        if seed is not None:
            self.seed = seed
            self._starting_state = published_init(seed, **self.net.widths).state_dict()
        self.net.load_state_dict(self._starting_state)
        self.optimizer = self._new_optimizer()
        if self._average is not None:
            self._average = _WeightAverage(copy.deepcopy(self.net).requires_grad_(False), self.recipe.weight_average)
        self._forget_selection()
        self._tv_strength = self._finish_strength = None
        self.steps_done = 0

    def _forget_selection(self) -> None:
        """No best weights kept, no checks counted towards a plateau (a new start)."""
        self._best: _BestWeights | None = None
        self._checks_without_improvement = 0
        self._plateaued = False

    def _load_optimizer_state(self, state: dict) -> None:
        """Resume Adam from ``state``, refused as a :class:`CheckpointError` unless it is one of
        these networks' (torch checks only the number of parameters; moments of other shapes
        would fail at the first step)."""
        try:
            self.optimizer.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"optimizer_state is not an Adam state of these networks ({error})") from None
        for parameter, moments in self.optimizer.state.items():
            if any(torch.is_tensor(value) and value.ndim and value.shape != parameter.shape for value in moments.values()):
                raise CheckpointError("optimizer_state is an Adam state of networks of other widths than these weights")

    def optimizer_state_dict(self) -> dict:
        """A copy of the Adam state, to pass back as ``optimizer_state`` for a warm start elsewhere."""
        return copy.deepcopy(self.optimizer.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A copy of the weights used for inference, in the published state-dict format."""
        return {key: value.detach().clone() for key, value in self._inference_net().state_dict().items()}

    def selection_score(self, image: np.ndarray | torch.Tensor, domain: str | None = None) -> float:
        """The self-supervised score by which checkpoint selection ranks weights
        (:func:`objective.pair_consistency` in ``domain``, or Stein's risk for ``"risk"``; by
        default the recipe's ``selection_domain``), of the weights the fit would infer with now if it did not select
        (the average if there is one), on ``image``, laid out as for :meth:`fit`. Lower is better;
        scores compare checkpoints of one image only. For scripts that trace a fit
        (``benchmarks/selection_trace.py``)."""
        return float(self._score_map(self._current_net(), self._fit_input(image), domain)[0].mean())

    def content_box(self, image: np.ndarray | torch.Tensor) -> ContentBox:
        """The part of ``image`` (laid out as for :meth:`fit`, or a ``(1, 3, H, W)`` tensor) this
        model fits and infers on: what its flat borders enclose (:func:`borders.find_content`)
        with ``keep_borders``, else all of it."""
        if not self.recipe.keep_borders:
            return ContentBox.whole(*image.shape[-2:] if image.ndim == 4 else image.shape[:2])
        if not (isinstance(image, torch.Tensor) and image.ndim == 4):
            image = _to_tensor(image, torch.device("cpu"))[0]
        return find_content(image)

    def _fit_input(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``image`` as laid out for :meth:`fit` -> the ``(1, 3, h, w)`` tensor the fit runs on:
        within its borders (with ``keep_borders``), edge-padded to ``MIN_FIT_SIDE``."""
        tensor, _ = _to_tensor(image, self.device)
        picture = self.content_box(tensor).crop(tensor)
        self._set_brightness_from(picture)
        return _padded_to_fit(picture).contiguous()

    def _set_brightness_from(self, picture: torch.Tensor) -> None:
        """With ``brightness="headroom"``, the first picture seen (``(1, 3, h, w)``, within its
        borders) sets the brightness, once: a fit's exposure target holds still after."""
        if self._brightness_from_image:
            self.recipe = replace(self.recipe, brightness=headroom_brightness(picture, self.recipe.brightness))
            self._brightness_from_image = False

    def _score_map(
        self, net: ZeroIGNet, image: torch.Tensor, domain: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The selection score of ``net`` on ``image`` ``(1, 3, H, W)`` per pixel, in ``domain``
        (default: the recipe's): :func:`objective.pair_consistency_map` (and ``None``), or for
        ``"risk"`` :func:`objective.stein_risk_map` (and the output's divergence per pixel); in
        this engine's convolution precision, without autograd. The score is the map's mean."""
        domain = domain or self.recipe.selection_domain
        with convolution_precision(self.acceleration, self.device), torch.no_grad():
            if domain == RISK_SCORE:
                return stein_risk_map(net, image, *self._risk_inputs(image))
            return pair_consistency_map(net, image, domain), None

    def _risk_inputs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise variance of ``image`` ``(1, 3, H, W)`` and one fixed probe for
        :func:`stein_risk` (:func:`risk_inputs`), computed once per image, so that its checkpoints are scored alike."""
        key = _image_key(image)
        if self._risk_cache is None or self._risk_cache[0] != key:
            self._risk_cache = (key, *risk_inputs(image))
        return self._risk_cache[1], self._risk_cache[2]

    def save(self, path: str | os.PathLike) -> None:
        """Write the inference weights as a published-format checkpoint (atomically)."""
        save_state_dict(self._inference_net(), path)

    def ensemble_size(self, ensemble: int | None = None) -> int:
        """The views :meth:`infer` averages when asked for ``ensemble`` (``None``: the mode's)."""
        return _ensemble_size(self.recipe, ensemble)

    def _inference_net(self) -> ZeroIGNet:
        if self._best is not None:
            return self._best.net
        return self._current_net()

    def _current_net(self) -> ZeroIGNet:
        """The weights the fit would infer with now: the average if there is one, else the live ones."""
        return self._average.net if self._average is not None and self._average.updates else self.net

    def _selects(self) -> bool:
        # Crop fits infer with their final weights: selection gave them nothing in the mean
        # (BENCHMARKS.md, "Checkpoint selection for crop fits").
        return self.recipe.select_after is not None and self.recipe.crop_size is None

    @property
    def checkpoint_selection(self) -> str | None:
        """The score this model's whole-image fits select checkpoints by (a ``selection_domain``:
        ``"enhanced"``, ``"input"`` or ``"risk"``), or ``None`` where they infer with the last
        weights (the published method, fits on crops)."""
        return self.recipe.selection_domain if self._selects() else None

    def _selection_due(self) -> bool:
        done, recipe = self.steps_done, self.recipe
        return done >= recipe.select_after and done % recipe.select_every == 0

    def _consider(self, image: torch.Tensor, key: tuple) -> None:
        """Score the current weights on ``image``, remember them with their weights, and infer with
        the checkpoint kept among all remembered on this image (:func:`objective.tied_choice`): by
        Stein's risk, of those within one standard error of the lowest, the one with the fewest
        degrees of freedom; by the pair score the latest not significantly worse than the lowest
        (:func:`objective.drift_threshold`). One copy of the weights per check. Counts the checks
        in a row that did not lower the score (the plateau that ``late_on_plateau`` waits for)."""
        current = self._current_net()
        window = self._best.window if self._best is not None else self._selection_window(image)
        per_pixel, divergence = self._score_map(current, window.crop(image))
        by_risk = divergence is not None
        tiebreak = float(divergence.mean()) if by_risk else -float(self.steps_done)
        score = float(per_pixel.mean())
        improved = self._count_improvement(score)
        if not math.isfinite(score):
            return
        if self._best is None:
            self._best = _BestWeights(key, window, score, copy.deepcopy(current).requires_grad_(False))
        elif improved:
            self._best.score = score
        checks = self._best.checks
        checks.append(_ScoredCheck(
            score, risk_blocks(per_pixel).cpu(), tiebreak,
            {name: value.detach().clone() for name, value in current.state_dict().items()},
        ))
        kept = tied_choice(
            torch.tensor([c.score for c in checks], dtype=torch.float64), torch.stack([c.blocks for c in checks]),
            torch.tensor([c.tiebreak for c in checks], dtype=torch.float64),
            1.0 if by_risk else drift_threshold(len(checks)),
        )
        self._best.net.load_state_dict(checks[kept].weights)

    def _count_improvement(self, score: float) -> bool:
        """Whether ``score`` is finite and below the lowest seen; counts the checks in a row that were not."""
        if math.isfinite(score) and (self._best is None or score < self._best.score):
            self._checks_without_improvement = 0
            return True
        self._checks_without_improvement += 1
        patience = self.recipe.late_on_plateau
        self._plateaued = self._plateaued or (patience is not None and self._checks_without_improvement >= patience)
        return False

    def _selection_window(self, image: torch.Tensor) -> ContentBox:
        """The part of ``image`` ``(1, 3, H, W)`` its checkpoints are scored on (each read out with
        that part's own statistics), chosen at its first check: all of it, or where one inference
        pass over all of it would not fit the device's memory beside a captured step's graph (or
        at all, for an image fitted whole against the budget, ``fit_crop=None``), its centred part
        that does (:func:`sizing.selection_window`)."""
        _, _, height, width = image.shape
        rows, columns = selection_window(height, width, self.device, self._held_by_graph())
        top, left = (height - rows) // 2, (width - columns) // 2
        return ContentBox(top, top + rows, left, left + columns)

    def _held_by_graph(self) -> int:
        """Bytes a captured step keeps between steps in its CUDA graph's private pool, which no other
        work can use (estimated as the step's peak, :func:`sizing.whole_image_fit_bytes` of its
        view); 0 without one."""
        if self._graph is None:
            return 0
        batch, _, height, width = self._graph.key[0]
        return whole_image_fit_bytes(batch * height, width, self.device)

    def _release_graph_for(self, height: int, width: int, tile: int | None) -> None:
        """Hand back the captured step's memory where one inference pass (over the image, or a
        ``tile`` and its margin) would not fit beside it: after a fit on crops as large as the
        device allows, the graph's pool and the pass together exceed the GPU's memory. The next
        step captures the graph again."""
        window = (height, width) if tile is None else (tile + 2 * RECEPTIVE_MARGIN,) * 2
        held = self._held_by_graph()
        if held and inference_bytes(*window) > budget_beside(self.device, held):
            self._graph = None
            torch.cuda.empty_cache()

    def _training_view(self, image: torch.Tensor) -> torch.Tensor:
        crop = self.recipe.crop_size
        _, _, height, width = image.shape
        if crop is None or (height <= crop and width <= crop):
            return image
        views = []
        for _ in range(self.recipe.crops_per_step):
            top = int(torch.randint(0, max(1, height - crop + 1), (1,), generator=self._crop_generator))
            left = int(torch.randint(0, max(1, width - crop + 1), (1,), generator=self._crop_generator))
            views.append(image[:, :, top : top + crop, left : left + crop])
        return torch.cat(views, 0)

    def fit(
        self,
        image: np.ndarray | torch.Tensor,
        steps: int,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        loss_every: int = 1,
    ) -> FitReport:
        """Run up to ``steps`` optimiser steps on ``image`` (``(H, W)`` or ``(H, W, 1|3)`` float in
        ``[0, 1]``, or uint8 / uint16 divided by 255 / 65535; a numpy array or a tensor, which is used where it lies if on this device), continuing from the current weights and optimiser state.
        Float values beyond rounding of ``[0, 1]`` (0-255 floats), NaN and infinities are an :class:`InputError`.

        ``should_cancel`` is checked before every step; a cancelled fit keeps the steps it ran.
        The loss history holds the loss computed before each step (read from the device every
        ``loss_every`` steps for the progress callback, and all at once at the end).
        """
        if steps < 0:
            raise ValueError("steps must be >= 0")
        tensor = self._fit_input(image)
        crop = self._fit_crop_for(*tensor.shape[-2:])
        if crop is not None and self.recipe.crop_size is None:
            self._fit_on_crops(crop)
        if self.acceleration.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.net.train()
        selecting = self._selects() and steps > 0
        key = _image_key(tensor) if selecting else None
        if selecting and self._best is not None and self._best.key != key:
            self._best = None  # a different image: its scores are not comparable
            self._checks_without_improvement = 0
        scored_last = False
        losses: list[torch.Tensor] = []
        cancelled = False
        for step in range(steps):
            if should_cancel is not None and should_cancel():
                cancelled = True
                break
            for group in self.optimizer.param_groups:
                group["lr"] = self.recipe.learning_rate_at(self.steps_done, self._plateaued or not self._selects())
            with convolution_precision(self.acceleration, self.device):
                loss = self._train_step(self._training_view(tensor))
            if self._average is not None:
                self._average.update(self.net)
            losses.append(loss)
            self.steps_done += 1
            scored_last = selecting and self._selection_due()
            if scored_last:
                self._consider(tensor, key)
            if progress is not None:
                report = (step + 1) % max(1, loss_every) == 0 or step + 1 == steps
                progress(step + 1, steps, float(loss) if report else None)
        # The final weights too, unless this call was a short chunk of a longer fit (napari fits in
        # chunks of about 0.1 s): scoring each chunk's end would cost a forward per chunk.
        if self._best is not None and len(losses) >= self.recipe.select_every and not scored_last:
            self._consider(tensor, key)
        history = torch.stack(losses).tolist() if losses else []
        if any(not math.isfinite(value) for value in history):
            hint = ""
            if self.acceleration.network_dtype is not None or self.acceleration.compile:
                hint = "; bf16 networks or torch.compile are on: acceleration 'exact' fits in full float32"
            raise FloatingPointError(f"the fit diverged (non-finite loss){hint}")
        return FitReport(history, len(history), cancelled, crop)

    def _eager_step(self, view: torch.Tensor) -> torch.Tensor:
        """One optimiser step on ``view`` ``(B, 3, H, W)``; the loss before it, as a device scalar.

        Nothing here reads a value back to the host, so it can be captured as a CUDA graph.
        """
        loss = self._loss(self._loss_net, view, self.recipe.fit_brightness())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.recipe.gradient_clip)
        self.optimizer.step()
        return loss.detach()

    def _train_step(self, view: torch.Tensor) -> torch.Tensor:
        """A step by whichever route this engine's acceleration allows: compiled, graphed or eager."""
        if self.acceleration.compile and not self._loss_compiled:
            return self._first_compiled_step(view)
        if not self.acceleration.cuda_graph:
            self.optimizer.zero_grad(set_to_none=True)
            return self._eager_step(view)
        # The key holds the optimiser itself and its learning rate (a Python float the capture bakes
        # in): a new optimiser (reset) or rate means a new graph, never a stale one.
        key = (tuple(view.shape), view.dtype, self.optimizer, self.optimizer.param_groups[0]["lr"])
        if self._graph is not None and self._graph.key == key:
            return self._graph.replay(view)
        if self._warmup_key != key:
            self._graph, self._warmup_key, self._warmup_steps = None, key, 0
        if self._warmup_steps < GRAPH_WARMUP_STEPS:
            self._warmup_steps += 1
            return _on_side_stream(lambda: self._zeroed_eager_step(view))
        try:
            self._graph = _GraphedStep(key, self._eager_step, view, self.optimizer)
        except Exception as error:  # capture is refused by some drivers, ops and settings
            self._disable("cuda_graph", f"CUDA-graph capture failed ({type(error).__name__}: {error}); running eagerly")
            self.optimizer.zero_grad(set_to_none=True)
            return self._eager_step(view)
        return self._graph.replay(view)

    def _zeroed_eager_step(self, view: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        return self._eager_step(view)

    def _first_compiled_step(self, view: torch.Tensor) -> torch.Tensor:
        """Compile the loss on first use; if compiling fails, undo the half-done step and go eager."""
        buffers = [buffer.clone() for buffer in self.net.buffers()]
        self._loss = torch.compile(self.recipe.loss, dynamic=False)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            loss = self._eager_step(view)
        except Exception as error:  # no compiler, unsupported op, out of resources...
            with torch.no_grad():
                for buffer, saved in zip(self.net.buffers(), buffers):
                    buffer.copy_(saved)
            self._loss = self.recipe.loss
            self._disable("compile", f"torch.compile failed ({type(error).__name__}: {error}); running eagerly")
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._eager_step(view)
        self._loss_compiled = True
        return loss

    def _disable(self, option: str, note: str) -> None:
        warnings.warn(note, RuntimeWarning, stacklevel=4)
        self.acceleration_notes.append(note)
        self.acceleration = replace(self.acceleration, **{option: False})

    def infer_tensor(
        self,
        image: torch.Tensor,
        tile: int | None = None,
        statistics_from: torch.Tensor | None = None,
        ensemble: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Outputs:
        """Inference on ``(1, 3, H, W)`` on this device, tiled when ``tile`` is set.

        Tiles overlap by the networks' receptive field, so tiled output equals whole-image output;
        with no ``tile`` given, images whose one-pass inference would not fit the device's memory
        budget are tiled (:func:`~zeroig_plugin.sizing.automatic_tile`).
        Recipes with ``inference_statistics="image"`` normalise the enhancer with the statistics of
        ``statistics_from`` (``(1, 3, h, w)``, e.g. the downscaled copy a video frame was fitted
        on), by default of ``image`` itself. ``ensemble`` (1, 2, 4 or 8; default: the recipe's)
        averages that many flipped and transposed passes (:mod:`ensemble`), each normalised with
        the statistics of its own view of ``statistics_from``; when tiled, tile by tile (exact, and
        memory stays bounded by the tile). ``progress(done, total)`` is called after each pass:
        see :meth:`infer_tensor_in_passes`.
        """
        return _run_to_end(self.infer_tensor_in_passes(image, tile, statistics_from, ensemble), progress)

    @torch.no_grad()
    def infer_tensor_in_passes(
        self,
        image: torch.Tensor,
        tile: int | None = None,
        statistics_from: torch.Tensor | None = None,
        ensemble: int | None = None,
    ) -> Generator[tuple[int, int], None, Outputs]:
        """:meth:`infer_tensor` one pass at a time: a generator that yields ``(done, total)`` after
        each pass and returns the :class:`~zeroig_plugin.objective.Outputs`.

        A pass is one tile (or the whole image) in one view: one per piece inferred, and, for
        recipes that read out with the image's statistics, as many per view as there are pieces
        whose statistics are gathered (:func:`inference_passes`). Stopping early (``close()``, or
        dropping the generator) abandons the inference; the model stays usable.
        With ``keep_borders``, the passes run on what the flat borders of ``image`` (and of
        ``statistics_from``) enclose, and the borders are copied to the outputs unchanged.
        """
        framed, box = image, self.content_box(image)
        picture = box.crop(image)
        self._set_brightness_from(picture)
        image = _padded_to_fit(picture)
        if statistics_from is not None:
            statistics_from = _padded_to_fit(self.content_box(statistics_from).crop(statistics_from))
        height, width = image.shape[-2:]
        tile = _automatic_tile(height, width, tile, self.device)
        self._release_graph_for(height, width, tile)
        if tile is not None and self.device.type == "cpu" and self._released_after_step != self.steps_done:
            # The fit's freed feature maps, which malloc keeps for the next step, would stay beside
            # the tiles' (a 12-megapixel photo on the CPU: 18.6 GiB peak kept, 14.4 handed back).
            release_freed_memory()
            self._released_after_step = self.steps_done
        size = self.ensemble_size(ensemble)
        net = self._inference_net().eval()
        source = image if statistics_from is None else statistics_from
        by_image = self.recipe.inference_statistics == "image"
        windows = list(_tile_windows(height, width, tile))
        statistics_passes = _pieces(*source.shape[-2:], tile)
        total, done = _pass_total(self.recipe, size, len(windows), statistics_passes), 0
        try:
            statistics: list[Statistics | None] = [None] * size
            for view in range(size) if by_image else ():
                viewed = dihedral(source, view)
                with convolution_precision(self.acceleration, self.device):
                    statistics[view] = _tiled_image_statistics(net, viewed, tile) if tile else image_statistics(net, viewed)
                done += statistics_passes
                yield done, total
            enhance, denoise, linear = (torch.empty_like(image) for _ in Outputs._fields)
            for window, inner, target in windows:
                # A tile's margin covers the receptive field under every view too.
                piece, mean = image[window], EnsembleMean()
                for view in range(size):
                    with convolution_precision(self.acceleration, self.device):
                        mean.add(infer(net, dihedral(piece, view), statistics[view]), view)
                    done += 1
                    yield done, total
                outputs = mean.result()
                enhance[target], denoise[target], linear[target] = (output[inner] for output in outputs)
            if self.recipe.denoise_from_linear and is_gray(image):
                # A gray image's outputs are the channels' mean: brought up as one, as a stack's
                # planes are (bring_up, from the gray linear).
                linear = linear.mean(1, keepdim=True).expand_as(linear)
            if self.recipe.denoise_from_linear and _is_flat(image):
                # A flat picture (black, or one colour) has nothing to denoise; the networks would
                # only paint texture into it, which the gain then lifts.
                linear = image
            elif self.average_with_tv:
                linear, strength = average_linear_with_tv(linear, image, self._tv_strength)
                self._tv_strength = strength or None  # an image without measurable noise calibrates nothing
            if self.recipe.denoise_from_linear:
                enhance, denoise = image, linear
            enhance, denoise = self._brought_up(enhance, denoise)
            return Outputs(*(_framed(output, framed, box) for output in (enhance, denoise, linear)))
        finally:
            self.net.train()

    def _brought_up(
        self, enhance: torch.Tensor, denoise: torch.Tensor, gain: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``enhance`` and ``denoise`` ``(1, 3, h, w)`` of one picture after the exposure gain (by
        default the one that brings ``denoise`` to the brightness) and the finishing TV, where the
        model has them."""
        if self.recipe.fit_brightness_ratio is not None:
            gain = self._gain_to_brightness(denoise) if gain is None else gain
            enhance, denoise = (apply_gain(output, gain, self.recipe.gain_in_linear_light) for output in (enhance, denoise))
        if self.finish_with_tv:
            denoise, strength = tv_denoised(denoise, self._finish_strength, FINISH_STRIDE)
            self._finish_strength = strength or None
        return enhance, denoise

    def _gain_to_brightness(self, picture: torch.Tensor) -> torch.Tensor:
        """The gain that brings ``picture`` ``(1, 3, h, w)`` to the brightness, but never below 1:
        ZERO-IG brightens, and a picture already brighter keeps its level (the published rule's
        gain is at least 1 too)."""
        gain = gain_to_brightness(picture, self.recipe.brightness, linear_light=self.recipe.gain_in_linear_light)
        return gain.clamp(min=1.0)

    def _picture_and_linear(
        self, image: np.ndarray, linear: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ContentBox, _Layout]:
        """``image`` and its ``linear`` output as inference holds them: within the image's flat
        borders, edge-padded to ``MIN_FIT_SIDE``; with the framed image, the box and the layout."""
        if not self.recipe.denoise_from_linear:
            raise ValueError(f"mode {self.mode!r} without the exposure gain does not bring denoise up from linear")
        framed, layout = _to_tensor(image, self.device)
        linear_tensor, linear_layout = _to_tensor(linear, self.device)
        if linear_tensor.shape != framed.shape or linear_layout != layout:
            raise InputError(f"linear is laid out as {np.shape(linear)}, the image as {np.shape(image)}")
        box = self.content_box(framed)
        return framed, *(_padded_to_fit(box.crop(tensor)) for tensor in (framed, linear_tensor)), box, layout

    def exposure_gain_for(self, image: np.ndarray, linear: np.ndarray) -> float:
        """The gain by which :meth:`infer` brought ``image``'s ``denoise`` up from its ``linear``
        output (laid out like ``image``): the one that takes it to the brightness. Only with
        the global tone (``recipe.denoise_from_linear``: the improved modes with the exposure gain).

        A stack's planes share one tone curve when all are brought up by one gain
        (:meth:`bring_up`), e.g. the smallest of theirs (:class:`StackExposure`)."""
        _, picture, linear_picture, _, _ = self._picture_and_linear(image, linear)
        return float(self._gain_to_brightness(linear_picture))

    def bring_up(self, image: np.ndarray, linear: np.ndarray, gain: float) -> tuple[np.ndarray, np.ndarray]:
        """``enhance`` and ``denoise`` of ``image`` from its ``linear`` output (both laid out as for
        :meth:`infer`), brought up by ``gain`` instead of their own (:meth:`exposure_gain_for`)
        and finished as :meth:`infer` finishes them; flat borders pass through as they came in.
        With the image's own gain this is what :meth:`infer` returned. Only with the global tone."""
        framed, picture, linear_picture, box, layout = self._picture_and_linear(image, linear)
        gain_tensor = torch.full((1, 1, 1, 1), float(gain), device=self.device)
        enhance, denoise = self._brought_up(picture, linear_picture, gain_tensor)
        return tuple(_to_array(_framed(output, framed, box), layout) for output in (enhance, denoise))

    def infer(
        self,
        image: np.ndarray | torch.Tensor,
        tile: int | None = None,
        statistics_from: np.ndarray | torch.Tensor | None = None,
        ensemble: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ImageOutputs:
        """``enhance``, ``denoise`` and ``linear`` for ``image`` (as :meth:`fit` takes it), as float32
        arrays in ``[0, 1]`` laid out like ``image``.

        ``linear`` is ``denoise`` before any brightening: N2's result multiplied back by the
        illumination map, at the input's own intensities (for quantitative images; the exposure
        gain of the improved modes applies to the other two only).

        ``tile`` bounds memory for large images: inference runs on ``tile x tile`` pieces whose
        results are exact (each piece carries a margin wider than the receptive field).
        ``statistics_from``, ``ensemble`` and ``progress``: see :meth:`infer_tensor`
        (``statistics_from`` laid out like ``image``). The improved modes average 8 views by
        default, the published one makes one pass.
        """
        return _run_to_end(self.infer_in_passes(image, tile, statistics_from, ensemble), progress)

    def infer_in_passes(
        self,
        image: np.ndarray | torch.Tensor,
        tile: int | None = None,
        statistics_from: np.ndarray | torch.Tensor | None = None,
        ensemble: int | None = None,
    ) -> Generator[tuple[int, int], None, ImageOutputs]:
        """:meth:`infer` one pass at a time, for callers that report progress or cancel between
        passes themselves (the napari widget): yields ``(done, total)`` after each pass (see
        :meth:`infer_tensor_in_passes`) and returns the :class:`ImageOutputs`.

        Example:
            >>> passes = model.infer_in_passes(image)
            >>> for done, total in passes:
            ...     if cancelled():
            ...         passes.close()  # stops here; no outputs
            ...         break
        """
        tensor, layout = _to_tensor(image, self.device)
        source = None if statistics_from is None else _to_tensor(statistics_from, self.device)[0]
        outputs = yield from self.infer_tensor_in_passes(tensor, tile, source, ensemble)
        return ImageOutputs(*(_to_array(output, layout) for output in outputs))


class StackExposure:
    """One exposure gain for the planes of a stack (one channel of it): its ``enhance`` and
    ``denoise`` map equal intensities in any two planes to equal values, as ``linear`` does.

    :meth:`ZeroIG.infer` brings each image up by its own gain, to the same mean level; across the
    planes of a z-stack or a time series that would erase what differs between them (depth,
    bleaching) and lift a dim, out-of-focus plane as far as the brightest. Here every plane is
    brought up by the smallest of the planes' own gains (each at least 1: no plane is darkened):
    the brightest plane reaches the brightness as it would alone, and no plane clips more than it
    would alone. Blank planes (one value throughout) do not count.

    After inferring each plane, :meth:`add` it with its ``linear`` output; :meth:`brought_up`
    then yields each plane's key with its ``enhance`` and ``denoise``. The planes and their
    ``linear`` are kept until then. Only where ``model`` brings ``denoise`` up from ``linear``
    (:meth:`applies_to`); elsewhere the fit's exposure rule sets each plane's level, as published.

    Example:
        >>> exposure = StackExposure(model)
        >>> for z, plane in enumerate(stack):
        ...     model.fit(plane, 50)
        ...     exposure.add(z, plane, model.infer(plane).linear)
        >>> for z, enhance, denoise in exposure.brought_up():
        ...     denoised[z] = denoise
    """

    def __init__(self, model: ZeroIG):
        if not self.applies_to(model):
            raise ValueError(f"mode {model.mode!r} without the exposure gain sets each plane's level in the fit")
        self.model = model
        self._planes: list[tuple[Hashable, np.ndarray, np.ndarray]] = []
        self._gains: list[float] = []
        self._blank_gains: list[float] = []

    @staticmethod
    def applies_to(model: ZeroIG) -> bool:
        """Whether ``model``'s outputs are ``linear`` and the input brought up by one gain."""
        return model.recipe.denoise_from_linear

    def add(self, key: Hashable, image: np.ndarray, linear: np.ndarray) -> None:
        """Keep one plane (laid out as for :meth:`ZeroIG.infer`) and its ``linear`` output. A
        plane whose picture (within its flat borders) holds one value throughout, a blank frame,
        has no exposure of its own to keep: it sets the gain only where every plane is blank."""
        _, picture, linear_picture, _, _ = self.model._picture_and_linear(image, linear)
        gain = float(self.model._gain_to_brightness(linear_picture))  # what exposure_gain_for gives
        (self._blank_gains if _is_flat(picture) else self._gains).append(gain)
        self._planes.append((key, image, linear))

    @property
    def gain(self) -> float | None:
        """The gain every plane is brought up by (``None`` before the first plane)."""
        gains = self._gains or self._blank_gains
        return min(gains) if gains else None

    def brought_up(self) -> Iterator[tuple[Hashable, np.ndarray, np.ndarray]]:
        """``(key, enhance, denoise)`` for each plane added, in order, all brought up by :attr:`gain`."""
        gain = self.gain
        for key, image, linear in self._planes:
            yield (key, *self.model.bring_up(image, linear, gain))


def inference_passes(
    mode: str, height: int, width: int, tile: int | None = None, ensemble: int | None = None,
    device: str | torch.device = "auto",
) -> int:
    """The ``total`` that :meth:`ZeroIG.infer` on ``device`` reports for a ``height x width`` image
    in ``mode`` (statistics from the image itself), e.g. to size a progress bar before the model
    exists."""
    recipe = get_recipe(mode)
    pieces = _pieces(height, width, _automatic_tile(height, width, tile, resolve_device(device)))
    return _pass_total(recipe, _ensemble_size(recipe, ensemble), pieces, pieces)


def _ensemble_size(recipe: Recipe, ensemble: int | None) -> int:
    return check_ensemble_size(recipe.inference_ensemble if ensemble is None else ensemble)


def _pieces(height: int, width: int, tile: int | None) -> int:
    return sum(1 for _ in _tile_windows(height, width, tile))


def _pass_total(recipe: Recipe, size: int, pieces: int, statistics_pieces: int) -> int:
    """Passes of one inference: each view infers every piece and, for the image readout, first
    gathers its statistics over the pieces of the view they come from."""
    return size * (pieces + (statistics_pieces if recipe.inference_statistics == "image" else 0))


def _run_to_end(passes: Generator[tuple[int, int], None, T], progress: Callable[[int, int], None] | None) -> T:
    """Drive a generator of ``(done, total)`` ticks to its end, calling ``progress`` on each."""
    while True:
        try:
            tick = next(passes)
        except StopIteration as finished:
            return finished.value
        if progress is not None:
            progress(*tick)


def _automatic_tile(height: int, width: int, tile: int | None, device: torch.device) -> int | None:
    if tile is not None and (not isinstance(tile, int) or tile < 1):
        raise ValueError(f"tile is a side in pixels (a positive integer) or None, got {tile!r}")
    return tile if tile is not None else automatic_tile(height, width, device, RECEPTIVE_MARGIN)


GRAPH_WARMUP_STEPS = 3  # eager steps (real ones) before capture: cuDNN autotuning, Adam state, compile


def _on_side_stream(run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run eager warm-up work on a side stream, as CUDA-graph capture wants it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        result = run()
    torch.cuda.current_stream().wait_stream(side)
    return result


class _GraphedStep:
    """One whole training step (forward, backward, clip, Adam) captured once and replayed.

    The step reads its input from a static buffer, so each replay first copies the new view in.
    Gradients live in the graph's memory pool: they are never set to ``None`` while it exists.
    """

    def __init__(self, key: tuple, step: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, optimizer: torch.optim.Optimizer):
        self.key = key
        for group in optimizer.param_groups:
            group["capturable"] = True  # a loaded optimizer state may have switched it off
        for state in optimizer.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(example.device, torch.float32)
        self.input = example.clone()
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = step(self.input)

    def replay(self, view: torch.Tensor) -> torch.Tensor:
        self.input.copy_(view)
        self.graph.replay()
        return self.loss.clone()


RECEPTIVE_MARGIN = 16  # N1 (2 px) + enhancer (5 px) + N2 (2 px) radius, rounded up


def _tile_windows(height: int, width: int, tile: int | None):
    """``(window, inner, target)`` slices covering ``height x width`` in ``tile`` squares: the window
    read (the tile plus a receptive-field margin), the tile's part of the window's output, and
    where that part goes in the whole image. One window, the whole image, when ``tile`` is ``None``."""
    every = (slice(None), slice(None))
    if tile is None:
        whole = (*every, slice(None), slice(None))
        yield whole, whole, whole
        return
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            y0, x0 = max(0, top - RECEPTIVE_MARGIN), max(0, left - RECEPTIVE_MARGIN)
            y1, x1 = min(height, top + tile + RECEPTIVE_MARGIN), min(width, left + tile + RECEPTIVE_MARGIN)
            rows, columns = min(tile, height - top), min(tile, width - left)
            yield (
                (*every, slice(y0, y1), slice(x0, x1)),
                (*every, slice(top - y0, top - y0 + rows), slice(left - x0, left - x0 + columns)),
                (*every, slice(top, top + rows), slice(left, left + columns)),
            )


def _tiled_image_statistics(net: ZeroIGNet, image: torch.Tensor, tile: int) -> Statistics:
    """:func:`objective.image_statistics` of the whole image, accumulated tile by tile: N1 once,
    then one sweep per repeat of the enhancer's block, since each repeat's statistics need the
    ones before it."""
    windows = list(_tile_windows(*image.shape[-2:], tile))
    denoised = torch.empty_like(image)
    for window, inner, target in windows:
        denoised[target] = first_denoised(net, image[window])[inner]
    statistics: Statistics = []
    for repeat in range(len(net.enhance.blocks)):
        total = squares = 0.0
        count = 0
        for window, inner, _ in windows:
            features = net.enhance.features(denoised[window], statistics, repeat)
            convolved = net.enhance.conv[0](features)[inner].double()
            total = total + convolved.sum((0, 2, 3))
            squares = squares + convolved.square().sum((0, 2, 3))
            count += convolved[:, 0].numel()
        mean = total / count
        statistics.append((mean.to(image.dtype), (squares / count - mean.square()).clamp_min(0).to(image.dtype)))
    return statistics
