"""Sample data made on the spot (no download): a dim, noisy fluorescence image and a dark photo."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

FLUORESCENCE_SHAPE = (256, 256)
PHOTO_SIDE = 256


def simulated_fluorescence(shape: tuple[int, int] = FLUORESCENCE_SHAPE, seed: int = 0) -> np.ndarray:
    """A low-light 16-bit fluorescence image: blobs and filaments under Poisson-Gaussian noise.

    The scene (spots and smooth curved filaments) gives at most ~40 photons per pixel over a
    2-photon background; a camera with gain 2 ADU per photon, offset 100 ADU and 3 ADU read noise
    records it as ``uint16``.
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    scene = np.zeros(shape)
    for _ in range(40):
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        sigma = rng.uniform(1.5, 4.0)
        scene += rng.uniform(0.4, 1.0) * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * sigma**2))
    for _ in range(12):
        scene += 0.6 * _filament(rows, cols, rng)
    photons = 40.0 * np.clip(scene, 0, 1) + 2.0
    counts = 2.0 * rng.poisson(photons) + 100.0 + rng.normal(0.0, 3.0, shape)
    return np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _filament(rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A thin Gaussian-profile curve along a random quadratic Bezier across the field."""
    height, width = rows.shape
    ends = rng.uniform([0, 0], [height, width], size=(3, 2))
    t = np.linspace(0.0, 1.0, 4 * (height + width))[:, None]
    curve = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * ends[1] + t**2 * ends[2]
    inside = (curve[:, 0] >= 0) & (curve[:, 0] < height) & (curve[:, 1] >= 0) & (curve[:, 1] < width)
    trace = np.zeros((height, width))
    points = curve[inside].astype(int)
    trace[points[:, 0], points[:, 1]] = 1.0
    blurred = gaussian_filter(trace, 1.0)
    return blurred / max(blurred.max(), 1e-12)


def simulated_dark_photo(seed: int = 0) -> np.ndarray:
    """skimage's astronaut photo as if shot with 4 % of the exposure: shot and read noise, ``uint8``."""
    from skimage import data, transform

    rng = np.random.default_rng(seed)
    photo = transform.resize(data.astronaut(), (PHOTO_SIDE, PHOTO_SIDE), anti_aliasing=True)
    linear = photo**2.2 * 0.04
    full_well = 1000.0
    noisy = rng.poisson(linear * full_well) / full_well + rng.normal(0.0, 0.002, linear.shape)
    return np.clip(np.rint(np.clip(noisy, 0, 1) ** (1 / 2.2) * 255), 0, 255).astype(np.uint8)


def fluorescence_sample() -> list[tuple]:
    """napari sample: the simulated fluorescence image, 0.1 um pixels."""
    metadata = {"description": "simulated low-light fluorescence (napari-zeroig sample)"}
    properties = {
        "name": "dim fluorescence",
        "colormap": "gray",
        "scale": (0.1, 0.1),
        "units": ("um", "um"),
        "axis_labels": ("y", "x"),
        "metadata": metadata,
    }
    return [(simulated_fluorescence(), properties, "image")]


def dark_photo_sample() -> list[tuple]:
    """napari sample: the underexposed, noisy astronaut photo."""
    return [(simulated_dark_photo(), {"name": "dark photo", "rgb": True}, "image")]
