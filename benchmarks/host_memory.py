"""CPU fitting and inference with glibc's default malloc against :func:`keep_freed_memory`.

Each configuration runs in its own process: "system" with the engine's call to
``keep_freed_memory`` replaced by a no-op (glibc's defaults: large blocks mapped afresh, faulted
in page by page, unmapped when freed), "kept" as the engine runs. Per configuration: the median
wall time of a fitting step (default mode) or of one whole-image inference (one view, as the
video pipeline runs it), the user and system CPU seconds of the same, the process's peak
resident memory, and a checksum of the result (equal in both: the allocator changes no number).

    python benchmarks/host_memory.py --threads 2 --out benchmarks/results/host_memory_cpu
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from speed import _machine

REPO = Path(__file__).resolve().parents[1]
CONFIGURATIONS = [("fit", 128, 128), ("fit", 512, 512), ("fit", 600, 400), ("infer", 854, 480), ("infer", 1920, 1080)]


def _worker(config: dict) -> dict:
    import numpy as np
    import torch

    import zeroig_plugin.engine
    from zeroig_plugin import ZeroIG

    torch.set_num_threads(config["threads"])
    if config["memory"] == "system":
        zeroig_plugin.engine.keep_freed_memory = lambda: False
    width, height = config["width"], config["height"]
    image = np.random.default_rng(0).uniform(0, 0.2, (height, width, 3)).astype(np.float32)
    model = ZeroIG(device="cpu", seed=2, fit_crop=None)  # whole-image steps at every size measured
    if config["task"] == "fit":
        run = lambda: model.fit(image, 1).losses  # noqa: E731
    else:
        statistics_from = image[::8, ::8]  # as the video pipeline: statistics of the fitted copy
        run = lambda: model.infer(image, statistics_from=statistics_from, ensemble=1).denoise  # noqa: E731
    for _ in range(config["warmup"]):
        result = run()
    walls, before = [], resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        result = run()
        walls.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        **config,
        "ms": 1e3 * sorted(walls)[len(walls) // 2],
        "user_s": (after.ru_utime - before.ru_utime) / config["repeats"],
        "system_s": (after.ru_stime - before.ru_stime) / config["repeats"],
        "peak_rss_mb": after.ru_maxrss / 1024,
        "checksum": float(np.sum(result, dtype=np.float64)),
    }


def _markdown(machine: str, rows: list[dict]) -> str:
    lines = [machine, "", "| task | size | malloc | ms (median) | user s | system s | peak RSS (MiB) | checksum |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['task']} | {row['width']}x{row['height']} | {row['memory']} | {row['ms']:.0f} | "
                     f"{row['user_s']:.2f} | {row['system_s']:.2f} | {row['peak_rss_mb']:.0f} | {row['checksum']:.6g} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results/host_memory_cpu", help="writes OUT.json and OUT.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    rows = []
    for task, width, height in CONFIGURATIONS:
        for memory in ("system", "kept"):
            config = {"task": task, "width": width, "height": height, "memory": memory, "threads": args.threads,
                      "warmup": args.warmup, "repeats": args.repeats}
            done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True,
                                  text=True, env=env, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(_markdown("", rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    facts = _machine(["cpu"], args.threads)
    machine = (f"Device: {facts['cpu']} ({facts['cpu_count']} cores, torch threads {args.threads}), no GPU; torch "
               f"{facts['torch']}, Python {facts['python']}, glibc {platform.libc_ver()[1]}; load average at start "
               + ", ".join(f"{value:.1f}" for value in facts["load_average_at_start"]))
    Path(f"{args.out}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    Path(f"{args.out}.md").write_text(_markdown(machine, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
