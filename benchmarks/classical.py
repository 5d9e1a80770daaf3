"""Classical baselines: one global gain, with or without a standard denoiser, scored like the fits.

What does fitting three networks to the image buy over what a user could do in a second with
scikit-image? Each pair of ``quality.py``'s datasets (same loading, resizing, darkening and
scoring) is processed without any fitting:

- ``gain``: the low image times the one gain that brings its mean luminance to ``--brightness``
  (:func:`zeroig_plugin.improved.exposure_gain`, a bisection through the clip at 1, allowed up to
  256x): exposure alone, at the level the default mode's outputs are brought to. With
  ``--linear-light`` the gain multiplies the light the sRGB values encode, as the default mode's
  output gain does since 2026-12-07 (the results before that date gain the values).
- ``nl-means`` and ``tv``: :func:`skimage.restoration.denoise_nl_means` (5x5 patches, 13x13
  search window) and :func:`skimage.restoration.denoise_tv_chambolle`, each with its strength (``h``,
  ``weight``) chosen on the image itself by :func:`skimage.restoration.calibrate_denoiser`
  (Noise2Self's J-invariant self-supervised loss; the chosen value is then used with the plain
  denoiser; :mod:`zeroig_plugin.classical`, whose TV the napari plugin averages with ``linear``),
  then the gain. Zero-shot, like the fits: nothing is tuned on the references.
- ``vst+nl-means``: the same non-local means on a variance-stabilised image. Shot noise grows
  with the signal, so one ``h`` is too strong in the shadows or too weak in the highlights;
  ``f(x) = integral of dt / sqrt(var(t))``, with ``var`` each channel's noise curve estimated from
  the image (:func:`zeroig_plugin.noise.noise_curve`, the estimate the default mode's risk uses),
  gives noise of unit variance everywhere (as the Anscombe transform does for Poisson noise);
  the result is mapped back through the inverse of ``f``.

With ``--blend-steps N`` each pair is also fitted (``--seed``, N steps; microscopy with the napari
plugin's settings as they were when these results were taken, the fit-only exposure, photos
with the default's), and the fit's output (``linear`` for microscopy,
``denoise`` for photos) is scored alone and averaged pixel by pixel with each denoiser's, at the
weights of :data:`BLEND_WEIGHTS` (the fit's share): two zero-shot denoisers whose errors differ.

Each result has the fits' three outputs: ``enhance`` (the gained, undenoised image), ``denoise``
(denoised, then gained) and ``linear`` (denoised, at the input's intensities). Microscopy is
scored intensity-matched, as the fits are, so its gain does not count there. Results go in
``quality.py``'s format with the step count 0, so ``quality.py --merge`` puts them in one table
with the fits' results of the same sizes:

    python benchmarks/classical.py --datasets lol15-dev --out results/classical_lol600
    python benchmarks/quality.py --merge results/classical_lol600.json results/quality_lol600_h100_2000steps.json \\
        --out results/classical_lol600_against_fits
    python benchmarks/classical.py --datasets lol15-dev --size 200 --out results/classical_lol200
    python benchmarks/classical.py --datasets skimage-synthetic --size 160 --out results/classical_synthetic160
    python benchmarks/classical.py --datasets microscopy-dev --crop 512 --out results/classical_microscopy512
    python benchmarks/classical.py --datasets microscopy-dev --crop 128 --methods gain tv vst+nl-means \
        --blend-steps 1000 --seed 3 --threads 1 --out results/blend_microscopy128_seed3
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import (  # noqa: E402
    DATASETS, INTENSITY_MATCHED, REPO, SHARED, SYNTHETIC_DATASETS, SYNTHETIC_EXPOSURE, brightened, pairs, prepare, score,
    write,
)

from zeroig_plugin.classical import calibrated, calibrated_tv, noise_level  # noqa: E402

METHODS = ("gain", "nl-means", "tv", "vst+nl-means")
VST_SAMPLES = 4096
BLEND_WEIGHTS = (0.25, 0.5, 0.75)
MAX_GAIN = 256.0  # the default mode's output gain stops at 8x on top of its fit; here the gain is all the brightening


def stabiliser(channel: np.ndarray):
    """``(forward, inverse)``: the variance-stabilising map of ``channel``'s noise curve and its inverse."""
    import torch

    from zeroig_plugin.noise import noise_curve

    curve = noise_curve(torch.from_numpy(np.ascontiguousarray(channel, dtype=np.float32)))
    grid = np.linspace(0.0, 1.0, VST_SAMPLES)
    spread = np.sqrt(np.maximum(curve(torch.from_numpy(grid)).numpy(), 1e-12))
    stabilised = np.concatenate([[0.0], np.cumsum((1 / spread[1:] + 1 / spread[:-1]) / 2 * np.diff(grid))])
    return (lambda x: np.interp(x, grid, stabilised)), (lambda y: np.interp(y, stabilised, grid))


