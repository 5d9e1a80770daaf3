"""What made an output: the settings of the fit and the readout, as a record the writers embed.

A ZERO-IG result depends on more than its input: the mode, the steps, the seed or checkpoint,
the exposure, the crops the fit ran on, the views averaged and the arithmetic all change it.
Every front end embeds this record in what it writes (PNG text chunks, TIFF tags, a video's
``comment``, a napari layer's ``metadata["zeroig"]``), so a figure can be traced to its settings
and reproduced.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .acceleration import Acceleration
    from .engine import ZeroIG

__all__ = ["SOFTWARE", "processing_record", "record_text", "brightness_applied"]

SOFTWARE = f"zeroig {__version__}"
METHOD = "ZERO-IG (Shi et al., CVPR 2024), fitted to this input alone"
UNFITTED_METHOD = "ZERO-IG (Shi et al., CVPR 2024), not fitted: the starting weights applied as they are"


def processing_record(
    model: ZeroIG, output: str, steps: int | None = None, *, ensemble: int | None = None,
    weights: str | os.PathLike | None = None, **details: object,
) -> dict[str, object]:
    """The settings behind ``model``'s ``output`` (``enhance``, ``denoise`` or ``linear``).

    ``steps`` defaults to the steps ``model`` has run since its init or last reset; ``ensemble``
    is the inference's (``None``: the mode's); ``weights`` is the checkpoint file the fit started
    from, recorded by its name (``None``: the seeded init). ``details`` are added as they are (a front end's own
    settings: steps per later plane, the video's per-frame budget...).
    """
    from .classical import FINISH_STRIDE

    recipe = model.recipe
    steps = model.steps_done if steps is None else steps
    return {
        "software": SOFTWARE,
        "method": METHOD if steps else UNFITTED_METHOD,
        "output": output,
        "mode": model.mode,
        "steps": steps,
        "start": f"checkpoint {os.path.basename(weights)}" if weights else f"seeded init, seed {model.seed}",
        "brightness": brightness_applied(model, steps),
        "exposure_gain": recipe.fit_brightness_ratio is not None,
        "fit_crop": recipe.crop_size,
        "checkpoint_selection": model.checkpoint_selection,
        "averaged_with_tv": model.average_with_tv and (output == "linear" or output == "denoise" and recipe.denoise_from_linear),
        "finished_with_tv": model.finish_with_tv and output == "denoise",
        "finish_calibration": f"Noise2Self on sub-images up to {FINISH_STRIDE} pixels apart"
        if model.finish_with_tv and output == "denoise" else None,
        "flat_borders_kept": recipe.keep_borders,
        "ensemble": model.ensemble_size(ensemble),
        "device": model.device.type,
        "arithmetic": _arithmetic(model.acceleration),
        **details,
    }


def brightness_applied(model: ZeroIG, steps: int) -> float | None:
    """The mean luminance ``model``'s brightened outputs were brought to after ``steps`` fitting
    steps: its brightness where a fit aimed at it or the exposure gain brought them to it;
    ``None`` where neither did (a checkpoint applied as it is sets its own level)."""
    recipe = model.recipe
    return recipe.brightness if steps or recipe.fit_brightness_ratio is not None else None


def record_text(record: dict[str, object]) -> str:
    """``record`` as one line of ASCII JSON (what TIFF and PNG text fields accept)."""
    return json.dumps(record, ensure_ascii=True)


def _arithmetic(acceleration: Acceleration) -> str:
    """The precision the fit ran in: what, besides the settings, moves a result."""
    if acceleration.network_dtype is not None:
        return f"{str(acceleration.network_dtype).removeprefix('torch.')} networks, float32 losses"
    return "float32, TF32 convolutions" if acceleration.tf32 else "float32"
