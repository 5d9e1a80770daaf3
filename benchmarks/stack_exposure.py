"""A stack's planes brought up by one gain or each by its own, and later planes with and without the gain.

napari and the image command fit a stack plane by plane, each later plane warm-started from the
previous plane's fit for a few steps (napari: 300, then 50). With the exposure gain each plane's
``denoise`` is its ``linear`` brought up by a gain; by its own gain, every plane reaches the same
mean level, which erases what differs between them (depth, bleaching); by one gain for the stack
(``zeroig_plugin.StackExposure``: the smallest of the planes' own), the planes keep their levels.

The stacks are built from the microscopy pairs, real noise included: plane ``k`` is a
``--crop`` square of the low image moved ``--shift`` pixels down and right per plane (the
content changes from plane to plane, as a drifting time series or a z-stack's does), its values
above the camera's offset times ``--light[k]``; its reference is the same square of the high
image times the same factor. The offset is the low image's against its reference (the intercept
of the low image regressed on the high one, at least 0): GigaDB's low image sits on 0.20 where
its reference's background is 0, the W2S pairs' on about 0.05, FMD's on none. Scaling the noisy values scales
their noise too, so a dimmer plane is not noisier here: this measures the levels and the
warm-started later planes, not a dimmer plane's extra noise.

Each stack is fitted twice with napari's settings for ``denoise`` (brightness from the
highlights, checkpoints by the pair score, ``linear`` averaged with TV): with the exposure gain,
read out each plane by its own gain (``own gain``) and by the stack's (``stack gain``), and
without the gain (``no gain``, the fit's exposure rule). Scores: ``denoise`` intensity-matched
plane by plane (restoration) and over the whole stack by one gain and offset (levels too), and
the planes' mean levels relative to the brightest, against the references'.

    python benchmarks/stack_exposure.py --crop 128 --threads 1 --out benchmarks/results/stack_exposure_microscopy128
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import REPO, SHARED, pairs, score  # noqa: E402

READOUTS = ("own gain", "stack gain", "no gain")
DEFAULT_LIGHT = (0.4, 0.7, 1.0, 0.7, 0.4)  # a z-stack through the brightest plane: the first is dim


def camera_offset(low: np.ndarray, high: np.ndarray) -> float:
    """The intercept of ``low`` regressed on ``high`` (least squares), at least 0: the level the low
    image keeps where its reference is dark, which does not scale with the light."""
    slope, intercept = np.polyfit(high.reshape(-1).astype(np.float64), low.reshape(-1).astype(np.float64), 1)
    return max(0.0, float(intercept))


def stack_planes(
    low: np.ndarray, high: np.ndarray, crop: int, shift: int, light: tuple[float, ...], offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(planes, references)``, ``(len(light), crop, crop)`` each: the module docstring's stack,
    the low image's values above ``offset`` scaled."""
    span = crop + shift * (len(light) - 1)
    if min(low.shape[:2]) < span:
        raise ValueError(f"a {low.shape[0]}x{low.shape[1]} pair is too small for {len(light)} planes of {crop} moved {shift}")
    top, left = (low.shape[0] - span) // 2, (low.shape[1] - span) // 2
    squares = [(slice(top + k * shift, top + k * shift + crop), slice(left + k * shift, left + k * shift + crop)) for k in range(len(light))]
    planes = np.stack([offset + (low[square] - offset) * factor for square, factor in zip(squares, light)])
    planes = planes.clip(0, 1).astype(np.float32)
    references = np.stack([high[square] * factor for square, factor in zip(squares, light)]).astype(np.float32)
    return planes, references


def fit_stack(planes: np.ndarray, exposure_gain: bool, steps: int, later_steps: int, seed: int) -> dict[str, list[np.ndarray]]:
    """``denoise`` of every plane, fitted as napari fits a stack (one model, warm-started), read
    out by each plane's own gain and by the stack's (with the gain), or by the fit alone."""
    from napari_zeroig.processing import RunSettings
    from zeroig_plugin import StackExposure

    model = RunSettings(device="cpu", output="denoise", exposure_gain=exposure_gain).model_factory()()
    model.reset(seed)
    exposure = StackExposure(model) if exposure_gain else None
    own = []
    for order, plane in enumerate(planes):
        model.fit(plane, steps if order == 0 else later_steps)
        outputs = model.infer(plane)
        own.append(outputs.denoise)
        if exposure is not None:
            exposure.add(order, plane, outputs.linear)
    if exposure is None:
        return {"no gain": own}
    return {"own gain": own, "stack gain": [denoise for _, _, denoise in exposure.brought_up()], "gain": exposure.gain}


