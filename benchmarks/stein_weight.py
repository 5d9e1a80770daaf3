"""The fit's ``linear`` averaged with calibrated TV at a weight chosen per image by Stein's risk.

The microscopy front ends average ``linear`` half and half with calibrated TV
(``ZeroIG(average_with_tv=True)``). The better weight differs by pair (with hindsight 0.8 on FMD,
0.1 to 0.35 on the W2S fields), so this measures choosing it on the image alone: for
``o = w f + (1 - w) t`` with ``f`` the fit's output and ``t`` TV's, Stein's unbiased risk estimate
``mean(|o - y|^2 + 2 v do/dy - v)`` (``y`` the input, ``v`` its per-pixel noise variance from
:func:`zeroig_plugin.noise.noise_variance`) is quadratic in ``w``, lowest at

    w = (mean((f - t) (y - t)) - mean(v (df/dy - dt/dy))) / mean((f - t)^2),

clipped to ``[0, 1]``. The divergences are estimated with one standard normal probe by finite
differences: the fitted networks' with the image's own normalisation statistics held (as the
engine's risk does), TV's at the calibrated strength. Each pair is fitted with the napari
plugin's settings of the time (the fit-only exposure), read at each of ``--steps`` (checkpoints of one fit) and scored
intensity-matched at five weights: 1 (the fit), 0 (TV), 0.5 (the
default), Stein's, and the best of 0, 0.05, ..., 1 in hindsight.

    python benchmarks/stein_weight.py --crop 128 --steps 300 1000 --seeds 2 3 --threads 1 \\
        --out results/stein_weight_microscopy128
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import REPO, SHARED, pairs, prepare, score  # noqa: E402

FIT_STEP = 1e-3  # the networks' finite difference (float32 inference)
TV_STEP = 1e-2  # TV's: a smaller step is within its iterations' stopping tolerance
HINDSIGHT_WEIGHTS = np.linspace(0.0, 1.0, 21)


def divergence(
    denoise: Callable[[np.ndarray], np.ndarray], image: np.ndarray, output: np.ndarray, probe: np.ndarray, step: float
) -> np.ndarray:
    """The per-pixel estimate ``probe * (denoise(image + step probe) - output) / step`` with
    ``output = denoise(image)``, laid out like ``image``; its expectation over standard normal
    probes is the divergence of ``denoise`` at ``image``, pixel by pixel."""
    return probe * (denoise(image + step * probe) - output) / step


def stein_weight(
    image: np.ndarray, fit: np.ndarray, tv: np.ndarray, fit_divergence: np.ndarray, tv_divergence: np.ndarray,
    variance: np.ndarray,
) -> float:
    """The weight ``w`` in ``[0, 1]`` of ``fit`` in ``w fit + (1 - w) tv`` that minimises Stein's
    unbiased risk estimate against the noise-free image, from the noisy ``image``, both estimates
    of it, their divergences (:func:`divergence`) and the noise variance, all laid out alike."""
    image, fit, tv = (np.asarray(a, dtype=np.float64) for a in (image, fit, tv))
    apart = fit - tv
    spread = np.mean(apart**2)
    if spread == 0:
        return 0.5
    covariance = np.mean(apart * (image - tv)) - np.mean(variance * (fit_divergence - tv_divergence))
    return float(np.clip(covariance / spread, 0.0, 1.0))


def weighted_rows(image: np.ndarray, model, high: np.ndarray, steps: int, seed: int) -> dict:
    """The scores of ``model`` (a ZeroIG fitted to the gray ``image`` ``(H, W)``) against ``high``
    at the five weights of the module docstring, and the weights."""
    import torch
    from skimage.restoration import denoise_tv_chambolle

    from zeroig_plugin.classical import calibrated_tv, noise_level
    from zeroig_plugin.noise import noise_variance

    probe = np.random.default_rng(0).standard_normal(image.shape).astype(np.float32)
    fit_output = model.infer(image).linear
    fit_divergence = divergence(
        lambda x: model.infer(np.clip(x, 0, 1), statistics_from=image).linear, image, fit_output, probe, FIT_STEP
    )
    tv, strength = calibrated_tv(image)
    weight = strength * noise_level(image)
    tv_divergence = divergence(lambda x: denoise_tv_chambolle(np.clip(x, 0, 1), weight=weight), image, tv, probe, TV_STEP)
    variance = noise_variance(torch.from_numpy(image)[None, None])[0, 0].numpy()
    chosen = stein_weight(image, fit_output, tv, fit_divergence, tv_divergence, variance)
    blended = lambda w: score((w * fit_output + (1 - w) * tv).astype(np.float32), high, True)  # noqa: E731
    on_grid = {float(w): blended(w) for w in HINDSIGHT_WEIGHTS}  # holds 0, 0.5 and 1
    hindsight = max(on_grid, key=lambda w: on_grid[w]["psnr"])
    weights = {"fit": 1.0, "tv": 0.0, "half": 0.5, "stein": chosen, "hindsight": hindsight}
    scores = {row: on_grid[w] if w in on_grid else blended(w) for row, w in weights.items()}
    return {"steps": steps, "seed": seed, "weights": weights, "scores": scores}


def table(report: dict) -> str:
    """Markdown: per fit (steps, seed), PSNR / SSIM per row and pair with the mean, and the weights."""
    lines = []
    for (steps, seed), images in _by_fit(report["results"]).items():
        names = list(images)
        lines += [f"### {steps} steps, seed {seed}", "", "| row | " + " | ".join(names) + " | mean |",
                  "|---|" + "---|" * (len(names) + 1)]
        for row in ("fit", "tv", "half", "stein", "hindsight"):
            cells = [f"{images[n]['scores'][row]['psnr']:.2f} / {images[n]['scores'][row]['ssim']:.3f}" for n in names]
            if row in ("stein", "hindsight"):
                cells = [f"{c} (w {images[n]['weights'][row]:.2f})" for c, n in zip(cells, names)]
            mean = [np.mean([images[n]["scores"][row][key] for n in names]) for key in ("psnr", "ssim")]
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {mean[0]:.2f} / {mean[1]:.3f} |")
        lines.append("")
    return "\n".join(lines)


def _by_fit(results: dict) -> dict:
    """``{name: [result, ...]}`` regrouped as ``{(steps, seed): {name: result}}``."""
    grouped: dict = {}
    for name, fits in results.items():
        for result in fits:
            grouped.setdefault((result["steps"], result["seed"]), {})[name] = result
    return grouped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=128, help="centre-crop each pair to this square side")
    parser.add_argument("--steps", nargs="+", type=int, default=[300], help="fit lengths (default: 300, napari's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2])
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "stein_weight"), help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    import torch

    from zeroig_plugin import ZeroIG

    if args.threads:
        torch.set_num_threads(args.threads)
    if not (SHARED / "data" / "microscopy-dev").is_dir():
        print(f"microscopy-dev not found in {SHARED / 'data'} (set ZEROIG_SHARED to the shared/ folder)")
        return 0
    report = {"settings": {"device": f"CPU ({platform.processor() or platform.machine()})", "torch": torch.__version__,
                           "crop": args.crop, "steps": args.steps, "seeds": args.seeds,
                           "torch_threads": torch.get_num_threads()}, "results": {}}
    resize = lambda array: prepare(array, None, None, args.crop)  # noqa: E731
    for name, low, high in pairs("microscopy-dev", None, args.names, resize):
        for seed in args.seeds:
            model = ZeroIG(seed=seed, brightness="headroom", exposure_gain=False, select_for="linear")
            for steps in sorted(args.steps):  # checkpoints of one fit
                start = time.perf_counter()
                model.fit(low, steps - model.steps_done)
                result = weighted_rows(low, model, high, steps, seed)
                report["results"].setdefault(name, []).append(result)
                print(f"{name} {steps} steps seed {seed}: Stein w {result['weights']['stein']:.2f} "
                      f"(hindsight {result['weights']['hindsight']:.2f}), {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1))
    Path(f"{args.out}.md").write_text(f"# Stein's weight for the average with TV\n\n- {json.dumps(report['settings'])}\n\n{table(report)}\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
