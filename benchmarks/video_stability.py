"""Temporal stability of warm-started fits vs independent per-frame fits, same total step budget.

Runs on ``../shared/data/video-dev`` (override with ``--data``). For each clip and method it
reports warping error and luma flicker (``video.metrics``), PSNR/SSIM against the per-frame
ground truth where there is one (``surgical/high``), and the fit+inference frames/s. It also
prints the scene-cut statistic within clips and across them (to justify the default threshold),
and with ``--throughput`` the end-to-end frames/s of ``enhance_video`` on a 480p clip.

"Same budget": warm start spends ``first_iters + (frames - 1) * iters_per_frame`` steps; the
independent fits share that total equally, each frame fitted from the seeded init.

The default run is small (10 frames of the two 256x256 surgical clips, fit at 128 px, the
``denoise`` output): about 2.5 CPU-minutes (longer on a busy machine, where ``--threads 1`` helps).
``--frames``, ``--clips all`` (adds the 720x1280 fall clip), ``--fit-size``, ``--first-iters``,
``--iters-per-frame`` and ``--weight-smoothing`` make other runs::

    python benchmarks/video_stability.py --threads 1
    python benchmarks/video_stability.py --frames 60 --clips all --device cuda --throughput
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from video.enhancer import WarmStartEnhancer, WarmStartSettings
from video.metrics import luma_flicker, warping_error
from video.pipeline import enhance_video
from video.scenecut import frame_difference, luma_thumbnail
from video.source import decode_frames
from zeroig_plugin import available_modes, describe_device

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ZEROIG_SHARED", REPO.parent / "shared")) / "data" / "video-dev"
EVERY_FRAME_IS_A_CUT = -1.0  # a scene-cut threshold below any statistic: each frame is fitted from scratch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the video-dev folder")
    parser.add_argument("--clips", choices=["surgical", "all"], default="surgical", help="all adds fall-lowlight.mp4 (720x1280)")
    parser.add_argument("--frames", type=int, default=10, help="frames per clip")
    parser.add_argument("--fit-size", type=int, default=128)
    parser.add_argument("--first-iters", type=int, default=100)
    parser.add_argument("--iters-per-frame", type=int, default=2)
    parser.add_argument("--weight-smoothing", type=float, default=0.9)
    parser.add_argument("--methods", default="warm,independent", help="comma-separated: warm, independent")
    parser.add_argument("--output", choices=["enhance", "denoise"], default="denoise")
    parser.add_argument("--mode", choices=available_modes(), default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is faster on a busy shared CPU)")
    parser.add_argument("--throughput", action="store_true", help="also time enhance_video end to end on a 480p clip")
    parser.add_argument("--throughput-frames", type=int, default=6)
    return parser.parse_args()


def clips(data: Path, which: str) -> list[tuple[str, Path, Path | None]]:
    """``(name, low-light clip, ground-truth clip or None)`` for the chosen clips."""
    found = [
        (f"surgical/{low.stem}", low, data / "surgical" / "high" / low.name)
        for low in sorted((data / "surgical" / "low").glob("*.mp4"))
    ]
    if which == "all" and (data / "fall-lowlight.mp4").is_file():
        found.append(("fall-lowlight", data / "fall-lowlight.mp4", None))
    return found


def read(path: Path, frames: int | None) -> list[np.ndarray]:
    return [frame.rgb for frame in decode_frames(path, frames)]


def run_method(frames: list[np.ndarray], settings: WarmStartSettings, args) -> tuple[list[np.ndarray], float, int]:
    """Enhance ``frames`` in order; returns outputs, seconds, total fitting steps."""
    enhancer = WarmStartEnhancer(settings, mode=args.mode, device=args.device)
    outputs, steps = [], 0
    started = time.perf_counter()
    for frame in frames:
        outputs.append(enhancer.enhance(frame))
        steps += enhancer.last_report.steps
    return outputs, time.perf_counter() - started, steps


def mean_luma(frames: list[np.ndarray]) -> float:
    """Mean Rec.601 luma of uint8 frames, in [0, 1]."""
    return float(np.mean([frame @ np.array([0.299, 0.587, 0.114]) for frame in frames]) / 255)


def quality(outputs: list[np.ndarray], truth: list[np.ndarray] | None) -> tuple[float, float]:
    if truth is None:
        return float("nan"), float("nan")
    psnr = [peak_signal_noise_ratio(gt, out, data_range=255) for gt, out in zip(truth, outputs)]
    ssim = [structural_similarity(gt, out, channel_axis=-1, data_range=255) for gt, out in zip(truth, outputs)]
    return float(np.mean(psnr)), float(np.mean(ssim))


def stability_table(args) -> None:
    print(f"device: {describe_device(args.device)}; mode {args.mode}; output {args.output}; fit size {args.fit_size}; "
          f"{args.frames} frames per clip; warm start = {args.first_iters} steps then {args.iters_per_frame}/frame, "
          f"weight smoothing {args.weight_smoothing}")
    print()
    print("| clip | method | steps | warping error (x1e3) | luma flicker (x1e3) | mean luma | PSNR dB | SSIM | fit+infer frames/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, low, high in clips(args.data, args.clips):
        frames = read(low, args.frames)
        truth = read(high, len(frames)) if high is not None and high.is_file() else None
        budget = args.first_iters + (len(frames) - 1) * args.iters_per_frame
        per_frame = max(1, round(budget / len(frames)))
        methods = {
            "warm": WarmStartSettings(
                args.first_iters, args.iters_per_frame, args.fit_size,
                weight_smoothing=args.weight_smoothing, output=args.output,
            ),
            "independent": WarmStartSettings(per_frame, 0, args.fit_size, EVERY_FRAME_IS_A_CUT, output=args.output),
        }
        methods = {name: methods[name] for name in args.methods.split(",")}
        if truth is not None:
            print(f"| {name} | ground truth | - | {warping_error(truth, frames) * 1e3:.3f} | {luma_flicker(truth) * 1e3:.2f} | "
                  f"{mean_luma(truth):.3f} | - | - | - |")
        for method, settings in methods.items():
            outputs, seconds, steps = run_method(frames, settings, args)
            psnr, ssim = quality(outputs, truth)
            print(
                f"| {name} | {method} | {steps} | {warping_error(outputs, frames) * 1e3:.3f} | "
                f"{luma_flicker(outputs) * 1e3:.2f} | {mean_luma(outputs):.3f} | {psnr:.2f} | {ssim:.4f} | {len(frames) / seconds:.2f} |",
                flush=True,
            )


def scene_cut_statistics(args) -> None:
    """Within-clip (consecutive frames) vs across-clip statistics of :mod:`video.scenecut`."""
    thumbnails = {}
    for name, low, _ in clips(args.data, "all"):
        thumbnails[name] = [
            luma_thumbnail(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255) for frame in read(low, None)
        ]
    within = [frame_difference(a, b) for series in thumbnails.values() for a, b in zip(series, series[1:])]
    across = [
        frame_difference(first[-1], second[0])
        for name_a, first in thumbnails.items()
        for name_b, second in thumbnails.items()
        if name_a != name_b
    ]
    print()
    print(f"scene-cut statistic: within clips median {np.median(within):.3f}, 99th pct {np.percentile(within, 99):.3f}, "
          f"max {max(within):.3f} ({len(within)} pairs); across clips min {min(across):.3f} ({len(across)} pairs)")


def throughput(args) -> None:
    """End-to-end frames/s of enhance_video with the default settings on a 854x480 clip."""
    fall = args.data / "fall-lowlight.mp4"
    if not fall.is_file():
        print("throughput: fall-lowlight.mp4 not found; skipped")
        return
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "480p.mp4"
        write_clip(clip, [cv2.resize(frame[280:760], (854, 480), interpolation=cv2.INTER_AREA)
                          for frame in read(fall, args.throughput_frames)])
        enhancer = WarmStartEnhancer(WarmStartSettings(output=args.output), mode=args.mode, device=args.device)
        stamps = []
        result = enhance_video(clip, Path(folder) / "out.mp4", enhancer, on_frame=lambda *_: stamps.append(time.perf_counter()))
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    print()
    print(f"throughput 854x480, defaults, {describe_device(args.device)}: {result.frames_done} frames in {result.seconds:.1f} s "
          f"end to end; {steady:.3f} frames/s after the first frame")


def write_clip(path: Path, frames: list[np.ndarray], rate: int = 30) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "12"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.is_dir():
        print(f"video-dev data not found at {args.data} (use --data or set ZEROIG_SHARED)", file=sys.stderr)
        return 2
    stability_table(args)
    scene_cut_statistics(args)
    if args.throughput:
        throughput(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
