"""Where a fitting step's time and memory go on CUDA: wall ms per step for each mode, eager and
graphed, with TF32 convolutions and in full float32; peak memory from the fit's start (a captured
graph's pool included); and a kernel table of the eager faithful step at 600x400.

    python benchmarks/cuda_step_profile.py --kernels kernels.txt

The ``acceleration`` presets map onto these rows: ``auto`` = graphed, TF32; ``exact`` = graphed,
float32; ``off`` = eager, float32 (without channels-last).
"""
from __future__ import annotations

import argparse
import gc
import time
from dataclasses import replace

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from zeroig_plugin import ZeroIG
from zeroig_plugin.acceleration import PRESETS

ROUTES = {"eager": replace(PRESETS["auto"], cuda_graph=False), "graphed": PRESETS["auto"]}


def timed(mode: str, route: str, tf32: bool, image: np.ndarray, steps: int) -> tuple[float, float, ZeroIG]:
    """ms per step (after 8 warm-up steps) and peak GiB allocated since the model was made."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = ZeroIG(mode=mode, device="cuda", acceleration=replace(ROUTES[route], tf32=tf32))
    model.fit(image, 8, loss_every=8)
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.fit(image, steps, loss_every=steps)
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / steps, torch.cuda.max_memory_allocated() / 2**30, model


def kernel_table(image: np.ndarray, steps: int = 5) -> tuple[str, int, float]:
    """The profiler's table for ``steps`` eager faithful steps, kernels per step and GPU-busy ms per step."""
    model = ZeroIG(mode="faithful", device="cuda", acceleration=ROUTES["eager"])
    model.fit(image, 5)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
        model.fit(image, steps, loss_every=steps)
        torch.cuda.synchronize()
    kernels = [event for event in trace.events() if event.device_type.name == "CUDA"]
    table = trace.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=50)
    return table, round(len(kernels) / steps), sum(event.device_time for event in kernels) / steps / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="600x400,1920x1080")
    parser.add_argument("--modes", default="faithful,improved,crop")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--kernels", help="write the eager faithful step's kernel table (600x400) here")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for size in args.sizes.split(","):
        width, height = (int(part) for part in size.split("x"))
        image = np.random.default_rng(0).uniform(0, 0.2, (height, width, 3)).astype(np.float32)
        for mode in args.modes.split(","):
            for route in ROUTES:
                for tf32 in (True, False):
                    ms, peak, _ = timed(mode, route, tf32, image, args.steps)
                    print(f"{size} {mode:9s} {route:7s} {'tf32' if tf32 else 'fp32'}: {ms:7.2f} ms/step, peak {peak:.2f} GiB", flush=True)
        if args.kernels and size == "600x400":
            table, per_step, busy = kernel_table(image)
            with open(args.kernels, "w") as out:
                out.write(table)
            print(f"eager faithful step at 600x400: {per_step} kernels, GPU busy {busy:.2f} ms")


if __name__ == "__main__":
    main()
