"""Temporal stability of warm-started fits vs independent per-frame fits, same total step budget,
each without and with the temporal filter on the output (``video.temporal``).

Runs on ``../shared/data/video-dev`` (override with ``--data``). For each clip and method it
reports warping error and luma flicker (``video.metrics``), PSNR/SSIM against the per-frame
ground truth where there is one (``surgical/high``), also over just the pixels that moved
(:func:`moved_psnr`), the fit+inference frames/s, and for the filtered rows how much of the
change the filter held back where the content moved (ghosting; see :func:`held_back`). It also prints the scene-cut statistic within clips and across them (to
justify the default threshold); with ``--filter-timing`` the filter's own cost per frame at 480p
and 1080p; with ``--throughput`` the end-to-end frames/s of ``enhance_video`` at 480p (or ``--throughput-sizes``).

"Same budget": warm start spends ``first_iters + (frames - 1) * iters_per_frame`` steps; the
independent fits share that total equally, each frame fitted from the seeded init.

"+ filter": the recorded unfiltered outputs run through :class:`video.temporal.TemporalFilter`,
restarted where the enhancer restarts (first frame, scene cuts; for independent fits, where the
default scene-cut detector would cut). For warm start this is exactly what ``WarmStartEnhancer``
with ``temporal_strength`` outputs (tests/test_video_temporal.py checks it), so the "warm + filter"
row is the default settings' output.

The default run is small (10 frames of the two 256x256 surgical clips, fit at 128 px, the
``denoise`` output): about 2.5 CPU-minutes (longer on a busy machine, where ``--threads 1`` helps).
``--frames``, ``--skip``, ``--clips fall|all`` (the 720x1280 fall clip, no ground truth; its motion
is in frames 25-37), ``--fit-size``, ``--first-iters``, ``--iters-per-frame``, ``--weight-smoothing``
and ``--temporal-strength`` make other runs; ``--save-crops DIR`` writes, per clip, the filtered
frame where most moved next to the unfiltered ones::

    python benchmarks/video_stability.py --threads 1 --filter-timing
    python benchmarks/video_stability.py --threads 1 --clips fall --skip 20 --frames 18 --save-crops crops
    python benchmarks/video_stability.py --device cuda --no-stability --throughput --throughput-frames 120 --throughput-sizes 854x480,1920x1080
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

from video.enhancer import DEFAULTS, WarmStartEnhancer, WarmStartSettings
from video.metrics import brightened_guide, farneback_flow, luma_flicker, warping_error
from video.pipeline import enhance_video
from video.scenecut import SceneCutDetector, frame_difference, luma_thumbnail
from video.source import decode_frames
from video.temporal import TemporalFilter
from zeroig_plugin import ContentBox, available_modes, describe_device, paste_content

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ZEROIG_SHARED", REPO.parent / "shared")) / "data" / "video-dev"
EVERY_FRAME_IS_A_CUT = -1.0  # a scene-cut threshold below any statistic: each frame is fitted from scratch
KEEP_BORDERS = {"mode": None, "on": True, "off": False}
MOVED_PX = 2.0  # held_back: input flow (px) above which a pixel counts as moved
CHANGED = 40 / 255  # held_back: and its unfiltered output changed by more than this (channel mean)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the video-dev folder")
    parser.add_argument("--clips", choices=["surgical", "fall", "all"], default="surgical",
                        help="fall: fall-lowlight.mp4 (720x1280, no ground truth); all: both")
    parser.add_argument("--frames", type=int, default=10, help="frames per clip")
    parser.add_argument("--skip", type=int, default=0, help="frames skipped at the start of each clip")
    parser.add_argument("--fit-size", type=int, default=128)
    parser.add_argument("--first-iters", type=int, default=100)
    parser.add_argument("--iters-per-frame", type=int, default=2)
    parser.add_argument("--weight-smoothing", type=float, default=0.9)
    parser.add_argument("--temporal-strength", type=float, default=DEFAULTS.temporal_strength,
                        help="of the '+ filter' rows (0: no filtered rows)")
    parser.add_argument("--methods", default="warm,independent", help="comma-separated: warm, independent")
    parser.add_argument("--output", choices=["enhance", "denoise"], default="denoise")
    parser.add_argument("--keep-borders", choices=sorted(KEEP_BORDERS), default="mode",
                        help="leave flat borders (letterbox bars) out of the fits: as the mode does, on or off")
    parser.add_argument("--border-tolerance", type=float, default=DEFAULTS.border_tolerance * 255,
                        help="the most a bar's values may differ, in 8-bit levels")
    parser.add_argument("--mode", choices=available_modes(), default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is faster on a busy shared CPU)")
    parser.add_argument("--filter-timing", action="store_true", help="also time the temporal filter alone at 480p and 1080p")
    parser.add_argument("--save-crops", type=Path, help="folder for a crop of each clip's most-moving filtered frame")
    parser.add_argument("--throughput", action="store_true", help="also time enhance_video end to end (see --throughput-sizes)")
    parser.add_argument("--throughput-frames", type=int, default=6, help="frames per throughput clip")
    parser.add_argument("--throughput-sizes", default="854x480", help="WxH list, e.g. 854x480,1920x1080")
    parser.add_argument("--no-stability", action="store_true", help="skip the stability table and scene-cut statistics")
    return parser.parse_args()


def clips(data: Path, which: str) -> list[tuple[str, Path, Path | None]]:
    """``(name, low-light clip, ground-truth clip or None)`` for the chosen clips."""
    found = []
    if which in ("surgical", "all"):
        found += [
            (f"surgical/{low.stem}", low, data / "surgical" / "high" / low.name)
            for low in sorted((data / "surgical" / "low").glob("*.mp4"))
        ]
    if which in ("fall", "all") and (data / "fall-lowlight.mp4").is_file():
        found.append(("fall-lowlight", data / "fall-lowlight.mp4", None))
    return found


def read(path: Path, frames: int | None, skip: int = 0) -> list[np.ndarray]:
    return [frame.rgb for frame in decode_frames(path, None if frames is None else skip + frames)][skip:]


def quantize(frame: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` -> uint8, rounded as ``WarmStartEnhancer.enhance`` does."""
    return np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)


