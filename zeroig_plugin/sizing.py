"""Whether an image fits one whole-image fitting step, or one inference pass, in the device's
memory, and if not, how large the crops fitted or the tiles inferred instead can be.

A whole-image step holds every feature map of the three networks and its gradient, so its memory
grows with the image: measured peaks of 6.3 KiB per pixel on CUDA (1.45 GiB at 600x400 and
12.5 GiB at 1920x1080 on an H100; BENCHMARKS.md, "Speed") and about 8.3 KiB per pixel of host
memory on a CPU (2.3 GiB at 600x400 and 2.4 GiB at 512x512; "Host memory"). A 12-megapixel photo
would need about 75 GiB. Where a whole-image step would take more than 80 % of a GPU's memory
(half of the host's on a CPU), ``ZeroIG(fit_crop="auto")`` (the default) fits each step on two
random crops, as large as that share allows: crops that cover a small part of the image fit worse
(LOL at 600x400, 2000 steps: two 96x96 crops per step lost up to 5.5 dB against the whole image;
BENCHMARKS.md, "Images too large for a whole-image step"). Inference covers the whole image, in
tiles where one pass would not fit (tiled results are identical). On CUDA a captured step's graph
keeps its memory between steps: checkpoints are scored on what fits beside it
(:func:`budget_beside`), and the engine hands it back before an inference pass that would not.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import torch

__all__ = [
    "FIT_CROPS_PER_STEP", "MEMORY_SHARE", "automatic_fit_crop", "automatic_tile", "device_memory", "fit_crop_side",
    "budget_beside", "memory_budget", "inference_bytes", "selection_window", "whole_image_fit_bytes",
]

# One crop's BatchNorm statistics stray further from the whole image's, which the image readout
# uses: LOL at 200x133, 85x85 crops, 1000 steps: 18.71 dB with one crop per step, 20.36 with two.
FIT_CROPS_PER_STEP = 2

# Of the device's memory a fitting step may be estimated to take: a GPU is the fit's alone; a host
# also holds the system, other programs, and the image and its outputs.
MEMORY_SHARE = {"cuda": 0.8, "cpu": 0.5}
UNKNOWN_MEMORY = 16 * 2**30  # assumed where the host's memory cannot be read
CROP_MULTIPLE = 16  # automatic crop sides are rounded down to this
_BYTES_PER_PIXEL = {"cuda": 6.5 * 2**10, "cpu": 8.5 * 2**10}  # the measured peaks above, rounded up
# One inference pass (no gradients), per pixel of the piece inferred: 1.83 KiB measured on a CPU
# for whole images (one view at 1024x1024 and 1536x1536), about 2.2 for a 2336x2336 tile window
# (whose statistics pass accumulates in float64), about 1.7 on CUDA (3.4 GiB at 1080p on an H100);
# rounded up. Tiled, the whole image's input, first-denoised copy and outputs stay in memory too.
_INFERENCE_BYTES_PER_PIXEL = 2.5 * 2**10
WHOLE_IMAGE_BUFFER_BYTES_PER_PIXEL = 128
TILE_MULTIPLE = 256  # automatic inference tiles are rounded down to this
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def _kind(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else "cuda"


def whole_image_fit_bytes(height: int, width: int, device: torch.device) -> int:
    """Estimated peak memory of one whole-image fitting step on a ``height x width`` image, in bytes."""
    return int(height * width * _BYTES_PER_PIXEL[_kind(device)])


def memory_budget(device: torch.device) -> float:
    """The memory a fitting step or an inference pass on ``device`` may take, in bytes:
    :data:`MEMORY_SHARE` of :func:`device_memory`."""
    return MEMORY_SHARE[_kind(device)] * device_memory(device)


@functools.cache
def device_memory(device: torch.device) -> int:
    """The memory a fit on ``device`` can use, in bytes: a CUDA device's total memory, or for the CPU
    the host's physical memory (or the container's limit, where lower; :data:`UNKNOWN_MEMORY` where
    it cannot be read). The total, not what is free now, so that the fit, and with it the result,
    does not depend on what else runs; read once per device, as every fit and inference call (each
    video frame, each napari chunk of steps) asks."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return UNKNOWN_MEMORY
    for limit in _CGROUP_LIMITS:
        try:
            text = limit.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            host = min(host, int(text))
    return host


