"""Does checkpoint selection pick well? The selection score against PSNR along fits that do not select.

Each fit runs the default mode without selection (the ablation variant ``improved-selection``; the
fit is the same, only the readout differs) and, every ``select_every`` steps from ``select_after``
on (50 and 250 in the default recipe), records the self-supervised score selection ranks by
(:meth:`ZeroIG.selection_score`) in both of its domains (``input`` and ``enhanced``, the
published term's) and the denoise PSNR of those weights (one view; microscopy
intensity-matched, as in ``quality.py``). The table compares, per fit, the final weights, the
weights selection would keep with each score (the lowest seen) and the best PSNR seen, and gives
the rank correlation between each score and PSNR (Spearman, sign flipped so that 1 means the score
ranks as PSNR does). Writes ``<out>.json`` and ``<out>.md``.

    python benchmarks/selection_trace.py --datasets microscopy-dev --crop 128 --seeds 2 3 4 --exposure-gain off on
    python benchmarks/selection_trace.py --datasets lol15-dev --size 96 --exposure-gain on
    python benchmarks/selection_trace.py --summarise results/selection_trace_128.json --out results/selection_trace_128
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from quality import DATASETS, INTENSITY_MATCHED, REPO, pairs, prepare, register_mode, score

GAIN = {"off": False, "on": True}
DOMAINS = ("input", "enhanced")


def trace_fit(low: np.ndarray, high: np.ndarray, match: bool, seed: int, exposure_gain: bool, steps: int) -> list[dict]:
    """``[{step, scores: {domain: score}, psnr}]`` every ``select_every`` steps from ``select_after`` to ``steps``."""
    from zeroig_plugin import ZeroIG
    from zeroig_plugin.recipes import get_recipe

    default = get_recipe("default")
    model = ZeroIG(mode=register_mode("improved-selection"), seed=seed, exposure_gain=exposure_gain, device="cpu")
    trace, done = [], 0
    for step in range(default.select_after, steps + 1, default.select_every):
        model.fit(low, step - done)
        done = step
        psnr = score(model.infer(low, ensemble=1).denoise, high, match)["psnr"]
        scores = {domain: model.selection_score(low, domain) for domain in DOMAINS}
        trace.append({"step": step, "scores": scores, "psnr": psnr})
        print(f"  step {step}: scores " + ", ".join(f"{d} {v:.6f}" for d, v in scores.items()) + f", denoise {psnr:.2f} dB",
              file=sys.stderr, flush=True)
    return trace


def summary(fit: dict, domain: str) -> dict:
    """Final, selected and peak PSNR of one traced fit, the step selection by the ``domain`` score
    keeps, and the rank correlation of the (negated) score with PSNR."""
    from scipy.stats import spearmanr

    trace = fit["trace"]
    kept = min(trace, key=lambda row: row["scores"][domain])
    return {
        "final": trace[-1]["psnr"], "selected": kept["psnr"], "peak": max(row["psnr"] for row in trace),
        "kept_step": kept["step"],
        "rank_correlation": float(spearmanr([-row["scores"][domain] for row in trace], [row["psnr"] for row in trace])[0]),
    }


def table(report: dict) -> str:
    lines = [
        f"Selection against the final weights ({report['settings']['device']}, torch {report['settings']['torch']}); "
        "denoise PSNR (dB), one view; selected and rank correlation by the input-domain score / the "
        "enhanced-domain score (the published term's)",
        "",
        "| image | seed | exposure gain | final | peak | selected (step) | selected - final | rank correlation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    gains: dict[str, list[float]] = {domain: [] for domain in DOMAINS}
    for fit in report["fits"]:
        by = {domain: summary(fit, domain) for domain in DOMAINS}
        first = by[DOMAINS[0]]
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
            f"Selection by the {domain}-domain score minus final over {len(found)} fits: mean {np.mean(found):+.2f} dB, "
            f"{sum(g > 0.05 for g in found)} higher, {sum(g < -0.05 for g in found)} lower (by more than 0.05 dB), "
            f"worst {min(found):+.2f}."
        )
    return "\n".join(lines) + "\n"


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
            "device": f"cpu ({args.threads} thread{'s' if args.threads > 1 else ''})", "torch": torch.__version__,
            "python": platform.python_version(), "crop": args.crop, "size": args.size, "steps": args.steps,
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
                    trace = trace_fit(low, high, dataset in INTENSITY_MATCHED, seed, GAIN[gain], args.steps)
                    report["fits"].append({
                        "dataset": dataset, "name": name, "seed": seed, "exposure_gain": GAIN[gain], "trace": trace,
                        "seconds": time.perf_counter() - start,
                    })
    write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