def run_method(
    frames: list[np.ndarray], settings: WarmStartSettings, args
) -> tuple[list[np.ndarray], list[bool], list[ContentBox | None], float, int]:
    """Enhance ``frames`` in order (float in, so float out: the filter rows start from the
    unquantised output); returns float outputs, where the enhancer restarted, the box within each
    frame's borders it enhanced (``None``: no borders), seconds, total fitting steps."""
    enhancer = WarmStartEnhancer(settings, mode=args.mode, device=args.device)
    outputs, restarts, boxes, steps = [], [], [], 0
    started = time.perf_counter()
    for frame in frames:
        outputs.append(enhancer.enhance(frame.astype(np.float32) / 255))
        restarts.append(enhancer.last_report.index == 0 or enhancer.last_report.scene_cut)
        boxes.append(enhancer.last_report.picture_box)
        steps += enhancer.last_report.steps
    return outputs, restarts, boxes, time.perf_counter() - started, steps


def default_cuts(frames: list[np.ndarray]) -> list[bool]:
    """Where the default scene-cut detector restarts (the first frame always)."""
    detector = SceneCutDetector(DEFAULTS.scene_cut_threshold)
    return [index == 0 or detector.update(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255)[0]
            for index, frame in enumerate(frames)]


def temporal_filter(
    outputs: list[np.ndarray], restarts: list[bool], boxes: list[ContentBox | None], strength: float, device: str
) -> tuple[list[np.ndarray], float]:
    """The filter over recorded float outputs, each frame's borders (outside its box) put back
    after it as the enhancer does; returns filtered float frames and seconds."""
    stage = TemporalFilter(strength)
    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    filtered, seconds = [], 0.0
    for output, restart, box in zip(outputs, restarts, boxes):
        frame = torch.from_numpy(output).permute(2, 0, 1)[None].to(target)
        started = time.perf_counter()
        result = stage(frame, reset=restart)
        if box is not None:
            result = paste_content(frame, box, box.crop(result))
        if target.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - started
        filtered.append(result[0].permute(1, 2, 0).cpu().numpy())
    return filtered, seconds