def automatic_fit_crop(height: int, width: int, device: torch.device) -> int | None:
    """The crop side a ``fit_crop="auto"`` fit of a ``height x width`` image runs on: ``None`` (the
    whole image) where a whole-image step takes at most :func:`memory_budget`, else the largest
    side (a multiple of :data:`CROP_MULTIPLE`) whose :data:`FIT_CROPS_PER_STEP` square crops take
    no more."""
    budget = memory_budget(device)
    if whole_image_fit_bytes(height, width, device) <= budget:
        return None
    per_crop_pixels = budget / FIT_CROPS_PER_STEP / whole_image_fit_bytes(1, 1, device)
    return max(CROP_MULTIPLE, math.isqrt(int(per_crop_pixels)) // CROP_MULTIPLE * CROP_MULTIPLE)


def inference_bytes(height: int, width: int) -> int:
    """Estimated peak memory of one inference pass over a ``height x width`` image, in bytes."""
    return int(height * width * _INFERENCE_BYTES_PER_PIXEL)


def automatic_tile(height: int, width: int, device: torch.device, margin: int) -> int | None:
    """The tile side inference on ``device`` uses when none is given: ``None`` (the whole image in
    one pass) where a pass takes at most :func:`memory_budget`, else the largest multiple of
    :data:`TILE_MULTIPLE` whose window (the tile and a ``margin`` on each side) takes no more,
    beside the whole image's buffers. Tiled inference gives the same result, so this only bounds
    memory."""
    budget = memory_budget(device)
    if inference_bytes(height, width) <= budget:
        return None
    for_windows = budget - height * width * WHOLE_IMAGE_BUFFER_BYTES_PER_PIXEL
    window = math.isqrt(max(0, int(for_windows / _INFERENCE_BYTES_PER_PIXEL)))
    return max(TILE_MULTIPLE, (window - 2 * margin) // TILE_MULTIPLE * TILE_MULTIPLE)


def budget_beside(device: torch.device, held: int) -> float:
    """:func:`memory_budget` of what is left of ``device``'s memory beside ``held`` bytes that stay
    allocated (a captured CUDA graph's pool keeps its step's memory between steps)."""
    budget = memory_budget(device)
    return budget if held <= 0 else budget * max(0.0, 1.0 - held / device_memory(device))


def selection_window(height: int, width: int, device: torch.device, held: int = 0) -> tuple[int, int]:
    """The ``(height, width)`` of the centred part of a ``height x width`` image whose checkpoints a
    fit scores: all of it where one inference pass over it (a score costs about one) fits
    :func:`budget_beside` the ``held`` bytes, else the largest window that does, about square
    (sides multiples of :data:`CROP_MULTIPLE`), or across an image narrower than that, a strip."""
    pixels = int(budget_beside(device, held) / _INFERENCE_BYTES_PER_PIXEL)
    if height * width <= pixels:
        return height, width
    square = max(CROP_MULTIPLE, math.isqrt(pixels) // CROP_MULTIPLE * CROP_MULTIPLE)
    short = min(height, width, square)
    long = max(square, pixels // short // CROP_MULTIPLE * CROP_MULTIPLE)
    return (short, min(width, long)) if height <= width else (min(height, long), short)


def fit_crop_side(crop_size: int | None, automatic: bool, height: int, width: int, device: torch.device) -> int | None:
    """The side of the random crops that a fit of a ``height x width`` image runs on, or ``None`` for
    the whole image: ``crop_size`` (a recipe's or the user's; ``None``: whole images), or with
    ``automatic`` and no ``crop_size``, :func:`automatic_fit_crop`'s choice. An image no larger
    than the crops is fitted whole."""
    if crop_size is None and automatic:
        crop_size = automatic_fit_crop(height, width, device)
    return crop_size if crop_size is not None and (height > crop_size or width > crop_size) else None