def denoised(method: str, image: np.ndarray) -> tuple[np.ndarray, float | None]:
    """``image`` (``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]``) denoised by ``method``, its strength
    chosen on the image; also that strength, as a multiple of the noise level (``None`` for ``gain``)."""
    from skimage.restoration import denoise_nl_means

    channel_axis = -1 if image.ndim == 3 else None
    nl_means = dict(fast_mode=True, patch_size=5, patch_distance=6, channel_axis=channel_axis)
    if method == "gain":
        return image, None
    if method == "tv":
        return calibrated_tv(image)
    if method == "nl-means":
        sigma = noise_level(image)
        return calibrated(denoise_nl_means, image, "h", sigma, sigma=sigma, **nl_means)
    if method == "vst+nl-means":
        channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
        maps = [stabiliser(channel) for channel in channels]
        stable = np.stack([forward(channel) for (forward, _), channel in zip(maps, channels)], -1)
        result, strength = calibrated(denoise_nl_means, stable[..., 0] if image.ndim == 2 else stable, "h", 1.0, sigma=1.0, **nl_means)
        result = result[..., None] if image.ndim == 2 else result
        back = np.stack([inverse(result[..., c]) for c, (_, inverse) in enumerate(maps)], -1)
        return (back[..., 0] if image.ndim == 2 else back).astype(np.float32), strength
    raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")


def gained(image: np.ndarray, brightness: float, linear_light: bool = False) -> np.ndarray:
    """``image`` brightened by the one gain, up to :data:`MAX_GAIN`, that brings its clipped mean
    luminance to ``brightness`` (:func:`quality.brightened`)."""
    return brightened(image, brightness, linear_light, max_gain=MAX_GAIN)


def run_one(
    method: str, low: np.ndarray, high: np.ndarray, match: bool, brightness: float, linear_light: bool = False
) -> tuple[dict, np.ndarray]:
    """One method on one pair: its three outputs scored (:func:`quality.score`) as checkpoint
    ``"0"``, and the output a fit's is compared with (``linear`` where ``match``, else ``denoise``)."""
    start = time.perf_counter()
    linear, strength = denoised(method, low)
    linear = np.clip(linear, 0, 1)
    outputs = {"enhance": gained(low, brightness, linear_light), "denoise": gained(linear, brightness, linear_light),
               "linear": linear}
    seconds = time.perf_counter() - start
    result = {
        "checkpoints": {"0": {name: score(output, high, match) for name, output in outputs.items()}},
        "reference_brightness": float(high.mean() * 255), "seconds": seconds, "brightness": brightness,
        "strength": strength,  # the calibrated h or weight over the noise level; at an end of zeroig_plugin.classical.STRENGTHS, widen them
    }
    return result, outputs["linear" if match else "denoise"]


def fitted(low: np.ndarray, match: bool, steps: int, seed: int) -> np.ndarray:
    """The fit's output for ``low`` after ``steps`` steps: ``linear`` with the napari plugin's
    settings before it took the exposure gain where ``match`` (microscopy), else the default mode's ``denoise``."""
    from zeroig_plugin import ZeroIG

    if match:
        model = ZeroIG(seed=seed, brightness="headroom", exposure_gain=False, select_for="linear")
    else:
        model = ZeroIG(seed=seed)
    model.fit(low, steps)
    outputs = model.infer(low)
    return outputs.linear if match else outputs.denoise


def blends(fit: np.ndarray, classical: dict[str, np.ndarray], high: np.ndarray, match: bool) -> dict:
    """Scores (:func:`quality.score`) of the fit's output alone (``"fit"``) and averaged with each
    classical output of the same kind and level, keyed by row label."""
    rows = {"fit": score(fit, high, match)}
    for method, image in classical.items():
        for weight in BLEND_WEIGHTS:
            rows[f"fit x {weight} + {method} x {1 - weight}"] = score(weight * fit + (1 - weight) * image, high, match)
    return rows


