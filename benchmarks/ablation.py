"""Ablation of the default mode: each of its changes measured on its own, under one protocol.

Rows: the published method; the published method with the default's main change alone (the
image's own normalisation statistics at inference); the default (``improved``); and the default
with each of its changes taken out in turn (``improved-X``, from
``zeroig_plugin.improved.ablation_recipes``; the self-ensemble is taken out by reading the same
fit with one view; the exposure gain also in its two parts, the global tone and the gain on the
light). One fit per image and mode, seed 2 (the published init) unless ``--seed``,
CPU unless ``--device``; per dataset the protocol of ``PROTOCOLS`` (reduced sizes, so that the
whole table fits in a few CPU hours). The fits are run by ``benchmarks/quality.py``; its
per-checkpoint tables are written beside this script's summary.

    python benchmarks/ablation.py --datasets lol15-dev skimage-camera --out benchmarks/results/ablation_global_tone
    python benchmarks/ablation.py --datasets microscopy-dev --out benchmarks/results/ablation_global_tone_microscopy-dev
    python benchmarks/ablation.py --table benchmarks/results/ablation_global_tone_*.json \
        --out benchmarks/results/ablation_global_tone

(The stored ``ablation_global_tone_*`` results ran the same fits as ``quality.py`` calls split by
mode or by image over two processes, ``_a`` and ``_b``; ``--table`` merges the parts.)

``--front-ends`` measures, under the same protocols, what the front ends add on top of the fit's
recipe (docs/quality.md items 6, 7, 9, 10 and 11, and item 4's risk score): per kind of image, the
front end's own output as it is written (the image CLI's photo ``denoise`` finished by TV; the
napari plugin's ``linear`` averaged with TV, aimed by the highlights, with the exposure gain,
checkpoints by the risk of ``linear``), then that with one of its settings changed
(:data:`FRONT_END_ROWS`; the stored microscopy results before 2026-12-07's sixth session,
``ablation_front_ends_microscopy128*``, are napari's earlier settings, without the gain):

    python benchmarks/ablation.py --front-ends --datasets lol15-dev skimage-camera \
        --out benchmarks/results/ablation_front_ends_photos
    python benchmarks/ablation.py --front-ends --datasets microscopy-dev --acceleration max --threads 2 \
        --out benchmarks/results/ablation_front_ends_exposure_gain_microscopy128
    python benchmarks/ablation.py --front-ends --table benchmarks/results/ablation_front_ends_*.json \
        --out benchmarks/results/ablation_front_ends
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
from zeroig_plugin.cli import ACCELERATIONS  # noqa: E402
from zeroig_plugin.recipes import RISK_SCORE  # noqa: E402

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
    ("improved-global-tone", "improved-global-tone, ensemble 8", "without 6's global tone: the illumination map's local tone"),
    ("improved-linear-light", "improved-linear-light, ensemble 8", "without 6's linear light: the gain on the sRGB values"),
)
MODES = ("faithful", "faithful+image-statistics", "improved", "improved-image-statistics", "improved-average",
         "improved-late-rate", "improved-selection", "improved-post-gain", "improved-global-tone", "improved-linear-light")
PROTOCOLS = {
    "lol15-dev": ["--size", "96", "--steps", "1000"],
    "microscopy-dev": ["--crop", "128", "--steps", "1000"],
    "skimage-synthetic": ["--size", "128", "--steps", "1000"],
    "skimage-camera": ["--size", "128", "--steps", "1000"],
}
DEFAULT_ROW = "improved (default)"

# The front ends' fits, by kind of image: a mode with quality.py's --brightness and --selection on
# top of the protocol's options. A test keeps each kind's first fit and row equal to what `zeroig
# enhance --for KIND` (cli.IMAGE_KINDS; for microscopy also the napari plugin's defaults) runs.
FRONT_END_FITS = {
    "photos": {"cli": {"mode": "improved"}},
    "microscopy": {
        "napari": {"mode": "improved", "brightness": "headroom", "selection": {"selection_domain": RISK_SCORE}},
        "mid-grey": {"mode": "improved", "selection": {"selection_domain": RISK_SCORE}},
        "pair score": {"mode": "improved", "brightness": "headroom"},
        "no gain": {"mode": "improved-post-gain", "brightness": "headroom", "selection": {"selection_domain": RISK_SCORE}},
    },
}
# (row, fit, output scored, what the row is); each kind's first row is the front end's output.
FRONT_END_ROWS = {
    "photos": (
        ("image CLI, photos", "cli", "global_average_tv",
         "the default fit; `linear` averaged with TV (10), brought up by the global tone (6), finished by calibrated TV (11), "
         "as written"),
        ("without 10", "cli", "denoise_tv", "`linear` alone under the global tone, finished"),
        ("without 10 and 11", "cli", "denoise", "`denoise` as fitted"),
    ),
    "microscopy": (
        ("napari / --for microscopy", "napari", "linear_tv",
         "`linear` (7) averaged with TV (10); brightness from the highlights (9); the exposure gain (6); "
         "checkpoints by the risk of `linear` (4)"),
        ("without 10", "napari", "linear", "`linear` alone"),
        ("without 7", "napari", "denoise", "the brightened `denoise` output instead of `linear`"),
        ("without 9", "mid-grey", "linear_tv", "the fit aimed at mid-grey (0.5)"),
        ("with the pair score", "pair score", "linear_tv", "checkpoints by the pair score's drift test (the photos')"),
        ("without 6", "no gain", "linear_tv", "the fit's own exposure rule: aimed at the level, no gain after"),
    ),
}
KINDS = {"lol15-dev": "photos", "skimage-synthetic": "photos", "skimage-camera": "photos", "microscopy-dev": "microscopy"}


def run(datasets: list[str], out: str, extra: list[str]) -> dict:
    """Fit every mode of the ablation on ``datasets`` (each with its protocol); the merged report."""
    parts = []
    for dataset in datasets:
        part = f"{out}_{dataset}" if len(datasets) > 1 else out
        quality.main(["--datasets", dataset, *PROTOCOLS[dataset], "--modes", *MODES, "--ensembles", "1", "8",
                      "--out", part, *extra])
        parts.append(f"{part}.json")
    return quality.merge(parts)


def run_front_ends(datasets: list[str], out: str, extra: list[str]) -> dict:
    """Fit each front end's fits (:data:`FRONT_END_FITS`) on ``datasets``; the merged report, its
    results keyed by fit name."""
    report: dict = {"settings": [], "results": {}}
    for dataset in datasets:
        for fit, options in FRONT_END_FITS[KINDS[dataset]].items():
            part = f"{out}_{dataset}_{fit.replace(' ', '-')}"
            quality.main(["--datasets", dataset, *PROTOCOLS[dataset], *quality_options(options), "--out", part, *extra])
            scored = quality.merge([f"{part}.json"])
            report["settings"] += [{**settings, "fit": fit} for settings in scored["settings"]]
            for images in scored["results"].get(dataset, {}).values():
                report["results"].setdefault(dataset, {})[fit] = images
    return report


def quality_options(fit: dict) -> list[str]:
    """quality.py's options for one of :data:`FRONT_END_FITS`."""
    options = ["--modes", fit["mode"]]
    if "brightness" in fit:
        options += ["--brightness", str(fit["brightness"])]
    if "selection" in fit:
        options += ["--selection", *(f"{name}={value}" for name, value in fit["selection"].items())]
    return options


