"""Does checkpoint selection pick well? The selection score against PSNR along fits that do not select.

Each fit runs the default mode without selection (the ablation variant ``improved-selection``; the
fit is the same, only the readout differs) and, every ``select_every`` steps from ``select_after``
on (50 and 250 in the default recipe), records the self-supervised score selection ranks by
(:meth:`ZeroIG.selection_score`) in each of its domains (``input`` and ``enhanced``, the
published term's, pair scores; ``risk``, Stein's estimate of the ``linear`` output's error) and
the denoise and linear PSNR and SSIM of those weights (``--ensemble`` views; microscopy
intensity-matched, as in ``quality.py``). The tables compare, per fit, the final weights, the
weights selection would keep with each score (the lowest seen) and the best PSNR seen, and give
the rank correlation between each score and PSNR (Spearman, sign flipped so that 1 means the score
ranks as PSNR does). Writes ``<out>.json`` and ``<out>.md``.

    python benchmarks/selection_trace.py --datasets microscopy-dev --crop 128 --seeds 2 3 4 --exposure-gain off on
    python benchmarks/selection_trace.py --datasets lol15-dev --size 96 --exposure-gain on
    python benchmarks/selection_trace.py --crop 512 --names gigadb_mito-20x-noise1 --brightness headroom \
        --acceleration max --ensemble 8 --save-weights /tmp/weights   # napari's default at full size
    python benchmarks/selection_trace.py --summarise results/selection_trace_128.json --out results/selection_trace_128
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from quality import DATASETS, INTENSITY_MATCHED, REPO, pairs, prepare, register_mode, score

GAIN = {"off": False, "on": True}
DOMAINS = ("input", "enhanced", "risk")


def weights_folder(root: str | Path, name: str, seed: int, exposure_gain: bool) -> Path:
    """Where a run with ``--save-weights root`` keeps one fit's ``step{N}.pt`` files."""
    return Path(root) / f"{name}_seed{seed}_gain-{'on' if exposure_gain else 'off'}"


def trace_fit(
    low: np.ndarray, high: np.ndarray, match: bool, seed: int, exposure_gain: bool, steps: int,
    brightness: float | str | None = None, acceleration: str = "auto", ensemble: int = 1, save_to: Path | None = None,
    device: str = "cpu",
) -> list[dict]:
    """``[{step, scores: {domain: score}, psnr, ssim, linear_psnr, linear_ssim}]`` every
    ``select_every`` steps from ``select_after`` to ``steps``, the outputs read out with
    ``ensemble`` views; with ``save_to``, the weights of each check as ``step{N}.pt`` there."""
    from zeroig_plugin import ZeroIG
    from zeroig_plugin.recipes import get_recipe

    default = get_recipe("default")
    model = ZeroIG(
        mode=register_mode("improved-selection"), seed=seed, exposure_gain=exposure_gain, device=device,
        brightness=brightness, acceleration=acceleration,
    )
    trace, done = [], 0
    for step in range(default.select_after, steps + 1, default.select_every):
        model.fit(low, step - done)
        done = step
        outputs = model.infer(low, ensemble=ensemble)
        denoise, linear = score(outputs.denoise, high, match), score(outputs.linear, high, match)
        scores = {domain: model.selection_score(low, domain) for domain in DOMAINS}
        if save_to is not None:
            model.save(save_to / f"step{step}.pt")
        trace.append({
            "step": step, "scores": scores, "psnr": denoise["psnr"], "ssim": denoise["ssim"],
            "linear_psnr": linear["psnr"], "linear_ssim": linear["ssim"],
        })
        print(f"  step {step}: scores " + ", ".join(f"{d} {v:.6f}" for d, v in scores.items())
              + f", denoise {denoise['psnr']:.2f} dB / {denoise['ssim']:.3f}, linear {linear['psnr']:.2f} / {linear['ssim']:.3f}",
              file=sys.stderr, flush=True)
    return trace


def summary(fit: dict, domain: str, metric: str = "psnr") -> dict:
    """Final, selected and peak ``metric`` (``psnr``: denoise; ``linear_psnr``) of one traced fit,
    the step selection by the ``domain`` score keeps, and the rank correlation of the (negated)
    score with the metric."""
    from scipy.stats import spearmanr

    trace = fit["trace"]
    kept = min(trace, key=lambda row: row["scores"][domain])
    return {
        "final": trace[-1][metric], "selected": kept[metric], "peak": max(row[metric] for row in trace),
        "kept_step": kept["step"],
        "rank_correlation": float(spearmanr([-row["scores"][domain] for row in trace], [row[metric] for row in trace])[0]),
    }


def views(ensemble: int) -> str:
    return "one view" if ensemble == 1 else f"{ensemble} views"


DOMAIN_NAMES = {
    "input": "the input-domain pair score", "enhanced": "the enhanced-domain pair score (the published term's)",
    "risk": "Stein's risk estimate of linear",
}
METRIC_NAMES = {"psnr": "denoise PSNR", "linear_psnr": "linear PSNR"}


