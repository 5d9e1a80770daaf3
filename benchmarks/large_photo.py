"""A photo too large for a whole-image step, fitted and inferred end to end: does it finish within the
device's memory, how large are the crops, how long does a step take, what is the peak?

The default engine decides everything (``fit_crop="auto"``, automatic tiles, checkpoints scored
on what fits beside the captured CUDA graph, the graph handed back before an inference pass that
would not fit beside it), so this is the check that those estimates hold on a real device: a
12-megapixel photo on an 80 GB GPU runs its step on two crops of about 2272x2272, whose graph
keeps most of the memory between steps; a 3840x2160 frame is fitted whole, its graph holding about
51 GiB while checkpoints are scored from step 250. The photo is scikit-image's 'astronaut'
upscaled and darkened by the demo's sensor model. Writes ``<out>.json``.

    python benchmarks/large_photo.py --device cuda --size 4032x3024 --steps 300
    python benchmarks/large_photo.py --device cuda --size 3840x2160 --steps 300
    python benchmarks/large_photo.py --device cpu --size 1200x900 --steps 2 --memory-gib 1   # dry run
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic_photo(width: int, height: int) -> np.ndarray:
    """scikit-image's 'astronaut' resized to ``width x height`` and darkened to the demo's 10 %."""
    import torch
    import torch.nn.functional as F
    from skimage import data

    from zeroig_plugin.demo import simulate_low_light

    photo = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)[None]
    resized = F.interpolate(photo, size=(height, width), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    return simulate_low_light(resized.clamp(0, 1).numpy(), exposure=0.1, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4032x3024", help="WxH of the photo")
    parser.add_argument("--steps", type=int, default=300, help="fitting steps (checkpoints are scored from step 250)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ensemble", type=int, default=1, help="inference views")
    parser.add_argument("--memory-gib", type=float, default=None, help="pretend the device has this much memory (a dry run)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "large_photo"))
    args = parser.parse_args(argv)

    import torch

    from zeroig_plugin import ZeroIG, describe_device, sizing

    if args.memory_gib is not None:
        sizing.device_memory = lambda device: int(args.memory_gib * 2**30)
    width, height = (int(side) for side in args.size.lower().split("x"))
    image = synthetic_photo(width, height)
    model = ZeroIG(device=args.device)
    cuda = model.device.type == "cuda"
    start = time.perf_counter()
    report = model.fit(image, args.steps)
    if cuda:
        torch.cuda.synchronize()
    fitted = time.perf_counter()
    fit_peak = torch.cuda.max_memory_reserved() if cuda else None
    outputs = model.infer(image, ensemble=args.ensemble)
    finished = time.perf_counter()
    result = {
        "device": describe_device(args.device), "torch": torch.__version__, "python": platform.python_version(),
        "size": [width, height], "steps": report.steps_done, "crop_size": report.crop_size,
        "assumed_memory_gib": args.memory_gib, "checkpoint_selection": model.checkpoint_selection,
        "seconds_per_step": (fitted - start) / max(1, report.steps_done), "inference_seconds": finished - fitted,
        "ensemble": args.ensemble, "finite": bool(np.isfinite(outputs.denoise).all()),
        "output_mean": float(outputs.denoise.mean()),
        "peak_gib": (torch.cuda.max_memory_reserved() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30,
        "fit_peak_gib": None if fit_peak is None else fit_peak / 2**30,
        "device_memory_gib": sizing.device_memory(model.device) / 2**30,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
