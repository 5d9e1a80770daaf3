"""Fitting speed and memory: ms per step and peak memory per mode, size and device, and the
published computation against ours at 128x128 on the same machine in the same run.

The published computation is stood in for by ``tests/spec_reference.py`` (a literal, unoptimised
reading of SPEC.md) in the published loop (Adam, clip, ``loss.item()`` every step); the published
``train.py`` also writes a checkpoint every step and re-reads the image, which this leaves out, so
the stand-in is if anything faster than the real thing. The floor is the three networks' forward
and backward alone, called as the published forward calls them.

Each measurement runs in its own process (so peak memory is its own); the 128x128 comparison
interleaves its three contestants step by step so a busy machine slows all of them alike. On CPU
all of them run with the engine's malloc setting (:mod:`zeroig_plugin.host_memory`), so that the
published stand-in and the floor differ from ours in computation only.

    python benchmarks/speed.py                      # CPU (and CUDA when present), a few minutes
    python benchmarks/speed.py --sizes 600x400 --steps 20 --devices cuda --json out.json
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

REPO = Path(__file__).resolve().parents[1]
CPU_FULL_IMAGE_PIXELS = 600 * 400  # above this, whole-image modes on CPU take minutes per step


def _parse_size(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.lower().split("x"))
    return width, height


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def published_loop_step(network, loss_of):
    """``train.py``'s step on ``network``: ``loss_of()``, backward, clip 5, Adam, and the host read
    of the loss, which the step returns."""
    import torch

    optimizer = torch.optim.Adam(network.parameters(), lr=3e-4, betas=(0.9, 0.999), weight_decay=3e-4)
    network.train()

    def step() -> float:
        optimizer.zero_grad()
        loss = loss_of()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 5)
        optimizer.step()
        return loss.item()

    return step


def _published_step_runner(device: str, image):
    """The stand-in for the published loop: the literal SPEC reading of the loss in ``train.py``'s step."""
    sys.path.insert(0, str(REPO / "tests"))
    import spec_reference
    from zeroig_plugin.networks import published_init

    net = published_init(2).to(device)
    return published_loop_step(net, lambda: spec_reference.total_loss(net, image))


def _floor_step_runner(device: str, image, acceleration: str = "off"):
    """Forward and backward of the three networks only, called as the published forward does, in
    the layout and precision that ``acceleration`` gives the engine's networks (``off``: float32)."""
    import torch

    from zeroig_plugin.acceleration import AutocastNetworks, resolve_acceleration
    from zeroig_plugin.networks import pair_downsample, published_init

    options, _ = resolve_acceleration(acceleration, torch.device(device))
    net = published_init(2).to(device).train()
    if options.channels_last:
        net = net.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    if options.network_dtype is not None:
        net = AutocastNetworks(net, options.network_dtype)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        j = image + 1e-4
        l11, l12 = pair_downsample(j)
        total = net.denoise_1(l11).sum() + net.denoise_1(l12).sum()
        l2 = j - net.denoise_1(j)
        s2 = net.enhance(l2.detach())
        s21, s22 = pair_downsample(s2)
        for stacked in (torch.cat([l11 / s21, s21], 1), torch.cat([l12 / s22, s22], 1), torch.cat([j / s2, s2], 1)):
            total = total + net.denoise_2(stacked).sum()
        (total + l2.sum()).backward()

    return step


def _engine_step_runner(device: str, image, mode: str, acceleration: str):
    from zeroig_plugin import ZeroIG

    model = ZeroIG(mode=mode, device=device, acceleration=acceleration, fit_crop=None)  # the mode's own steps at any size
    array = image[0].permute(1, 2, 0).cpu().numpy()

    def steps(count: int) -> None:
        model.fit(array, count, loss_every=max(1, count))

    steps.notes = model.acceleration_notes  # type: ignore[attr-defined]
    return steps


def _host_memory(device: str) -> None:
    """On CPU every contestant gets the engine's malloc setting, so that they differ in computation only."""
    from zeroig_plugin.host_memory import keep_freed_memory

    if device == "cpu":
        keep_freed_memory()


