"""The built-in example: a scikit-image photo darkened as a camera records a short exposure, enhanced and scored."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .imageio import write_image

__all__ = ["simulate_low_light", "simulate_dark_capture", "run_demo", "DEMO_SCALE", "DEMO_ITERS"]

DEMO_SCALE = 1 / 3  # scikit-image's 600x400 'coffee' photo at 200x133: ~0.25 s per step on a 2-core CPU
DEMO_ITERS = 300


def simulate_low_light(
    image: np.ndarray, exposure: float = 0.1, photons_at_white: float = 2000.0, read_noise: float = 0.005, seed: int = 0
) -> np.ndarray:
    """Darken a normal-light float image ``(H, W, 3)`` in ``[0, 1]`` as a short exposure would.

    The signal is scaled by ``exposure``, then Poisson shot noise (``photons_at_white`` photons for
    a full-scale pixel before the exposure cut) and Gaussian read noise are added, seeded.
    """
    rng = np.random.default_rng(seed)
    expected = image * exposure * photons_at_white
    noisy = rng.poisson(expected) / photons_at_white + rng.normal(0.0, read_noise, image.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


def simulate_dark_capture(
    image: np.ndarray, exposure: float = 0.02, full_well: float = 10000.0, read_electrons: float = 3.0, seed: int = 0
) -> np.ndarray:
    """Darken an sRGB photo ``(H, W, 3)`` in ``[0, 1]`` as a camera records a short exposure of the scene.

    The light the photo encodes (sRGB decoded) is scaled by ``exposure``, counted as electrons
    (``full_well`` for full-scale light at the normal exposure: Poisson shot noise, then Gaussian
    read noise of ``read_electrons``), encoded to sRGB again and stored in 8 bits. Unlike
    :func:`simulate_low_light`, which scales the encoded values, this puts the dark image's shadows
    in sRGB's toe, darker in proportion than its highlights, as in real low-light photos: in LOL's
    pairs the normal-light value grows about as the square root of the dark one, not in proportion.
    """
    import torch

    from .improved import linear_to_srgb, srgb_to_linear

    rng = np.random.default_rng(seed)
    light = srgb_to_linear(torch.from_numpy(np.asarray(image, np.float64))).numpy()
    electrons = rng.poisson(light * exposure * full_well) + rng.normal(0.0, read_electrons, light.shape)
    encoded = linear_to_srgb(torch.from_numpy(electrons / full_well)).numpy()
    return (np.round(encoded * 255) / 255).astype(np.float32)


def _demo_reference() -> np.ndarray:
    from skimage import data
    from skimage.transform import rescale

    photo = data.coffee().astype(np.float32) / 255
    return np.clip(rescale(photo, DEMO_SCALE, channel_axis=-1, anti_aliasing=True), 0, 1).astype(np.float32)


def _labelled_row(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    from PIL import Image, ImageDraw

    tiles = []
    for label, pixels in panels:
        tile = Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8))
        canvas = Image.new("RGB", (tile.width, tile.height + 16), "black")
        canvas.paste(tile, (0, 16))
        ImageDraw.Draw(canvas).text((4, 2), label, fill="white")
        tiles.append(np.asarray(canvas))
    gap = np.zeros((tiles[0].shape[0], 4, 3), np.uint8)
    row = [piece for tile in tiles for piece in (tile, gap)][:-1]
    return np.concatenate(row, axis=1).astype(np.float32) / 255


def run_demo(output_dir: str | Path, iters: int | None = None, mode: str = "default", device: str = "auto", echo=print) -> dict:
    """Run the example; returns ``{name: (psnr, ssim)}`` for the input and both outputs."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from .engine import ZeroIG, describe_device
    from .provenance import processing_record
    from .recipes import get_recipe

    iters = DEMO_ITERS if iters is None else iters
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    reference = _demo_reference()
    low = simulate_dark_capture(reference)
    height, width = low.shape[:2]
    photo_defaults = get_recipe(mode).name != "faithful"  # `zeroig enhance`'s: faithful stays the published method
    model = ZeroIG(mode=mode, device=device, average_with_tv=photo_defaults, finish_with_tv=photo_defaults)
    echo(f"demo: scikit-image 'coffee' at {width}x{height}, darkened as a camera records 2 % of the light "
         f"(shot and read noise, 8 bits) to mean {low.mean() * 255:.0f}/255; {iters} steps of mode '{model.mode}' "
         f"on {describe_device(device)}")
    if iters == DEMO_ITERS:
        echo("      (sized to finish in a few minutes on a 2-core CPU; real images use 2000 steps)")
    started = time.perf_counter()
    from tqdm import tqdm

    with tqdm(total=iters, unit="step", desc="fitting", leave=False, disable=None) as bar:
        model.fit(low, iters, progress=lambda done, total, loss: bar.update(done - bar.n), loss_every=iters)
    outputs = model.infer(low)
    echo(f"demo: fitted in {time.perf_counter() - started:.1f} s")

    results = {"low": low, "enhance": outputs.enhance, "denoise": outputs.denoise, "reference": reference}
    for name, pixels in results.items():
        record = processing_record(model, name) if name in outputs._fields else None
        write_image(output_dir / f"{name}.png", pixels, provenance=record)
    write_image(output_dir / "side_by_side.png", _labelled_row(list(results.items())))

    scores = {}
    echo(f"{'':10s} {'PSNR (dB)':>10s} {'SSIM':>7s}   against the normal-light reference")
    for name in ("low", "enhance", "denoise"):
        psnr = peak_signal_noise_ratio(reference, results[name], data_range=1.0)
        ssim = structural_similarity(reference, results[name], channel_axis=-1, data_range=1.0)
        scores[name] = (float(psnr), float(ssim))
        echo(f"{name:10s} {psnr:10.2f} {ssim:7.3f}")
    echo(f"demo: wrote low/enhance/denoise/reference.png and side_by_side.png to {output_dir}/")
    return scores