def moved_mask(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: pixels whose flow between two input frames (Farneback on the brightened
    guide of ``video.metrics``) exceeds ``MOVED_PX``."""
    gain = min(50.0, 0.4 / max(float(previous.mean()) / 255, 1e-4))
    flow = farneback_flow(brightened_guide(current, gain), brightened_guide(previous, gain))
    return np.hypot(flow[..., 0], flow[..., 1]) > MOVED_PX


def moved_masks(inputs: list[np.ndarray]) -> list[np.ndarray | None]:
    """``moved_mask`` of each frame against the one before (``None`` for the first)."""
    return [None] + [moved_mask(inputs[t - 1], inputs[t]) for t in range(1, len(inputs))]


def held_back(filtered: list[np.ndarray], unfiltered: list[np.ndarray], moved: list[np.ndarray | None]) -> tuple[float, float, int]:
    """Ghosting: where the content moved (``moved``) and the unfiltered output changed by more
    than ``CHANGED``, the share of that change the filter did not follow (the filtered frame's
    difference from the unfiltered one projected on the change; 0: none held back, 1: the
    previous frame kept). Noise the filter removes there counts too, so on noisy outputs this is
    an upper bound; ``moved_psnr`` against ground truth tells the two apart. Returns the mean and
    the max over frames with at least 50 such pixels, and the frame where the most moved (or -1)."""
    shares, most, best = [], 0, -1
    for t in range(1, len(filtered)):
        change = unfiltered[t - 1] - unfiltered[t]
        selected = moved[t] & (np.abs(change).mean(axis=-1) > CHANGED)
        if selected.sum() < 50:
            continue
        if selected.sum() > most:
            most, best = int(selected.sum()), t
        offset = (filtered[t] - unfiltered[t])[selected]
        shares.append(float((offset * change[selected]).sum() / np.square(change[selected]).sum()))
    return (float(np.mean(shares)), float(np.max(shares)), best) if shares else (float("nan"), float("nan"), -1)


def moved_psnr(outputs: list[np.ndarray], truth: list[np.ndarray] | None, moved: list[np.ndarray | None]) -> float:
    """PSNR (uint8 frames) against the ground truth over the pixels that moved (``moved``), all
    frames after the first pooled: a filter that ghosts loses here."""
    if truth is None:
        return float("nan")
    errors = [np.square(out.astype(np.float64) - gt)[mask].sum() for out, gt, mask in zip(outputs[1:], truth[1:], moved[1:])]
    count = sum(int(mask.sum()) * 3 for mask in moved[1:])
    return float(10 * np.log10(255**2 * count / max(sum(errors), 1e-12))) if count else float("nan")


def save_crop(folder: Path, name: str, t: int, unfiltered: list[np.ndarray], filtered: list[np.ndarray], inputs: list[np.ndarray]) -> Path:
    """Previous and current unfiltered, current filtered, |filtered - unfiltered| x 4, cropped to
    where the content moved (with a margin)."""
    ys, xs = np.nonzero(moved_mask(inputs[t - 1], inputs[t]))
    height, width = inputs[t].shape[:2]
    top, bottom = max(0, ys.min() - 32), min(height, ys.max() + 33)
    left, right = max(0, xs.min() - 32), min(width, xs.max() + 33)
    tiles = [quantize(unfiltered[t - 1]), quantize(unfiltered[t]), quantize(filtered[t]),
             quantize(np.clip(np.abs(filtered[t] - unfiltered[t]) * 4, 0, 1))]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace('/', '-')}-frame{t}.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack([tile[top:bottom, left:right] for tile in tiles]), cv2.COLOR_RGB2BGR))
    return path


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
          f"{args.frames} frames per clip from frame {args.skip}; warm start = {args.first_iters} steps then "
          f"{args.iters_per_frame}/frame, weight smoothing {args.weight_smoothing}; temporal filter {args.temporal_strength}; "
          f"keep borders: {args.keep_borders} (tolerance {args.border_tolerance:g} levels)")
    print()
    print("| clip | method | steps | warping error (x1e3) | luma flicker (x1e3) | mean luma | PSNR dB | SSIM | "
          "PSNR where moved | held back where moved, mean / max | frames/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, low, high in clips(args.data, args.clips):
        frames = read(low, args.frames, args.skip)
        truth = read(high, len(frames), args.skip) if high is not None and high.is_file() else None
        budget = args.first_iters + (len(frames) - 1) * args.iters_per_frame
        per_frame = max(1, round(budget / len(frames)))
        methods = {
            "warm": WarmStartSettings(
                args.first_iters, args.iters_per_frame, args.fit_size,
                weight_smoothing=args.weight_smoothing, output=args.output, temporal_strength=0.0,
                keep_borders=KEEP_BORDERS[args.keep_borders], border_tolerance=args.border_tolerance / 255,
            ),
            "independent": WarmStartSettings(
                per_frame, 0, args.fit_size, EVERY_FRAME_IS_A_CUT, output=args.output, temporal_strength=0.0,
                keep_borders=KEEP_BORDERS[args.keep_borders], border_tolerance=args.border_tolerance / 255,
            ),
        }
        methods = {name: methods[name] for name in args.methods.split(",")}
        if truth is not None:
            print(f"| {name} | ground truth | - | {warping_error(truth, frames) * 1e3:.3f} | {luma_flicker(truth) * 1e3:.2f} | "
                  f"{mean_luma(truth):.3f} | - | - | - | - | - |")
        moved = moved_masks(frames)
        errors = {}
        for method, settings in methods.items():
            outputs, restarts, boxes, seconds, steps = run_method(frames, settings, args)
            rows = [(method, outputs, seconds, None)]
            if args.temporal_strength:
                restarts = restarts if method == "warm" else default_cuts(frames)
                filtered, filter_seconds = temporal_filter(outputs, restarts, boxes, args.temporal_strength, args.device)
                rows.append((f"{method} + filter", filtered, seconds + filter_seconds, held_back(filtered, outputs, moved)))
            for label, result, total_seconds, ghost in rows:
                result = [quantize(frame) for frame in result]
                errors[label] = warping_error(result, frames)
                psnr, ssim = quality(result, truth)
                ghosting = "-" if ghost is None else f"{ghost[0] * 100:.1f}% / {ghost[1] * 100:.1f}%"
                print(
                    f"| {name} | {label} | {steps} | {errors[label] * 1e3:.3f} | {luma_flicker(result) * 1e3:.2f} | "
                    f"{mean_luma(result):.3f} | {psnr:.2f} | {ssim:.4f} | {moved_psnr(result, truth, moved):.2f} | "
                    f"{ghosting} | {len(frames) / total_seconds:.2f} |",
                    flush=True,
                )
            if args.save_crops and len(rows) > 1 and rows[1][3][2] > 0:
                path = save_crop(args.save_crops, f"{name}-{method}", rows[1][3][2], outputs, rows[1][1], frames)
                print(f"|  | (crop of the frame where most moved: {path}) |", flush=True)
        ratios = [f"{label} / independent {errors[label] / errors['independent']:.3f}x"
                  for label in ("warm", "warm + filter", "independent + filter") if label in errors and "independent" in errors]
        if "warm + filter" in errors and "independent + filter" in errors:
            ratios.append(f"warm + filter / independent + filter {errors['warm + filter'] / errors['independent + filter']:.3f}x")
        if ratios:
            print(f"|  | warping error ratios: {'; '.join(ratios)} |", flush=True)


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


def filter_timing(args) -> None:
    """Milliseconds per frame of the temporal filter alone (default settings) at 854x480 and
    1920x1080, on noisy frames of a moving texture; median of 8 after 2 warm-up frames."""
    target = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)
    print()
    for width, height in ((854, 480), (1920, 1080)):
        generator = torch.Generator().manual_seed(0)
        texture = torch.nn.functional.interpolate(torch.rand(1, 3, height // 16, width // 16 + 2, generator=generator),
                                                  size=(height, width + 32), mode="bilinear", align_corners=False)
        results = {}
        for compensation in (True, False):
            stage, times = TemporalFilter(args.temporal_strength or DEFAULTS.temporal_strength, motion_compensation=compensation), []
            for t in range(10):
                frame = (texture[..., t : t + width] + 0.05 * torch.randn(1, 3, height, width, generator=generator)).clamp(0, 1).to(target)
                if target.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                stage(frame, reset=t == 0)
                if target.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
            results[compensation] = float(np.median(times[2:])) * 1e3
        print(f"temporal filter {width}x{height}, {describe_device(args.device)}, {torch.get_num_threads()} thread(s): "
              f"{results[True]:.1f} ms/frame ({results[False]:.1f} without motion compensation)")


def throughput(args) -> None:
    """End-to-end frames/s of enhance_video with the default settings, at each ``--throughput-sizes``.

    The clip is the fall clip's central band at the size's aspect, resized, played forwards then
    backwards as often as ``--throughput-frames`` needs (no scene cut at the turn), encoded at
    CRF 12 first so decoding it is part of the run.
    """
    fall = args.data / "fall-lowlight.mp4"
    if not fall.is_file():
        print("throughput: fall-lowlight.mp4 not found; skipped")
        return
    source = read(fall, None)
    there_and_back = source + source[-2:0:-1]
    frames = [there_and_back[index % len(there_and_back)] for index in range(args.throughput_frames)]
    for size in args.throughput_sizes.split(","):
        width, height = (int(part) for part in size.lower().split("x"))
        band = round(frames[0].shape[1] * height / width)
        top = (frames[0].shape[0] - band) // 2
        with tempfile.TemporaryDirectory() as folder:
            clip = Path(folder) / "clip.mp4"
            write_clip(clip, [cv2.resize(frame[top : top + band], (width, height), interpolation=cv2.INTER_AREA)
                              for frame in frames])
            enhancer = WarmStartEnhancer(WarmStartSettings(output=args.output), mode=args.mode, device=args.device)
            stamps = []
            result = enhance_video(clip, Path(folder) / "out.mp4", enhancer, on_frame=lambda *_: stamps.append(time.perf_counter()))
        steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
        print(f"throughput {width}x{height}, defaults, {describe_device(args.device)}: {result.frames_done} frames in "
              f"{result.seconds:.1f} s end to end; {steady:.1f} frames/s after the first frame")


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
    if not args.no_stability:
        stability_table(args)
        scene_cut_statistics(args)
    if args.filter_timing:
        filter_timing(args)
    if args.throughput:
        throughput(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
