"""A photo's ``denoise`` finished by total variation: the default's calibrated pass and its alternatives.

The fit leaves noise in ``denoise``, most at full size, where a photo's noise is strongest. Each
photo pair is fitted with the image CLI's defaults (``--steps``, the published seed) and its
outputs are scored (:func:`quality.score`) as they come and finished in each of these ways:

- ``TV of denoise, calibrated`` (``ZeroIG(finish_with_tv=True)``, the image CLI's default for
  photos): TV whose strength Noise2Self's J-invariant loss chooses on ``denoise`` itself, on its
  pixel-shuffled sub-images (:func:`zeroig_plugin.classical.tv_denoised`, ``FINISH_STRIDE``);
- ``TV of denoise, one-pixel calibration``: the same loss on ``denoise`` whole (the default until
  the noise's correlation between neighbours was allowed for);
- ``TV of denoise, enhance's strength``: TV of ``denoise`` at the weight that loss chooses on
  ``enhance``, the brightened image before the second denoiser (stronger: ``enhance`` is noisier);
- ``TV of denoise, 1x its noise level``: a fixed weight, the noise level of ``denoise``;
- ``TV of enhance, calibrated``, and ``denoise and it, half and half`` (the microscopy front ends'
  kind of average, with TV of the brightened image so that the fit's local tone curve is kept);
- ``non-local means of denoise, calibrated``: scikit-image's fast non-local means (5x5 patches,
  13x13 search, ``sigma`` the noise level) with ``h`` chosen by the default's calibration, on the
  same sub-images, among the same multiples of the noise level (a patch-based denoiser keeps the
  texture TV flattens; its best strength, read off the reference, was above TV's best on 24 of 26
  saved fits, by up to 0.03 SSIM).

The fitted outputs can be kept (``--keep-outputs FILE.npz``) and scored again without fitting
(``--rescore FILE.npz ...``), so the tables can be rewritten from saved fits.

    python benchmarks/photo_finish.py --datasets lol15-dev --size 200 --steps 500 --threads 1 \\
        --keep-outputs /tmp/lol200.npz --out results/photo_finish_lol200
    python benchmarks/photo_finish.py --rescore /tmp/lol200.npz --out results/photo_finish_lol200
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classical import blend_table  # noqa: E402
from quality import SHARED, SYNTHETIC_DATASETS, SYNTHETIC_EXPOSURE, load_outputs, pairs, prepare, save_outputs, score  # noqa: E402

PHOTO_DATASETS = ("lol15-dev", *SYNTHETIC_DATASETS)
SAVED = ("low", "high", "enhance", "denoise")


def tv(image: np.ndarray, weight: float) -> np.ndarray:
    """``image`` ``(H, W, 3)`` denoised by total variation (Chambolle) at ``weight``, float32."""
    from skimage.restoration import denoise_tv_chambolle

    return np.asarray(denoise_tv_chambolle(image, weight=weight, channel_axis=-1), np.float32)


def finishes(enhance: np.ndarray, denoise: np.ndarray) -> dict[str, np.ndarray]:
    """``denoise`` as the fit left it and finished each way (``(H, W, 3)`` in ``[0, 1]``), by row label."""
    from skimage.restoration import denoise_nl_means

    from zeroig_plugin.classical import FINISH_STRIDE, calibrated, calibrated_tv, noise_level

    tv_of_enhance, enhance_strength = calibrated_tv(enhance)
    level = noise_level(denoise)
    non_local_means = calibrated(denoise_nl_means, denoise, "h", level, FINISH_STRIDE, sigma=level, patch_size=5,
                                 patch_distance=6, fast_mode=True, channel_axis=-1)[0] if level > 0 else denoise
    return {
        "denoise (as fitted)": denoise,
        "TV of denoise, calibrated (the default)": calibrated_tv(denoise, stride=FINISH_STRIDE)[0],
        "TV of denoise, one-pixel calibration (the earlier default)": calibrated_tv(denoise)[0],
        "TV of denoise, enhance's strength": tv(denoise, enhance_strength * noise_level(enhance)),
        "TV of denoise, 1x its noise level": tv(denoise, level),
        "TV of enhance, calibrated": tv_of_enhance,
        "denoise and TV of enhance, half and half": (denoise + tv_of_enhance) / 2,
        "non-local means of denoise, calibrated": non_local_means,
    }


def fitted(dataset: str, size: int | None, steps: int, seed: int, names: list[str] | None) -> dict[str, np.ndarray]:
    """Each pair's ``SAVED`` arrays after a fit with the image CLI's photo defaults, finishing off."""
    from zeroig_plugin import ZeroIG

    saved = {}
    for name, low, high in pairs(dataset, None, names, lambda array: prepare(array, None, size, None), SYNTHETIC_EXPOSURE):
        model = ZeroIG(seed=seed)
        model.fit(low, steps)
        outputs = model.infer(low)
        for key, array in zip(SAVED, (low, high, outputs.enhance, outputs.denoise)):
            saved[f"{dataset}/{name}/{key}"] = np.asarray(array, np.float32)
        print(f"{dataset} {name} {low.shape}: fitted", file=sys.stderr, flush=True)
    return saved


def scored(saved: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, dict]]]:
    """``{dataset: {row: {image: scores}}}`` for every pair in ``saved`` (keys ``dataset/name/array``)."""
    results: dict = {}
    for key in saved:
        dataset, name, array = key.rsplit("/", 2)
        if array != "denoise":
            continue
        prefix = f"{dataset}/{name}"
        for row, image in finishes(saved[f"{prefix}/enhance"], saved[key]).items():
            results.setdefault(dataset, {}).setdefault(row, {})[name] = score(np.clip(image, 0, 1).astype(np.float32), saved[f"{prefix}/high"], False)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(PHOTO_DATASETS), choices=PHOTO_DATASETS)
    parser.add_argument("--size", type=int, default=None, help="downscale to this long side (default: full size)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (the runs reported used 1)")
    parser.add_argument("--keep-outputs", metavar="NPZ", help="save the fitted outputs here, to --rescore later")
    parser.add_argument("--rescore", nargs="+", metavar="NPZ", help="score saved outputs instead of fitting")
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    import skimage
    import torch

    if args.rescore:
        loaded = [load_outputs(path) for path in args.rescore]
        settings = {"rescored": args.rescore, "fitted": [fit for fit, _ in loaded]}
        saved = {key: value for _, arrays in loaded for key, value in arrays.items()}
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        datasets = [d for d in args.datasets if d in SYNTHETIC_DATASETS or (SHARED / "data" / d).is_dir()]
        for missing in sorted(set(args.datasets) - set(datasets)):
            print(f"skipped {missing}: not found in {SHARED / 'data'} (set ZEROIG_SHARED to the shared/ folder)")
        saved = {key: value for dataset in datasets for key, value in fitted(dataset, args.size, args.steps, args.seed, args.names).items()}
        settings = {"size": args.size, "steps": args.steps, "seed": args.seed, "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "device": f"CPU ({platform.processor() or platform.machine()})"}
        if args.keep_outputs:
            save_outputs(saved, settings, args.keep_outputs)
    settings["scikit-image"] = skimage.__version__
    results = scored(saved)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    markdown = blend_table(results, caption="")
    Path(f"{args.out}.md").write_text(f"# A photo's denoise finished by TV\n\n- {json.dumps(settings)}\n\n{markdown}")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
