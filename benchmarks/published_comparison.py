"""The published ZERO-IG code against ours, step for step, on the CPU at 128x128 (issue 6's CPU target).

Needs a checkout of the published code (https://github.com/Doyle59217/ZeroIG; measured at commit
37789c7). It is imported unmodified: ``Tensor.cuda`` becomes a no-op so its ``.cuda()`` calls stay
on the CPU, and a stand-in ``matplotlib`` is used if none is installed (the training step never
plots). Its training step is ``train.py``'s: ``Network._loss``, backward, clip 5, Adam, and
``loss.item()``; ``train.py`` also writes a checkpoint and re-reads the image each step, which this
leaves out, so the published side is if anything flattered.

Contestants, interleaved round by round so a busy machine slows all alike, each from the seed-2
init on ``../shared/reference/fit_input.npy``: the published step; ours (``faithful``) with
``--acceleration off`` (exact float32, the CPU default) and ``max`` (bf16 networks, channels-last);
and the floor, the three networks' forward and backward alone, in float32 and in bf16. Before
timing, both computations' first 10 losses from the fixture's init are checked against
``fit_losses.json``.

    git clone https://github.com/Doyle59217/ZeroIG ../ZeroIG
    python benchmarks/published_comparison.py --published ../ZeroIG --threads 2 --rounds 60
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import types
from pathlib import Path

import numpy as np
from speed import _floor_step_runner, published_loop_step  # this script's folder is on sys.path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ZEROIG_SHARED", REPO.parent / "shared"))


def import_published(path: Path):
    """The published ``model`` module from ``path``, runnable on a machine without CUDA."""
    import torch

    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("matplotlib")
        stand_in.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules.update({"matplotlib": stand_in, "matplotlib.pyplot": stand_in.pyplot})
    sys.path.insert(0, str(path))
    import model

    return model


def seeded_published_network(model, seed: int = 2):
    """``train.py``'s init: seeds, ``Network()``, then ``enhance_weights_init`` on the enhancer."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    network = model.Network()
    for part in (network.enhance.in_conv, network.enhance.conv, network.enhance.out_conv):
        part.apply(network.enhance_weights_init)
    return network


def parity_checks(model, image, image_hwc) -> dict:
    """Both computations' first 10 losses from the fixture's init, against the fixture."""
    import torch

    from zeroig_plugin import ZeroIG

    state_path = SHARED / "reference" / "fit_init_state.pt"
    expected = json.loads((SHARED / "reference" / "fit_losses.json").read_text())["losses"][:10]
    published = model.Network()
    published.load_state_dict(torch.load(state_path, weights_only=True))
    step = published_loop_step(published, lambda: published._loss(image))
    published_losses = [step() for _ in range(10)]
    ours_losses = ZeroIG(mode="faithful", device="cpu", weights=str(state_path), acceleration="off").fit(image_hwc, 10).losses
    worst = lambda losses: max(abs(a - b) / abs(b) for a, b in zip(losses, expected))  # noqa: E731
    ours_init = ZeroIG(mode="faithful", device="cpu").net.state_dict()
    published_init = seeded_published_network(model).state_dict()
    return {
        "published_10_losses_max_relative_error": worst(published_losses),
        "ours_10_losses_max_relative_error": worst(ours_losses),
        "seed_2_init_max_abs_difference": max(
            float((published_init[key].float() - value.float()).abs().max()) for key, value in ours_init.items()
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, required=True, help="a checkout of github.com/Doyle59217/ZeroIG")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    args = parser.parse_args(argv)
    if not (args.published / "model.py").is_file():
        parser.error(f"no model.py in {args.published}: pass a checkout of github.com/Doyle59217/ZeroIG")
    if not (SHARED / "reference" / "fit_input.npy").is_file():
        print(f"skipped: the parity fixtures are not at {SHARED / 'reference'} (set ZEROIG_SHARED)")
        return 0

    import torch

    sys.path.insert(0, str(REPO))

    from zeroig_plugin import ZeroIG

    if args.threads:
        torch.set_num_threads(args.threads)
    model = import_published(args.published)
    chw = np.load(SHARED / "reference" / "fit_input.npy").astype(np.float32)
    image = torch.from_numpy(chw)[None].contiguous()
    image_hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
    checks = parity_checks(model, image, image_hwc)
    print(json.dumps(checks, indent=1), flush=True)

    published = seeded_published_network(model)
    exact = ZeroIG(mode="faithful", device="cpu", acceleration="off")
    fastest = ZeroIG(mode="faithful", device="cpu", acceleration="max")
    contestants = {
        "published ZERO-IG": published_loop_step(published, lambda: published._loss(image)),
        "ours, faithful, exact float32 (acceleration off, the CPU default)": lambda: exact.fit(image_hwc, 1, loss_every=1),
        "ours, faithful, acceleration max (bf16 networks, channels-last)": lambda: fastest.fit(image_hwc, 1, loss_every=1),
        "floor: the three networks' forward + backward only, float32": _floor_step_runner("cpu", image.clone(), "off"),
        "floor: the same, bf16 channels-last": _floor_step_runner("cpu", image.clone(), "max"),
    }
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for round_index in range(args.warmup + args.rounds):
        for name, step in contestants.items():
            start = time.perf_counter()
            step()
            if round_index >= args.warmup:
                times[name].append(1e3 * (time.perf_counter() - start))

    published = float(np.median(times["published ZERO-IG"]))
    print(
        f"\nCPU, 128x128, torch threads {torch.get_num_threads()}, {args.rounds} interleaved rounds after {args.warmup} "
        f"warm-up; torch {torch.__version__}, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| computation | ms/step, median (IQR) | speed-up vs published |\n|---|---:|---:|")
    for name, values in times.items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        print(f"| {name} | {median:.1f} ({q1:.1f}-{q3:.1f}) | {published / median:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "checks": checks, "ms": times}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