def front_end_summary(report: dict) -> str:
    """Markdown: per kind of image, each row's mean final PSNR / SSIM of the output it reads (and
    its difference from the front end's own), per dataset; then per image."""
    lines = []
    for kind, rows in FRONT_END_ROWS.items():
        datasets = [d for d in report["results"] if KINDS[d] == kind]
        if not datasets:
            continue
        headers = []
        for dataset in datasets:
            images = next(iter(report["results"][dataset].values()))
            steps = list(next(iter(images.values()))["checkpoints"])[-1]
            headers.append(f"{dataset} ({len(images)} images, {steps} steps): PSNR / SSIM (vs the front end)")
        lines += [f"### {kind}", "", "| row | what | output | " + " | ".join(headers) + " |",
                  "|---|---|---|" + "---|" * len(headers)]
        _, base_fit, base_output, _ = rows[0]
        for row, fit, output, what in rows:
            cells = []
            for dataset in datasets:
                fits = report["results"][dataset]
                if fit not in fits:
                    cells.append("-")
                    continue
                psnr, ssim = _mean_scores(fits[fit], output)
                compared = (fit, output) != (base_fit, base_output) and base_fit in fits
                delta = f" ({psnr - _mean_scores(fits[base_fit], base_output)[0]:+.2f})" if compared else ""
                cells.append(f"{psnr:.2f} / {ssim:.3f}{delta}")
            lines.append(f"| {row} | {what} | `{output}` | " + " | ".join(cells) + " |")
        lines.append("")
        for dataset in datasets:
            fits = report["results"][dataset]
            names = list(next(iter(fits.values())))
            lines += [f"#### {dataset}: final PSNR per image", "", "| row | " + " | ".join(names) + " |",
                      "|---|" + "---|" * len(names)]
            for row, fit, output, _ in rows:
                if fit in fits:
                    cells = [f"{quality.last_scores(fits[fit][n])[output]['psnr']:.2f}" if n in fits[fit] else "-" for n in names]
                    lines.append(f"| {row} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _mean_scores(images: dict, output: str) -> tuple[float, float]:
    scores = [quality.last_scores(result)[output] for result in images.values()]
    return float(np.mean([s["psnr"] for s in scores])), float(np.mean([s["ssim"] for s in scores]))


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
    drops = [max(c["denoise"]["psnr"] for c in r["checkpoints"].values()) - quality.last_scores(r)["denoise"]["psnr"] for r in images.values()]
    return {"denoise": _mean_scores(images, "denoise"), "linear": _mean_scores(images, "linear"), "drop": max(drops)}


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
    parser.add_argument("--acceleration", default=None, choices=ACCELERATIONS, help="as quality.py's (default auto)")
    parser.add_argument("--front-ends", action="store_true",
                        help="the front ends' settings on top of the fit (FRONT_END_ROWS) instead of the recipe's changes")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.front_ends:
        report = quality.merge(args.table) if args.table else run_front_ends(args.datasets, args.out, _extra(args))
        if not args.table:
            Path(f"{out}.json").write_text(json.dumps(report, indent=1))
        text = "# What the front ends add to the default fit\n\n" + front_end_summary(report)
    else:
        report = quality.merge(args.table) if args.table else run(args.datasets, args.out, _extra(args))
        text = f"# Ablation of the default mode\n\n{summary(report)}\n\nFinal denoise PSNR per image:\n\n{per_image(report)}"
    out.with_name(out.name + "_summary.md").write_text(text)
    print(text)
    return 0


def _extra(args: argparse.Namespace) -> list[str]:
    """quality.py options passed through from this script's."""
    extra = ["--device", args.device]
    for option, flag in {"threads": "--threads", "steps": "--steps", "images": "--images", "seed": "--seeds",
                         "acceleration": "--acceleration"}.items():
        if getattr(args, option) is not None:
            extra += [flag, str(getattr(args, option))]
    if args.names:
        extra += ["--names", *args.names]
    return extra




if __name__ == "__main__":
    sys.exit(main())
