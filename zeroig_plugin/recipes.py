"""Fitting recipes: which loss, optimiser settings and tricks a mode uses.

``faithful`` is the published method exactly (SPEC.md). Other modes are registered beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from .errors import ZeroIGError
from .networks import ZeroIGNet
from .objective import PUBLISHED_BRIGHTNESS, faithful_loss

__all__ = ["Recipe", "register_recipe", "get_recipe", "available_modes", "DEFAULT_MODE", "RISK_SCORE"]

RISK_SCORE = "risk"
"""The ``selection_domain`` that ranks checkpoints by :func:`objective.stein_risk`."""


@dataclass(frozen=True)
class Recipe:
    """How to fit and read out: the loss, Adam settings, gradient clip, optional weight averaging
    and crops, and which statistics the enhancer's BatchNorm uses at inference: ``"running"`` (its
    running averages, as published) or ``"image"`` (the image's own, as in the fit's forward).

    ``late_learning_rate`` replaces ``learning_rate`` once the fit has run ``late_after`` steps
    since its start or last reset (one switch, so a captured CUDA graph is re-captured once). With
    ``late_on_plateau`` and a fit that selects (below), the switch also waits until the selection
    score has not improved for that many checks in a row: the rate drops when the fit stops
    gaining on the image, not at a fixed step.

    With ``select_after``, a whole-image fit scores its inference weights by
    :func:`objective.pair_consistency` (in ``selection_domain``: ``"enhanced"``, the published
    term's, or ``"input"``), or by :func:`objective.stein_risk` (``"risk"``, :data:`RISK_SCORE`:
    the estimated error of the ``linear`` output) every ``select_every`` steps from that step on (and at the end of a
    ``fit`` call that ran at least ``select_every`` steps), and infers with the weights the
    checkpoint kept among those seen on that image (:func:`objective.tied_choice`; by the risk, of
    those within one standard error of the lowest, the most strongly smoothing; by the pair score,
    the latest not significantly worse than the lowest: :func:`objective.drift_threshold`): a
    self-supervised guard against the fit drifting late.

    ``inference_ensemble`` (1, 2, 4 or 8) averages inference over that many flips and transposes
    of the image (:mod:`ensemble`); 1 is the published single pass.

    ``brightness`` is the mean luminance the outputs are aimed at (0.5, mid-grey, as published).
    Without ``fit_brightness_ratio`` the fit's exposure rule alone sets it: ``loss(net, image,
    brightness)``. With it, the fit aims at ``fit_brightness_ratio * brightness``, and inference
    brings the outputs to ``brightness`` by one gain (:func:`improved.exposure_gain`): with
    ``gain_in_linear_light`` on the light the sRGB values encode (a longer exposure), otherwise on
    the values themselves. With ``global_tone`` (the improved modes' default) ``denoise`` is
    ``linear`` (the denoised image at the input's intensities) brought to ``brightness`` by that
    gain and ``enhance`` the input brought up by the same gain; without it the gain finishes the
    outputs of the illumination map's local tone, the published readout. Either way the gain is at
    most :data:`improved.MAX_OUTPUT_GAIN`, or its 2.4th power on the light (7 stops).

    ``keep_borders`` leaves an image's flat borders (letterbox bars, zero fill: :mod:`borders`) out
    of the fit and the inference and copies them to the outputs as they came in."""

    name: str
    loss: Callable[[ZeroIGNet, torch.Tensor, float], torch.Tensor]
    description: str
    learning_rate: float = 3e-4
    late_learning_rate: float | None = None
    late_after: int = 0
    late_on_plateau: int | None = None
    weight_decay: float = 3e-4
    gradient_clip: float = 5.0
    weight_average: float | None = None
    crop_size: int | None = None
    crops_per_step: int = 1
    inference_statistics: str = "running"
    select_after: int | None = None
    select_every: int = 50
    selection_domain: str = "enhanced"
    inference_ensemble: int = 1
    brightness: float = PUBLISHED_BRIGHTNESS
    fit_brightness_ratio: float | None = None
    gain_in_linear_light: bool = False
    global_tone: bool = False
    keep_borders: bool = False

    @property
    def denoise_from_linear(self) -> bool:
        """Whether inference brings ``denoise`` up from ``linear`` (the global tone, which needs
        the exposure gain) rather than reading it through the illumination map."""
        return self.global_tone and self.fit_brightness_ratio is not None

    def fit_brightness(self) -> float:
        """The mean luminance the fit's exposure rule aims at."""
        return self.brightness * (self.fit_brightness_ratio or 1.0)

    def with_exposure_gain(self, on: bool | None) -> "Recipe":
        """This recipe with the fit aimed at 0.7 of the brightness and one gain after (``True``),
        with the fit's exposure rule alone (``False``), or as it is (``None``)."""
        from .improved import DEFAULT_FIT_BRIGHTNESS_RATIO  # improved imports this module

        if on is None or on == (self.fit_brightness_ratio is not None):
            return self
        return replace(self, fit_brightness_ratio=DEFAULT_FIT_BRIGHTNESS_RATIO if on else None)

    def selecting_for(self, output: str | None) -> "Recipe":
        """This recipe with checkpoint selection serving ``output``: ``"linear"`` ranks checkpoints
        by Stein's risk estimate of that output (:data:`RISK_SCORE`); any other output, or
        ``None``, keeps the recipe's score. A recipe that does not select is returned as it is."""
        if output == "linear" and self.select_after is not None:
            return replace(self, selection_domain=RISK_SCORE)
        return self

    def learning_rate_at(self, step: int, plateaued: bool = True) -> float:
        """The learning rate for the step after ``step`` steps; ``plateaued``: whether the
        selection score has levelled off (only consulted with ``late_on_plateau``)."""
        late = self.late_learning_rate is not None and step >= self.late_after
        if late and (self.late_on_plateau is None or plateaued):
            return self.late_learning_rate
        return self.learning_rate


_RECIPES: dict[str, Recipe] = {}
DEFAULT_MODE = "improved"  # measured against faithful on LOL, microscopy, the demo and video: docs/quality.md


def register_recipe(recipe: Recipe) -> Recipe:
    _RECIPES[recipe.name] = recipe
    return recipe


def available_modes() -> list[str]:
    """Mode names accepted by ``ZeroIG(mode=...)``, ``default`` first."""
    return ["default", *sorted(_RECIPES)]


def get_recipe(mode: str) -> Recipe:
    name = DEFAULT_MODE if mode == "default" else mode
    if name not in _RECIPES:
        raise ZeroIGError(f"unknown mode {mode!r}: choose from {', '.join(available_modes())}")
    return _RECIPES[name]


register_recipe(Recipe("faithful", faithful_loss, "the published ZERO-IG computation, exactly (the published code's arithmetic, its quirks included)"))

from .improved import improved_recipe  # noqa: E402  (improved.py builds on the names above)

register_recipe(improved_recipe())
# The fit on crops is read out with the whole image's statistics too: with the published running
# averages, crop fits collapsed (LOL at 200x133, 2000 steps: 13.60 dB mean, two images near 9 dB;
# docs/quality-log.md, "Crop fits").
register_recipe(
    improved_recipe(
        "crop",
        crop_size=256,
        crops_per_step=2,
        description="the improved fit on two random 256x256 native-resolution crops per step (fit cost "
        "independent of image size), whole-image inference with the image's own statistics, averaged over 8 "
        "flips and transposes",
    )
)
