"""Framed pictures: do letterbox or pillarbox bars change the result inside them?

Each LOL dev pair (resized to ``--size`` on its long side) is framed with black bars the way a
video frames a picture of another shape: ``pillarbox``, in a 16:9 frame of its height (a 3:2
photo in a widescreen frame); ``portrait``, in a 9:16 frame of its width (a landscape scene in a
phone's portrait video, as the fall clip in ``video-dev``). The default mode is fitted to each
framed image with ``keep_borders`` off (the published way: the bars are fitted and enhanced as
picture) and to the unframed image; with ``keep_borders`` on, the framed image's result inside
the bars is the unframed image's, exactly (``tests/test_borders.py``), so the unframed fit stands
for it. Scored inside the bars against the reference (``denoise``): PSNR / SSIM, brightness and
colour cast (8-bit levels, as ``quality.py``), and the bars' mean level in the output. Writes
``<out>.json`` and ``<out>.md``.

    python benchmarks/borders.py --size 96 --steps 1000 --threads 1
    python benchmarks/borders.py --names 1 22 --out results/borders_part1   # split across processes
    python benchmarks/borders.py --merge results/borders_part1.json results/borders_part2.json --out results/borders
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from quality import REPO, pairs, prepare, score

FRAMINGS = {"pillarbox": (16, 9), "portrait": (9, 16)}  # frame width : height


def frame(picture: np.ndarray, framing: str) -> tuple[np.ndarray, tuple[slice, slice]]:
    """``picture`` centred in black bars to the framing's aspect; the framed image and where the
    picture is in it."""
    height, width = picture.shape[:2]
    across, down = FRAMINGS[framing]
    if across * height > down * width:  # wider frame: bars left and right
        frame_height, frame_width = height, round(height * across / down)
    else:
        frame_height, frame_width = round(width * down / across), width
    top, left = (frame_height - height) // 2, (frame_width - width) // 2
    framed = np.zeros((frame_height, frame_width, *picture.shape[2:]), picture.dtype)
    inside = (slice(top, top + height), slice(left, left + width))
    framed[inside] = picture
    return framed, inside


def fit_and_score(low: np.ndarray, high: np.ndarray, inside, keep_borders: bool, steps: int, seed: int) -> dict:
    from zeroig_plugin import ZeroIG

    model = ZeroIG(device="cpu", seed=seed, keep_borders=keep_borders)
    started = time.perf_counter()
    model.fit(low, steps)
    denoise = model.infer(low).denoise
    outside = np.ones(denoise.shape[:2], bool)
    outside[inside] = False
    result = score(denoise[inside], high, match=False)
    result["bars"] = float(denoise[outside].mean() * 255) if outside.any() else None
    result["reference_brightness"] = float(high.mean() * 255)
    result["seconds"] = time.perf_counter() - started
    return result


def run(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    resize = lambda image: prepare(image, None, args.size, None)  # noqa: E731
    results = {}
    for name, low, high in pairs("lol15-dev", None, args.names, resize):
        whole = (slice(None), slice(None))
        rows = {"unframed (= framed, borders kept)": fit_and_score(low, high, whole, True, args.steps, args.seed)}
        for framing in FRAMINGS:
            framed, inside = frame(low, framing)
            rows[f"{framing}, borders fitted (published way)"] = fit_and_score(framed, high, inside, False, args.steps, args.seed)
        results[name] = rows
        for label, row in rows.items():
            print(f"{name} {label}: {row['psnr']:.2f} dB / {row['ssim']:.3f}, brightness {row['brightness']:.0f}, "
                  f"cast {row['cast']:.1f}, bars {row['bars']}", file=sys.stderr, flush=True)
    return {
        "settings": {"size": args.size, "steps": args.steps, "seed": args.seed, "threads": args.threads,
                     "torch": torch.__version__, "python": platform.python_version(), "processor": platform.processor()},
        "results": results,
    }


def table(report: dict) -> str:
    settings = report["settings"]
    lines = [
        f"Framed LOL dev pairs, {settings['size']} px, {settings['steps']} steps, seed {settings['seed']}, default mode, CPU "
        f"(torch {settings['torch']}); `denoise` inside the bars against the reference",
        "",
        "| image | fit | PSNR dB | SSIM | brightness (8-bit) / ref | colour cast (8-bit) | bars' mean level (8-bit) |",
        "|---|---|---|---|---|---|---|",
    ]
    means: dict[str, list[dict]] = {}
    for name, rows in report["results"].items():
        for label, row in rows.items():
            means.setdefault(label, []).append(row)
            bars = "-" if row["bars"] is None else f"{row['bars']:.1f}"
            lines.append(f"| {name} | {label} | {row['psnr']:.2f} | {row['ssim']:.3f} | {row['brightness']:.0f} / "
                         f"{row['reference_brightness']:.0f} | {row['cast']:.1f} | {bars} |")
    lines += ["", "| fit | mean PSNR dB | mean SSIM | mean colour cast |", "|---|---|---|---|"]
    for label, rows in means.items():
        lines.append(f"| {label} | {np.mean([r['psnr'] for r in rows]):.2f} | {np.mean([r['ssim'] for r in rows]):.3f} | "
                     f"{np.mean([r['cast'] for r in rows]):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96, help="long side the pairs are resized to")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--merge", nargs="+", default=None, help="merge these JSON results into one table")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "borders"))
    args = parser.parse_args(argv)
    if args.merge:
        parts = [json.loads(open(path).read()) for path in args.merge]
        report = {"settings": parts[0]["settings"], "results": {k: v for part in parts for k, v in part["results"].items()}}
    else:
        report = run(args)
    with open(f"{args.out}.json", "w") as handle:
        json.dump(report, handle, indent=1)
    with open(f"{args.out}.md", "w") as handle:
        handle.write(table(report))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