def table(report: dict) -> str:
    domains = list(report["fits"][0]["trace"][0]["scores"])
    lines = []
    for metric in METRIC_NAMES:
        # linear is at the input's intensities: scored only where the outputs are intensity-matched
        fits = [fit for fit in report["fits"] if metric in fit["trace"][0] and (metric == "psnr" or fit["dataset"] in INTENSITY_MATCHED)]
        if not fits:
            continue
        lines += [
            f"{METRIC_NAMES[metric]} (dB), {views(report['settings'].get('ensemble', 1))}, against the final weights "
            f"({report['settings']['device']}, torch {report['settings']['torch']}); selected and rank correlation by "
            + " / ".join(DOMAIN_NAMES.get(domain, domain) for domain in domains),
            "",
            "| image | seed | exposure gain | final | peak | selected (step) | selected - final | rank correlation |",
            "|---|---|---|---|---|---|---|---|",
        ]
        gains: dict[str, list[float]] = {domain: [] for domain in domains}
        for fit in fits:
            by = {domain: summary(fit, domain, metric) for domain in domains}
            first = by[domains[0]]
            for domain, s in by.items():
                gains[domain].append(s["selected"] - s["final"])
            lines.append(
                f"| {fit['dataset']}:{fit['name']} | {fit['seed']} | {'on' if fit['exposure_gain'] else 'off'} | "
                f"{first['final']:.2f} | {first['peak']:.2f} | "
                + " / ".join(f"{s['selected']:.2f} ({s['kept_step']})" for s in by.values()) + " | "
                + " / ".join(f"{s['selected'] - s['final']:+.2f}" for s in by.values()) + " | "
                + " / ".join(f"{s['rank_correlation']:.2f}" for s in by.values()) + " |"
            )
        lines.append("")
        for domain, found in gains.items():
            lines.append(
                f"{METRIC_NAMES[metric]}, selection by {DOMAIN_NAMES.get(domain, domain)} minus final over {len(found)} fits: "
                f"mean {np.mean(found):+.2f} dB, {sum(g > 0.05 for g in found)} higher, "
                f"{sum(g < -0.05 for g in found)} lower (by more than 0.05 dB), worst {min(found):+.2f}."
            )
        lines.append("")
    return "\n".join(lines)


def write(report: dict, out: str) -> None:
    text = table(report)
    with open(out + ".json", "w") as handle:
        json.dump(report, handle, indent=1)
    with open(out + ".md", "w") as handle:
        handle.write(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["microscopy-dev"], choices=DATASETS)
    parser.add_argument("--crop", type=int, default=None, help="centre-crop to this square side (default 128 without --size)")
    parser.add_argument("--size", type=int, default=None, help="area-downscale to this long side (photos)")
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2])
    parser.add_argument(
        "--exposure-gain", nargs="+", default=["off"], choices=sorted(GAIN),
        help="fit with the exposure rule alone (off: napari's default) and/or aimed lower with one gain after (on: the CLI's)",
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="as ZeroIG(device=...)")
    parser.add_argument(
        "--brightness", type=lambda value: value if value == "headroom" else float(value), default=None,
        help="as ZeroIG(brightness=...): a mean luminance or 'headroom' (napari's default)",
    )
    parser.add_argument("--acceleration", default="auto", help="as ZeroIG(acceleration=...); max: bf16 networks where native")
    parser.add_argument("--ensemble", type=int, default=1, help="views the outputs are read out with (the default mode's: 8)")
    parser.add_argument("--save-weights", default=None, help="a folder: the weights of every check, step{N}.pt per fit")
    parser.add_argument("--summarise", default=None, help="rewrite the table of this JSON result instead of fitting")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "selection_trace"))
    args = parser.parse_args(argv)
    if args.crop is None and args.size is None:
        args.crop = 128
    if args.summarise:
        with open(args.summarise) as handle:
            write(json.load(handle), args.out)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    report = {
        "settings": {
            "device": args.device if args.device != "cpu" else f"cpu ({args.threads} thread{'s' if args.threads > 1 else ''})",
            "torch": torch.__version__,
            "python": platform.python_version(), "crop": args.crop, "size": args.size, "steps": args.steps,
            "brightness": args.brightness, "acceleration": args.acceleration, "ensemble": args.ensemble,
        },
        "fits": [],
    }
    for dataset in args.datasets:
        try:
            found = pairs(dataset, None, args.names, lambda array: prepare(array, None, args.size, args.crop))
        except FileNotFoundError:
            print(f"skipped {dataset}: not found (set ZEROIG_SHARED to the shared/ folder)", file=sys.stderr)
            continue
        for name, low, high in found:
            for gain in args.exposure_gain:
                for seed in args.seeds:
                    print(f"{dataset}:{name}, seed {seed}, exposure gain {gain}", file=sys.stderr, flush=True)
                    start = time.perf_counter()
                    save_to = None
                    if args.save_weights:
                        save_to = weights_folder(args.save_weights, name, seed, GAIN[gain])
                        save_to.mkdir(parents=True, exist_ok=True)
                    trace = trace_fit(
                        low, high, dataset in INTENSITY_MATCHED, seed, GAIN[gain], args.steps,
                        args.brightness, args.acceleration, args.ensemble, save_to, args.device,
                    )
                    report["fits"].append({
                        "dataset": dataset, "name": name, "seed": seed, "exposure_gain": GAIN[gain], "trace": trace,
                        "seconds": time.perf_counter() - start,
                    })
    write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