def blend_table(blended: dict, caption: str = ": the fit's output averaged with the classical ones") -> str:
    """Markdown: PSNR / SSIM per row and image, with the mean, one table per dataset (``{dataset:
    {row: {image: scores}}}``), each headed by the dataset's name and ``caption``."""
    lines = []
    for dataset, rows in blended.items():
        names = list(next(iter(rows.values())))
        lines += [f"### {dataset}{caption}", "",
                  "| row | " + " | ".join(names) + " | mean |", "|---|" + "---|" * (len(names) + 1)]
        for label, images in rows.items():
            cells = [f"{images[n]['psnr']:.2f} / {images[n]['ssim']:.3f}" for n in names]
            mean = f"{np.mean([images[n]['psnr'] for n in names]):.2f} / {np.mean([images[n]['ssim'] for n in names]):.3f}"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--scale", type=float, default=None, help="downscale factor (area average), e.g. 0.25")
    parser.add_argument("--size", type=int, default=None, help="downscale to this long side (ignored with --scale)")
    parser.add_argument("--crop", type=int, default=None, help="then centre-crop to this square side")
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--exposure", type=float, default=SYNTHETIC_EXPOSURE, help="skimage-synthetic's simulated exposure")
    parser.add_argument("--brightness", type=float, default=0.5, help="the mean luminance the gain aims at (default 0.5)")
    parser.add_argument("--linear-light", action="store_true",
                        help="gain the light the sRGB values encode, as the default mode's output gain does")
    parser.add_argument("--blend-steps", type=int, default=0, help="also fit each pair this many steps and score blends (0: no fits)")
    parser.add_argument("--seed", type=int, default=2, help="the fits' seed (default 2, the published)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for the fits (the runs reported used 1)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "classical"), help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    import skimage
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    datasets = [d for d in args.datasets if d in SYNTHETIC_DATASETS or (SHARED / "data" / d).is_dir()]
    for missing in sorted(set(args.datasets) - set(datasets)):
        print(f"skipped {missing}: not found in {SHARED / 'data'} (set ZEROIG_SHARED to the shared/ folder)")
    settings = {
        "device": f"CPU ({platform.processor() or platform.machine()})", "scikit-image": skimage.__version__,
        "python": platform.python_version(), "steps": [0], "scale": args.scale, "size": args.size, "crop": args.crop,
        "brightness": args.brightness, "synthetic_exposure": args.exposure, "modes": list(args.methods),
        "blend_steps": args.blend_steps, "seed": args.seed, "torch_threads": torch.get_num_threads(),
        "gain_in_linear_light": args.linear_light,
    }
    report: dict = {"settings": settings, "results": {}}
    resize = lambda array: prepare(array, args.scale, args.size, args.crop)  # noqa: E731
    for dataset in datasets:
        match = dataset in INTENSITY_MATCHED
        output = "linear" if match else "denoise"
        for name, low, high in pairs(dataset, None, args.names, resize, args.exposure):
            classical = {}
            for method in args.methods:
                result, classical[method] = run_one(method, low, high, match, args.brightness, args.linear_light)
                report["results"].setdefault(dataset, {}).setdefault(method, {})[name] = result
                final = result["checkpoints"]["0"][output]
                print(f"{dataset} {name} {low.shape} {method}: {final['psnr']:.2f} dB / {final['ssim']:.3f} "
                      f"({result['seconds']:.1f} s)", file=sys.stderr, flush=True)
            if args.blend_steps:
                classical.pop("gain", None)
                fit = fitted(low, match, args.blend_steps, args.seed)
                for label, scores in blends(fit, classical, high, match).items():
                    report.setdefault("blends", {}).setdefault(dataset, {}).setdefault(label, {})[name] = scores
                    print(f"{dataset} {name} {label}: {scores['psnr']:.2f} dB / {scores['ssim']:.3f}", file=sys.stderr, flush=True)
    write(report, args.out)
    if "blends" in report:
        table = blend_table(report["blends"])
        print(table)
        with open(f"{args.out}.md", "a") as markdown:
            markdown.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
