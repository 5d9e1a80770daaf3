"""A photo's error against its reference split into tone (the low-pass) and detail, at several step counts.

The finished photo output (``denoise`` through calibrated TV, what the image CLI writes) loses PSNR
late in a full-size LOL fit while its SSIM rises. This splits each output's error in two: ``tone``
is the PSNR of the output's Gaussian low-pass (``--sigma`` pixels) against the reference's, the
local brightness the enhancer's illumination map sets; ``detail`` the PSNR of what is left above it
(output minus its low-pass against reference minus its low-pass), the denoising. Outputs kept by
``quality.py --keep-outputs`` after different step counts of the same fit are read and labelled:

    python benchmarks/quality.py --datasets lol15-dev --steps 250 --modes default --threads 1 \\
        --acceleration max --keep-outputs /tmp/lol_250.npz --out /tmp/q250   # and --steps 2000
    python benchmarks/tone_detail.py --kept 250=/tmp/lol_250.npz 2000=/tmp/lol_2000.npz \\
        --out results/tone_detail_lol600
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import load_outputs  # noqa: E402

SIGMA = 4.0
"""The low-pass's Gaussian standard deviation in pixels: wider than the noise the networks leave
(correlated over about two pixels), narrow enough to follow the illumination map's changes."""


def split(image: np.ndarray, reference: np.ndarray, sigma: float = SIGMA) -> dict[str, float]:
    """PSNR and SSIM of ``image`` against ``reference`` (both ``(H, W, 3)``, ``image`` clipped to
    ``[0, 1]``), and the PSNR of its low-pass (``tone``) and of the rest (``detail``)."""
    from scipy.ndimage import gaussian_filter
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    image = np.clip(image, 0, 1).astype(np.float64)
    reference = reference.astype(np.float64)
    low_image, low_reference = (gaussian_filter(a, (sigma, sigma, 0)) for a in (image, reference))
    return {
        "psnr": float(peak_signal_noise_ratio(reference, image, data_range=1)),
        "ssim": float(structural_similarity(reference, image, channel_axis=-1, data_range=1)),
        "tone": float(peak_signal_noise_ratio(low_reference, low_image, data_range=1)),
        "detail": float(peak_signal_noise_ratio(reference - low_reference, image - low_image, data_range=1)),
    }


def study(kept: dict[str, dict[str, np.ndarray]], sigma: float = SIGMA) -> dict[str, dict[str, dict[str, dict]]]:
    """``{image: {label: {"as fitted" | "finished": split}}}`` for every pair in each labelled set of
    kept outputs (keys ``dataset/name/array``); "finished" is the image CLI's calibrated TV."""
    from zeroig_plugin.classical import FINISH_STRIDE, calibrated_tv

    results: dict = {}
    for label, saved in kept.items():
        for key, denoise in saved.items():
            prefix, array = key.rsplit("/", 1)
            if array != "denoise":
                continue
            high = saved[f"{prefix}/high"]
            finished = calibrated_tv(denoise, stride=FINISH_STRIDE)[0]
            results.setdefault(prefix, {})[label] = {
                "as fitted": split(denoise, high, sigma), "finished": split(finished, high, sigma),
            }
    return results


def table(results: dict) -> str:
    """Markdown: one row per image and label, then the mean per label."""
    head = ["| image | steps | finished PSNR / SSIM | tone | detail | as fitted PSNR / SSIM | tone | detail |",
            "|---|---|---|---|---|---|---|---|"]
    rows, by_label = [], {}
    for image, labels in results.items():
        for label, parts in labels.items():
            by_label.setdefault(label, []).append(parts)
            rows.append(_row(image, label, parts))
    means = {label: {output: {metric: float(np.mean([p[output][metric] for p in parts])) for metric in parts[0][output]}
                     for output in parts[0]} for label, parts in by_label.items()}
    rows += [_row("**mean**", label, parts) for label, parts in means.items()]
    return "\n".join(head + rows)


def _row(image: str, label: str, parts: dict) -> str:
    cells = [f"{p['psnr']:.2f} / {p['ssim']:.3f} | {p['tone']:.2f} | {p['detail']:.2f}" for p in (parts["finished"], parts["as fitted"])]
    return f"| {image} | {label} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kept", nargs="+", required=True, metavar="LABEL=NPZ",
                        help="outputs kept by quality.py --keep-outputs, labelled (e.g. 250=lol_250.npz); "
                             "a label may be given several files")
    parser.add_argument("--sigma", type=float, default=SIGMA, help=f"the low-pass's width in pixels (default {SIGMA:g})")
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    import skimage

    kept: dict[str, dict[str, np.ndarray]] = {}
    fitted: dict[str, list] = {}
    for item in args.kept:
        label, separator, path = item.partition("=")
        if not separator or not label or not path:
            parser.error(f"--kept takes LABEL=NPZ, got {item!r}")
        fit, saved = load_outputs(path)
        fitted.setdefault(label, []).append(fit)
        kept.setdefault(label, {}).update(saved)
    results = study(kept, args.sigma)
    settings = {"kept": args.kept, "fitted": fitted, "sigma": args.sigma, "scikit-image": skimage.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    markdown = table(results)
    Path(f"{args.out}.md").write_text(
        f"Tone (Gaussian low-pass, sigma {args.sigma:g} px) and detail PSNR of `denoise`, finished by the image "
        f"CLI's calibrated TV and as fitted, against the reference.\n\n{markdown}\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
