"""Ablation of the default mode: each of its changes measured on its own, under one protocol.

Rows: the published method; the published method with the default's main change alone (the
image's own normalisation statistics at inference); the default (``improved``); and the default
with each of its changes taken out in turn (``improved-X``, from
``zeroig_plugin.improved.ablation_recipes``; the self-ensemble is taken out by reading the same
fit with one view). One fit per image and mode, seed 2 (the published init) unless ``--seed``,
CPU unless ``--device``; per dataset the protocol of ``PROTOCOLS`` (reduced sizes, so that the
whole table fits in a few CPU hours). The fits are run by ``benchmarks/quality.py``; its
per-checkpoint tables are written beside this script's summary.

    python benchmarks/ablation.py --datasets lol15-dev skimage-synthetic --out benchmarks/results/ablation_photos
    python benchmarks/ablation.py --datasets microscopy-dev --out benchmarks/results/ablation_microscopy128
    python benchmarks/ablation.py --datasets microscopy-dev --names w2s_001_0 w2s_017_1 --seed 3 \
        --out benchmarks/results/ablation_w2s128_seed3
    python benchmarks/ablation.py --table benchmarks/results/ablation_photos_*.json \
        benchmarks/results/ablation_microscopy128.json --out benchmarks/results/ablation
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import quality

# (row label, quality.py mode label with the ensemble it is read with, what the row is)
ROWS = (
    ("faithful", "faithful, ensemble 1", "the published method (SPEC.md)"),
    ("faithful+image-statistics", "faithful+image-statistics, ensemble 1", "the published method + change 1 alone"),
    ("improved (default)", "improved, ensemble 8", "all changes"),
    ("improved-image-statistics", "improved-image-statistics, ensemble 8", "without 1: the published running statistics at inference"),
    ("improved-average", "improved-average, ensemble 8", "without 2: no weight averaging"),
    ("improved-late-rate", "improved-late-rate, ensemble 8", "without 3: learning rate 3e-4 throughout"),
    ("improved-selection", "improved-selection, ensemble 8", "without 4: the final weights, no checkpoint selection"),
    ("improved-ensemble", "improved, ensemble 1", "without 5: one inference pass"),
    ("improved-post-gain", "improved-post-gain, ensemble 8", "without 6: the fit's exposure rule alone sets the level"),
)
MODES = ("faithful", "faithful+image-statistics", "improved", "improved-image-statistics", "improved-average",
         "improved-late-rate", "improved-selection", "improved-post-gain")
PROTOCOLS = {
    "lol15-dev": ["--size", "96", "--steps", "1000"],
    "microscopy-dev": ["--crop", "128", "--steps", "1000"],
    "skimage-synthetic": ["--size", "128", "--steps", "1000"],
}
DEFAULT_ROW = "improved (default)"


def run(datasets: list[str], out: str, extra: list[str]) -> dict:
    """Fit every mode of the ablation on ``datasets`` (each with its protocol); the merged report."""
    parts = []
    for dataset in datasets:
        part = f"{out}_{dataset}" if len(datasets) > 1 else out
        quality.main(["--datasets", dataset, *PROTOCOLS[dataset], "--modes", *MODES, "--ensembles", "1", "8",
                      "--out", part, *extra])
        parts.append(f"{part}.json")
    return quality.merge(parts)


def summary(report: dict) -> str:
    """Markdown: per dataset, each row's mean final PSNR / SSIM and its difference from the default."""
    headers = _dataset_headers(report)
    lines = ["| row | what | " + " | ".join(headers) + " |", "|---|---|" + "---|" * len(headers)]
    defaults = {dataset: _means(modes[ROWS[2][1]]) for dataset, modes in report["results"].items() if ROWS[2][1] in modes}
    for row, label, what in ROWS:
        cells = []
        for dataset, modes in report["results"].items():
            if label not in modes:
                cells += ["-", "-"]
                continue
            means, default = _means(modes[label]), defaults.get(dataset)
            delta = f" ({means['denoise'][0] - default['denoise'][0]:+.2f})" if default and row != DEFAULT_ROW else ""
            cells.append(f"{means['denoise'][0]:.2f} / {means['denoise'][1]:.3f}{delta}")
            if dataset in quality.INTENSITY_MATCHED:
                cells.append(f"{means['linear'][0]:.2f} / {means['linear'][1]:.3f}")
            else:
                cells.append(f"{means['drop']:.2f}")
        lines.append(f"| {row} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _dataset_headers(report: dict) -> list[str]:
    headers = []
    for dataset, modes in report["results"].items():
        images = len(next(iter(modes.values())))
        steps = list(next(iter(next(iter(modes.values())).values()))["checkpoints"])[-1]
        headers.append(f"{dataset} ({images} images, {steps} steps): denoise PSNR / SSIM (vs default)")
        if dataset in quality.INTENSITY_MATCHED:
            headers.append(f"{dataset}: linear PSNR / SSIM")
        else:
            headers.append(f"{dataset}: worst best-to-final drop (dB)")
    return headers


def _means(images: dict) -> dict:
    denoise = [quality.last_scores(r)["denoise"] for r in images.values()]
    linear = [quality.last_scores(r)["linear"] for r in images.values()]
    drops = [max(c["denoise"]["psnr"] for c in r["checkpoints"].values()) - quality.last_scores(r)["denoise"]["psnr"] for r in images.values()]
    return {
        "denoise": (np.mean([d["psnr"] for d in denoise]), np.mean([d["ssim"] for d in denoise])),
        "linear": (np.mean([d["psnr"] for d in linear]), np.mean([d["ssim"] for d in linear])),
        "drop": max(drops),
    }


def per_image(report: dict) -> str:
    """Markdown: each row's final denoise PSNR per image, per dataset."""
    lines = []
    for dataset, modes in report["results"].items():
        names = list(next(iter(modes.values())))
        lines += [f"#### {dataset}", "", "| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for row, label, _ in ROWS:
            if label in modes:
                cells = [f"{quality.last_scores(modes[label][n])['denoise']['psnr']:.2f}" if n in modes[label] else "-" for n in names]
                lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    parser.add_argument("--table", nargs="+", default=None, help="only summarise these quality.py JSON results")
    parser.add_argument("--out", default=str(quality.REPO / "benchmarks" / "results" / "ablation"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="instead of the protocol's (e.g. a short trial run)")
    parser.add_argument("--images", type=int, default=None, help="at most this many images per dataset")
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--seed", type=int, default=None, help="the init's seed (default 2, the published)")
    args = parser.parse_args(argv)

    if args.table:
        report = quality.merge(args.table)
    else:
        extra = ["--device", args.device]
        for option, flag in {"threads": "--threads", "steps": "--steps", "images": "--images", "seed": "--seeds"}.items():
            if getattr(args, option) is not None:
                extra += [flag, str(getattr(args, option))]
        if args.names:
            extra += ["--names", *args.names]
        report = run(args.datasets, args.out, extra)
    text = f"# Ablation of the default mode\n\n{summary(report)}\n\nFinal denoise PSNR per image:\n\n{per_image(report)}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + "_summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
