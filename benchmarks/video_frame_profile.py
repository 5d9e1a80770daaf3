"""Per-frame milliseconds of each part of ``WarmStartEnhancer.enhance`` (each part synchronised,
so the parts add up to a frame without overlap), at 480p and 1080p, the default settings.

    python benchmarks/video_frame_profile.py --device cuda
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from video.enhancer import WarmStartEnhancer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=25, help="frames per size; the first 5 are left out of the medians")
    args = parser.parse_args()
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for width, height in [(854, 480), (1920, 1080)]:
        base = np.random.default_rng(0).uniform(0, 50, (height, width, 3)).astype(np.uint8)
        enhancer = WarmStartEnhancer(device=args.device)
        times: dict[str, list[float]] = {}

        def part(name, run):
            synchronize()
            start = time.perf_counter()
            result = run()
            synchronize()
            times.setdefault(name, []).append(time.perf_counter() - start)
            return result

        for index in range(args.frames):
            array = np.roll(base, index, axis=1)  # a panning frame
            frame = part("upload", lambda: enhancer._upload(array))
            part("scene cut", lambda: enhancer._cuts.update(frame))
            fresh = enhancer.frames_done == 0
            view = part("fit view", lambda: enhancer.fit_view(frame))
            part("fit", lambda: enhancer.model.fit(view, enhancer.settings.first_iters if fresh else enhancer.settings.iters_per_frame))
            model = part("weight average", lambda: enhancer._inference_model(restart=fresh))
            outputs = part("infer", lambda: model.infer_tensor(frame, statistics_from=view.permute(2, 0, 1).unsqueeze(0), ensemble=1))
            enhancer.frames_done += 1
            filtered = part("temporal filter", lambda: enhancer._temporal_filter(outputs.denoise, reset=fresh))
            part("download", lambda: filtered[0].permute(1, 2, 0).mul(255).clamp(0, 255).byte().cpu().numpy())
        medians = {name: 1e3 * float(np.median(values[5:])) for name, values in times.items()}
        print(f"{width}x{height}: " + ", ".join(f"{name} {ms:.1f}" for name, ms in medians.items())
              + f"; total {sum(medians.values()):.1f} ms/frame", flush=True)


if __name__ == "__main__":
    main()
