"""Stein's risk along one traced fit's saved weights: how much its two inputs, the noise variance
and the precision of its finite difference, move it, and which checkpoint each version keeps.

Reads a ``selection_trace.py`` result (one fit, its ``linear`` PSNR and SSIM at every check) and the
weights that run saved (``--save-weights``), and at every check computes the risk once per
variance estimate, from one pair of passes (the risk is linear in the variance):

- ``trimmed``: :func:`zeroig_plugin.noise.noise_variance`, each intensity bin's trimmed mean square;
- ``mad``: the estimator it replaced, each bin's median absolute deviation (squared, times 1.4826^2);
- ``plain``: each bin's plain variance of the details, no trimming.

With ``--tf32`` it also computes the risk with every convolution's inputs and weights rounded to
TF32 (10 mantissa bits, float32 accumulation: cuDNN's TF32 arithmetic, emulated on any device),
for the probes given. Writes ``<out>.json`` and ``<out>.md``.

    python benchmarks/selection_trace.py --crop 512 --names gigadb_mito-20x-noise1 --seeds 3 --brightness headroom \
        --exposure-gain off --acceleration max --ensemble 8 --save-weights /tmp/w --out /tmp/trace
    python benchmarks/risk_inputs.py --trace /tmp/trace.json --weights /tmp/w/gigadb_mito-20x-noise1_seed3_gain-off \
        --tf32 --probes 0 1 --out results/risk_inputs_gigadb512_seed3
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import pairs, prepare  # noqa: E402

from zeroig_plugin.checkpoint import load_state_dict, network_from_state_dict  # noqa: E402
from zeroig_plugin.noise import INTENSITY_BINS, NoiseCurve, noise_variance  # noqa: E402
from zeroig_plugin.objective import is_gray, stein_terms  # noqa: E402

MAD_TO_STD = 1.4826


def binned_variance(image: torch.Tensor, spread) -> torch.Tensor:
    """``(1, 1, H, W)`` per-pixel variance of a gray ``image`` ``(1, 1, H, W)`` from ``spread``
    (details ``(N,)`` -> variance) applied to each intensity bin of checkerboard details, read at
    each pixel's 3x3 local mean: ``noise.py``'s curve with another per-bin estimator."""
    cells = image[0, 0, : image.shape[-2] // 2 * 2, : image.shape[-1] // 2 * 2].double()
    p00, p01, p10, p11 = cells[0::2, 0::2], cells[0::2, 1::2], cells[1::2, 0::2], cells[1::2, 1::2]
    means = ((p00 + p01 + p10 + p11) / 4).reshape(-1)
    details = ((p00 - p01 - p10 + p11) / 2).reshape(-1)
    order = torch.argsort(means)
    bins = torch.tensor_split(order, INTENSITY_BINS)
    curve = NoiseCurve(torch.stack([means[b].mean() for b in bins]), torch.stack([spread(details[b]) for b in bins]))
    return curve(F.avg_pool2d(image.float(), 3, 1, 1, count_include_pad=False)).float()


def mad_variance(details: torch.Tensor) -> torch.Tensor:
    variance = (MAD_TO_STD * (details - details.median()).abs().median()) ** 2
    return variance if variance > 0 else details.var(unbiased=False)


def _round_to_tf32(tensor: torch.Tensor) -> torch.Tensor:
    bits = tensor.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


class EmulatedTF32:
    """Within it, every ``Conv2d`` of ``net`` rounds its input and weights to TF32."""

    def __init__(self, net: torch.nn.Module):
        self.convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]

    def __enter__(self):
        self.saved = [conv.weight.data for conv in self.convs]
        self.hooks = [conv.register_forward_pre_hook(lambda _, args: (_round_to_tf32(args[0]),)) for conv in self.convs]
        for conv in self.convs:
            conv.weight.data = _round_to_tf32(conv.weight.data)

    def __exit__(self, *_):
        for conv, weight, hook in zip(self.convs, self.saved, self.hooks):
            conv.weight.data = weight
            hook.remove()


def risk_parts(net, image: torch.Tensor, probe: torch.Tensor) -> tuple[float, torch.Tensor]:
    """``mean((f(y) - y)^2)`` and the per-pixel divergence estimate ``(1, 1, H, W)`` of a gray image's
    ``linear`` output (:func:`objective.stein_terms`)."""
    squared_residual, divergence = stein_terms(net, image, probe)
    return float(squared_residual.mean()), divergence


def risk(fit: float, divergence: torch.Tensor, variance: torch.Tensor) -> float:
    return fit + float((2 * variance * divergence).mean()) - float(variance.mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", required=True, help="a selection_trace.py JSON result of one fit")
    parser.add_argument("--weights", required=True, help="the folder of that fit's step{N}.pt")
    parser.add_argument("--tf32", action="store_true", help="also the risk with TF32-rounded convolutions")
    parser.add_argument("--probes", type=int, nargs="+", default=[0], help="probe seeds for the TF32 comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    report = json.loads(Path(args.trace).read_text())
    [fit] = report["fits"]
    crop = report["settings"]["crop"]
    [(_, low, _)] = pairs(fit["dataset"], None, [fit["name"]], lambda a: prepare(a, None, None, crop))
    if low.ndim != 2:
        raise SystemExit("risk_inputs.py handles gray images (the microscopy traces)")
    gray = torch.from_numpy(low)[None, None]
    image = gray.expand(1, 3, -1, -1).contiguous()
    assert is_gray(image)
    variances = {
        "trimmed": noise_variance(gray),
        "mad": binned_variance(gray, mad_variance),
        "plain": binned_variance(gray, lambda d: d.var(unbiased=False)),
    }
    probes = {  # drawn as the engine draws its probe (seed 0), equal in the three channels of a gray image
        seed: torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))[:, :1].expand_as(image).contiguous()
        for seed in sorted({0, *args.probes})
    }
    rows = []
    for check in fit["trace"]:
        net = network_from_state_dict(load_state_dict(Path(args.weights) / f"step{check['step']}.pt"))
        net.train()
        fit_term, divergence = risk_parts(net, image, probes[0])
        row = {"step": check["step"], "linear_psnr": check["linear_psnr"], "linear_ssim": check["linear_ssim"],
               "risk": {name: risk(fit_term, divergence, v) for name, v in variances.items()}}
        if args.tf32:
            row["float32"], row["tf32"] = {}, {}
            for seed, probe in probes.items():
                parts = (fit_term, divergence) if seed == 0 else risk_parts(net, image, probe)
                row["float32"][seed] = risk(*parts, variances["trimmed"])
                with EmulatedTF32(net):
                    row["tf32"][seed] = risk(*risk_parts(net, image, probe), variances["trimmed"])
        rows.append(row)
        print(f"step {row['step']}: " + ", ".join(f"{k} {v:.4e}" for k, v in row["risk"].items()), file=sys.stderr, flush=True)

    def kept(key):
        return min(rows, key=key)

    final = rows[-1]
    lines = [
        f"Stein's risk along {fit['dataset']}:{fit['name']} seed {fit['seed']} ({crop}x{crop}, {len(rows)} checks; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}). `linear` PSNR / SSIM of the weights each "
        f"version keeps; final weights {final['linear_psnr']:.2f} / {final['linear_ssim']:.3f}, best "
        f"{max(r['linear_psnr'] for r in rows):.2f}.", "",
        "| noise variance | mean variance | lowest risk | kept step | `linear` PSNR / SSIM |", "|---|---|---|---|---|",
    ]
    for name, variance in variances.items():
        row = kept(lambda r: r["risk"][name])
        lines.append(f"| {name} | {float(variance.mean()):.3e} | {row['risk'][name]:.3e} | {row['step']} | "
                     f"{row['linear_psnr']:.2f} / {row['linear_ssim']:.3f} |")
    if args.tf32:
        lines += ["", "| probe | kept step, float32 | kept step, TF32 | TF32 minus float32, mean / largest (relative) | "
                  "consecutive checks ordered otherwise |", "|---|---|---|---|---|"]
        for seed in probes:
            error = [abs(r["tf32"][seed] - r["float32"][seed]) / abs(r["float32"][seed]) for r in rows]
            flips = sum((a["tf32"][seed] < b["tf32"][seed]) != (a["float32"][seed] < b["float32"][seed])
                        for a, b in zip(rows, rows[1:]))
            lines.append(f"| {seed} | {kept(lambda r: r['float32'][seed])['step']} | {kept(lambda r: r['tf32'][seed])['step']} | "
                         f"{np.mean(error):.2%} / {max(error):.2%} | {flips} of {len(rows) - 1} |")
    Path(args.out + ".json").write_text(json.dumps({"trace": args.trace, "rows": rows}, indent=1))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