def _worker(config: dict) -> dict:
    """Time one configuration in this process; peak memory is this process's."""
    import torch

    _host_memory(config["device"])
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device, (width, height) = config["device"], config["size"]
    image = (torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 0.2).to(device)
    kind = config["kind"]
    if kind == "published":
        single = _published_step_runner(device, image)
        run = lambda count: [single() for _ in range(count)]  # noqa: E731
    elif kind == "floor":
        single = _floor_step_runner(device, image)
        run = lambda count: [single() for _ in range(count)]  # noqa: E731
    else:
        run = _engine_step_runner(device, image, kind, config["acceleration"])
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()  # before the warm-up: a captured graph's pool counts
    run(config["warmup"])
    _synchronize(device)
    if device.startswith("cuda"):
        start = time.perf_counter()
        run(config["steps"])
        _synchronize(device)
        per_step = [(time.perf_counter() - start) / config["steps"]]
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        per_step = []
        for _ in range(config["steps"]):
            start = time.perf_counter()
            run(1)
            per_step.append(time.perf_counter() - start)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_step.sort()
    return {
        **config,
        "ms_per_step": 1e3 * per_step[len(per_step) // 2],
        "ms_per_step_min": 1e3 * per_step[0],
        "peak_memory_mb": peak_mb,
        "peak_memory_kind": "CUDA max allocated" if device.startswith("cuda") else "process peak RSS",
        "notes": list(getattr(run, "notes", [])),
    }


def _compare(config: dict) -> dict:
    """Published stand-in, ours (faithful, eager) and the floor, interleaved step by step."""
    import torch

    from zeroig_plugin import ZeroIG

    _host_memory(config["device"])
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device, (width, height) = config["device"], config["size"]
    image = (torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 0.2).to(device)
    array = image[0].permute(1, 2, 0).cpu().numpy()
    contestants = {"published": _published_step_runner(device, image)}
    for acceleration in config["accelerations"]:
        model = ZeroIG(mode="faithful", device=device, acceleration=acceleration, fit_crop=None)
        contestants[f"ours ({acceleration})"] = lambda model=model: model.fit(array, 1, loss_every=1)
    for acceleration in ("off", "max"):
        contestants[f"floor ({acceleration})"] = _floor_step_runner(device, image, acceleration)
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for round_index in range(config["warmup"] + config["steps"]):
        for name, step in contestants.items():
            _synchronize(device)
            start = time.perf_counter()
            step()
            _synchronize(device)
            if round_index >= config["warmup"]:
                times[name].append(time.perf_counter() - start)
    medians = {name: 1e3 * sorted(values)[len(values) // 2] for name, values in times.items()}
    return {**config, "ms_per_step": medians}


def _run_in_subprocess(entry: str, config: dict) -> dict:
    command = [sys.executable, __file__, f"--{entry}", json.dumps(config)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {**config, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine(devices: list[str], threads: int) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    facts = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }
    if "cuda" in devices:
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def _markdown(machine: dict, comparisons: list[dict], rows: list[dict]) -> str:
    lines = [
        f"Device: {machine['cpu']} ({machine['cpu_count']} cores, torch threads {machine['torch_threads']})"
        + (f", {machine['gpu']}" if "gpu" in machine else ", no GPU")
        + f"; torch {machine['torch']}, Python {machine['python']}; load average at start "
        + ", ".join(f"{value:.1f}" for value in machine["load_average_at_start"]),
        "",
    ]
    for comparison in comparisons:
        ms = comparison["ms_per_step"]
        if "error" in comparison:
            lines += [f"{comparison['device']} comparison failed: {comparison['error']}", ""]
            continue
        width, height = comparison["size"]
        lines += [
            f"**{comparison['device']}, {width}x{height}, faithful (median of {comparison['steps']} interleaved steps)**",
            "",
            "| computation | ms/step | speed-up vs published | x float32 floor |",
            "|---|---:|---:|---:|",
        ]
        for name, value in ms.items():
            label = {
                "published": "published (literal SPEC reading, published loop)",
                "floor (off)": "floor: the three networks' forward+backward only, float32",
                "floor (max)": "floor: the same in the networks' `max` precision and layout",
            }.get(name, name)
            lines.append(f"| {label} | {value:.1f} | {ms['published'] / value:.2f}x | {value / ms['floor (off)']:.2f} |")
        lines.append("")
    lines += [
        "| device | size | computation | acceleration | ms/step (median) | ms/step (min) | peak memory (MiB) | notes |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        width, height = row["size"]
        label = {"published": "published (literal)", "floor": "networks-only floor"}.get(row["kind"], row["kind"])
        if "error" in row or "skipped" in row:
            lines.append(f"| {row['device']} | {width}x{height} | {label} | {row['acceleration']} | - | - | - | {row.get('error') or row['skipped']} |")
            continue
        lines.append(
            f"| {row['device']} | {width}x{height} | {label} | {row['acceleration']} | {row['ms_per_step']:.1f} | "
            f"{row['ms_per_step_min']:.1f} | {row['peak_memory_mb']:.0f} ({row['peak_memory_kind']}) | {'; '.join(row['notes'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="600x400,1920x1080", help="WxH list for the per-mode table")
    parser.add_argument("--compare-size", default="128x128", help="size of the published-vs-ours comparison ('' to skip)")
    parser.add_argument("--modes", default="faithful,crop,improved", help="engine modes to time")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or both (auto: cpu, plus cuda when present)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--compare-steps", type=int, default=7, help="interleaved rounds in the comparison")
    parser.add_argument(
        "--accelerations", default="",
        help="comma-separated acceleration presets to time (default: off,auto,exact,max on CUDA; off,max on CPU)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--max-cpu-pixels", type=int, default=CPU_FULL_IMAGE_PIXELS,
        help="skip whole-image modes on CPU above this many pixels (0: no limit)",
    )
    parser.add_argument("--json", default="benchmarks/speed.json", help="where to write the results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--compare", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    if args.compare:
        print(json.dumps(_compare(json.loads(args.compare))))
        return 0

    import torch

    devices = ["cpu", "cuda"] if args.devices == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.devices == "auto" else args.devices.split(",")
    )
    machine = _machine(devices, args.threads)
    comparisons, rows = [], []
    for device in devices:
        # CPU "max" is bf16 networks and channels-last (compile and graphs are CUDA-only).
        accelerations = args.accelerations.split(",") if args.accelerations else (
            ["off", "auto", "exact", "max"] if device == "cuda" else ["off", "max"]
        )
        common = {"device": device, "threads": args.threads}
        if args.compare_size:
            comparisons.append(_run_in_subprocess("compare", {
                **common, "size": _parse_size(args.compare_size), "accelerations": accelerations,
                "warmup": 5 if device == "cuda" else 1, "steps": args.compare_steps,
            }))
        for size in map(_parse_size, args.sizes.split(",")):
            for kind in [*args.modes.split(","), "published", "floor"]:
                for acceleration in accelerations if kind not in ("published", "floor") else ["off"]:
                    config = {
                        **common, "size": size, "kind": kind, "acceleration": acceleration,
                        "warmup": 5 if device == "cuda" else 1, "steps": args.steps,
                    }
                    whole_image = kind != "crop"
                    if device == "cpu" and whole_image and args.max_cpu_pixels and size[0] * size[1] > args.max_cpu_pixels:
                        rows.append({**config, "skipped": f"whole image on CPU is minutes per step (--max-cpu-pixels {args.max_cpu_pixels})"})
                        continue
                    print(f"timing {device} {size[0]}x{size[1]} {kind} {acceleration}", file=sys.stderr, flush=True)
                    rows.append(_run_in_subprocess("worker", config))
    report = _markdown(machine, comparisons, rows)
    print(report)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine, "comparisons": comparisons, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