def scored(outputs: list[np.ndarray], references: np.ndarray) -> dict:
    """Per-plane and whole-stack intensity-matched scores, and the planes' relative levels."""
    stacked = np.stack(outputs)
    levels, reference_levels = stacked.reshape(len(outputs), -1).mean(1), references.reshape(len(outputs), -1).mean(1)
    relative, reference_relative = levels / levels.max(), reference_levels / reference_levels.max()
    whole = score(stacked.reshape(-1, stacked.shape[-1]), references.reshape(-1, references.shape[-1]), True)
    return {
        "planes": [score(output, reference, True) for output, reference in zip(outputs, references)],
        "stack": whole,
        "relative_levels": relative.tolist(),
        "reference_relative_levels": reference_relative.tolist(),
        "level_error": float(np.abs(relative - reference_relative).max()),
    }


def table(report: dict) -> str:
    """Markdown: per readout, per-plane PSNR / SSIM (mean over pairs), the whole stack's, the level error."""
    results = report["results"]
    names = list(results)
    planes = len(report["settings"]["light"])
    lines = ["| readout | " + " | ".join(f"plane {k + 1}" for k in range(planes)) + " | planes' mean | whole stack | level error (max) |",
             "|---|" + "---|" * (planes + 3)]
    for readout in READOUTS:
        rows = [results[name][readout] for name in names]
        per_plane = [np.mean([row["planes"][k]["psnr"] for row in rows]) for k in range(planes)]
        per_plane_ssim = [np.mean([row["planes"][k]["ssim"] for row in rows]) for k in range(planes)]
        cells = [f"{p:.2f} / {s:.3f}" for p, s in zip(per_plane, per_plane_ssim)]
        stack = [np.mean([row["stack"][key] for row in rows]) for key in ("psnr", "ssim")]
        errors = [row["level_error"] for row in rows]
        lines.append(f"| {readout} | " + " | ".join(cells) + f" | {np.mean(per_plane):.2f} / {np.mean(per_plane_ssim):.3f} | "
                     f"{stack[0]:.2f} / {stack[1]:.3f} | {np.mean(errors):.3f} ({max(errors):.3f}) |")
    lines += ["", "Whole-stack PSNR per pair: " + "; ".join(
        f"{name} " + " / ".join(f"{results[name][readout]['stack']['psnr']:.2f}" for readout in READOUTS) for name in names)
        + f" ({' / '.join(READOUTS)})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=128, help="each plane's square side")
    parser.add_argument("--shift", type=int, default=16, help="pixels each plane moves down and right")
    parser.add_argument("--light", nargs="+", type=float, default=list(DEFAULT_LIGHT), help="each plane's light, as a factor")
    parser.add_argument("--steps", type=int, default=300, help="steps on the first plane (napari's default)")
    parser.add_argument("--later-steps", type=int, default=50, help="steps on each later plane (napari's default)")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "stack_exposure"), help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not (SHARED / "data" / "microscopy-dev").is_dir():
        print(f"microscopy-dev not found in {SHARED / 'data'} (set ZEROIG_SHARED to the shared/ folder)")
        return 0
    light = tuple(args.light)
    report = {"settings": {"device": f"CPU ({platform.processor() or platform.machine()})", "torch": torch.__version__,
                           "torch_threads": torch.get_num_threads(), "crop": args.crop, "shift": args.shift, "light": light,
                           "steps": args.steps, "later_steps": args.later_steps, "seed": args.seed}, "results": {}}
    for name, low, high in pairs("microscopy-dev", None, args.names, lambda array: array):
        offset = camera_offset(low, high)
        planes, references = stack_planes(low, high, args.crop, args.shift, light, offset)
        start = time.perf_counter()
        outputs = {**fit_stack(planes, True, args.steps, args.later_steps, args.seed),
                   **fit_stack(planes, False, args.steps, args.later_steps, args.seed)}
        report["results"][name] = {readout: scored(outputs[readout], references) for readout in READOUTS}
        report["results"][name].update(stack_gain=outputs["gain"], camera_offset=offset)
        print(f"{name}: whole stack " + " / ".join(f"{report['results'][name][r]['stack']['psnr']:.2f}" for r in READOUTS)
              + f" dB, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1))
    Path(f"{args.out}.md").write_text(f"# One gain per stack\n\n- {json.dumps(report['settings'])}\n\n{table(report)}\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
