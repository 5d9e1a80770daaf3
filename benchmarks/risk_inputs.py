"""Stein's risk along traced fits' saved weights: how much its inputs move it, what it estimates,
and which checkpoint each way of reading it keeps.

Reads a ``selection_trace.py`` result (its fits' ``linear`` PSNR and SSIM at every check) and the
weights that run saved (``--save-weights``: a folder of ``<name>_seed<N>_gain-<g>/step{N}.pt``),
and at every check of every fit computes the risk once per noise-variance estimate, from one pair of
passes (the risk is linear in the variance):

- ``trimmed``: :func:`zeroig_plugin.noise.noise_variance`, each intensity bin's trimmed mean square;
- ``mad``: the estimator it replaced, each bin's median absolute deviation (squared, times 1.4826^2);
- ``plain``: each bin's plain variance of the details, no trimming;
- ``clipped``: each bin's plain variance of the details within 5 trimmed standard deviations of
  their median (only gross outliers dropped).

Beside it, per check: the divergence term's mean (the output's degrees of freedom per pixel), the
trimmed risk on an 8x8 grid of blocks, and the mean squared error of the ``linear`` output (one
view) against one fixed reference, the high image mapped onto the low one's intensities by one
least-squares gain and offset (the traced PSNR matches every output anew). From these, besides
the lowest risk, the one-standard-error rule the engine keeps checkpoints by
(:func:`zeroig_plugin.objective.tied_choice`). With ``--tf32`` it also computes the
risk with every convolution's inputs and weights rounded to TF32 (10 mantissa bits, float32
accumulation: cuDNN's TF32 arithmetic, emulated on any device), for the probes given. Writes
``<out>.json`` and ``<out>.md``.

    python benchmarks/selection_trace.py --crop 512 --names gigadb_mito-20x-noise1 --seeds 3 --brightness headroom \
        --exposure-gain off --acceleration max --ensemble 8 --save-weights /tmp/w --out /tmp/trace
    python benchmarks/risk_inputs.py --trace /tmp/trace.json --weights /tmp/w --tf32 --probes 0 1 \
        --out results/risk_inputs_gigadb512_seed3
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

from quality import intensity_match, pairs, prepare  # noqa: E402
from selection_trace import weights_folder  # noqa: E402

from zeroig_plugin.checkpoint import load_state_dict, network_from_state_dict  # noqa: E402
from zeroig_plugin.noise import INTENSITY_BINS, NoiseCurve, noise_variance, trimmed_variance  # noqa: E402
from zeroig_plugin.objective import (  # noqa: E402
    image_statistics, infer, is_gray, risk_blocks, stein_per_pixel, stein_terms, tied_choice,
)

MAD_TO_STD = 1.4826
CLIP_AT = 5.0  # standard deviations from the median beyond which ``clipped`` drops a detail


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


def clipped_variance(details: torch.Tensor, limit: float = CLIP_AT) -> torch.Tensor:
    """The mean square deviation from the median of the ``details`` ``(N,)`` within ``limit`` trimmed
    standard deviations (:func:`noise.trimmed_variance`) of it."""
    deviations = details - details.median()
    return (deviations[deviations.abs() <= limit * trimmed_variance(details).sqrt()] ** 2).mean()


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


def risk(residual: torch.Tensor, divergence: torch.Tensor, variance: torch.Tensor) -> float:
    return float(stein_per_pixel(residual, divergence, variance).mean())


def one_standard_error_row(rows: list[dict]) -> dict:
    """The row of ``rows`` (each with ``risk``: ``{"trimmed": float}``, ``blocks`` and ``divergence``)
    that the engine's one-standard-error rule keeps (:func:`objective.tied_choice`)."""
    return rows[tied_choice(
        torch.tensor([row["risk"]["trimmed"] for row in rows], dtype=torch.float64),
        torch.tensor([row["blocks"] for row in rows], dtype=torch.float64),
        torch.tensor([row["divergence"] for row in rows], dtype=torch.float64),
    )]


def reference_error(net, image: torch.Tensor, target: np.ndarray) -> float:
    """The mean squared error of a gray image's ``linear`` output (one view) against ``target``."""
    with torch.no_grad():
        output = infer(net, image, image_statistics(net, image)).linear.mean(1)[0]
    return float(((output - torch.from_numpy(target)) ** 2).mean())


def trace_risk(fit: dict, crop: int, weights: Path, tf32_probes: list[int] | None) -> tuple[dict, list[dict]]:
    """The mean of each noise-variance estimate of ``fit``'s image (a ``selection_trace.py`` fit of a
    gray pair) and, per check, the risk under each, its blocks and divergence, the reference error
    and, for ``tf32_probes``, the risk in float32 and emulated TF32 per probe."""
    [(_, low, high)] = pairs(fit["dataset"], None, [fit["name"]], lambda a: prepare(a, None, None, crop))
    if low.ndim != 2:
        raise SystemExit("risk_inputs.py handles gray images (the microscopy traces)")
    gray = torch.from_numpy(low)[None, None]
    image = gray.expand(1, 3, -1, -1).contiguous()
    assert is_gray(image)
    target = intensity_match(high, low)
    variances = {
        "trimmed": noise_variance(gray),
        "mad": binned_variance(gray, mad_variance),
        "plain": binned_variance(gray, lambda d: d.var(unbiased=False)),
        "clipped": binned_variance(gray, clipped_variance),
    }
    probes = {  # drawn as the engine draws its probe (seed 0), equal in the three channels of a gray image
        seed: torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))[:, :1].expand_as(image).contiguous()
        for seed in sorted({0, *(tf32_probes or [])})
    }
    folder = weights_folder(weights, fit["name"], fit["seed"], fit["exposure_gain"])
    rows = []
    for check in fit["trace"]:
        net = network_from_state_dict(load_state_dict(folder / f"step{check['step']}.pt"))
        net.train()
        parts = stein_terms(net, image, probes[0])
        row = {
            "step": check["step"], "linear_psnr": check["linear_psnr"], "linear_ssim": check["linear_ssim"],
            "traced_risk": check["scores"]["risk"],
            "risk": {name: risk(*parts, v) for name, v in variances.items()},
            "divergence": float(parts[1].mean()),
            "blocks": risk_blocks(stein_per_pixel(*parts, variances["trimmed"])).tolist(),
            "reference_error": reference_error(net, image, target),
        }
        if tf32_probes is not None:
            row["float32"], row["tf32"] = {}, {}
            for seed, probe in probes.items():
                probe_parts = parts if seed == 0 else stein_terms(net, image, probe)
                row["float32"][seed] = risk(*probe_parts, variances["trimmed"])
                with EmulatedTF32(net):
                    row["tf32"][seed] = risk(*stein_terms(net, image, probe), variances["trimmed"])
        rows.append(row)
        print(f"{fit['name']} seed {fit['seed']} step {row['step']}: "
              + ", ".join(f"{k} {v:.4e}" for k, v in row["risk"].items()), file=sys.stderr, flush=True)
    return {name: float(v.mean()) for name, v in variances.items()}, rows


SELECTIONS = {  # name -> the check it keeps of one fit's rows
    **{f"lowest risk, {name} variance": (lambda rows, name=name: min(rows, key=lambda r: r["risk"][name]))
       for name in ("trimmed", "mad", "plain", "clipped")},
    "one-standard-error rule (trimmed; the engine's)": one_standard_error_row,
    "lowest error against the fixed reference (not zero-shot)": lambda rows: min(rows, key=lambda r: r["reference_error"]),
    "final weights": lambda rows: rows[-1],
}


def fit_lines(fit: dict, mean_variance: dict, rows: list[dict], crop: int, tf32: bool) -> list[str]:
    final = rows[-1]
    lines = [
        f"Stein's risk along {fit['dataset']}:{fit['name']} seed {fit['seed']} ({crop}x{crop}, {len(rows)} checks; "
        "mean noise variance " + ", ".join(f"{name} {value:.3e}" for name, value in mean_variance.items()) + "). "
        f"`linear` PSNR / SSIM of the weights each selection keeps; final weights {final['linear_psnr']:.2f} / "
        f"{final['linear_ssim']:.3f}, best {max(r['linear_psnr'] for r in rows):.2f}.", "",
        "| selection | kept step | `linear` PSNR / SSIM |", "|---|---|---|",
    ]
    for name, select in SELECTIONS.items():
        row = select(rows)
        lines.append(f"| {name} | {row['step']} | {row['linear_psnr']:.2f} / {row['linear_ssim']:.3f} |")
    if tf32:
        probes = list(rows[0]["tf32"])
        lines += ["", "| probe | kept step, float32 | kept step, TF32 | TF32 minus float32, mean / largest (relative) | "
                  "consecutive checks ordered otherwise |", "|---|---|---|---|---|"]
        for seed in probes:
            error = [abs(r["tf32"][seed] - r["float32"][seed]) / abs(r["float32"][seed]) for r in rows]
            flips = sum((a["tf32"][seed] < b["tf32"][seed]) != (a["float32"][seed] < b["float32"][seed])
                        for a, b in zip(rows, rows[1:]))
            kept_float32 = min(rows, key=lambda r: r["float32"][seed])["step"]
            kept_tf32 = min(rows, key=lambda r: r["tf32"][seed])["step"]
            lines.append(f"| {seed} | {kept_float32} | {kept_tf32} | {np.mean(error):.2%} / {max(error):.2%} | "
                         f"{flips} of {len(rows) - 1} |")
    return lines + [""]


def summary_lines(fits: list[tuple[dict, list[dict]]]) -> list[str]:
    """Each selection's `linear` PSNR and SSIM over the fits, against the lowest trimmed risk, and how
    far the recomputed risk is from the one the trace recorded."""
    base = [SELECTIONS["lowest risk, trimmed variance"](rows) for _, rows in fits]
    lines = [
        f"Over {len(fits)} fits: `linear` PSNR / SSIM of the kept weights, mean, and the difference from the "
        "lowest trimmed risk: mean, worst and best.", "",
        "| selection | PSNR / SSIM | PSNR difference: mean / worst / best | SSIM difference: mean / worst / best |",
        "|---|---|---|---|",
    ]
    for name, select in SELECTIONS.items():
        kept = [select(rows) for _, rows in fits]
        psnr = np.array([k["linear_psnr"] - b["linear_psnr"] for k, b in zip(kept, base)])
        ssim = np.array([k["linear_ssim"] - b["linear_ssim"] for k, b in zip(kept, base)])
        lines.append(
            f"| {name} | {np.mean([k['linear_psnr'] for k in kept]):.2f} / {np.mean([k['linear_ssim'] for k in kept]):.3f} | "
            f"{psnr.mean():+.2f} / {psnr.min():+.2f} / {psnr.max():+.2f} | {ssim.mean():+.4f} / {ssim.min():+.3f} / {ssim.max():+.3f} |"
        )
    drift = max(abs(r["risk"]["trimmed"] - r["traced_risk"]) for _, rows in fits for r in rows)
    step = np.median([abs(a["traced_risk"] - b["traced_risk"]) for _, rows in fits for a, b in zip(rows, rows[1:])])
    return lines + ["", f"The trimmed risk recomputed here differs from the traced one by at most {drift:.1e} "
                    f"(between consecutive checks the traced risk moves by {step:.1e}, the median).", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", required=True, help="a selection_trace.py JSON result")
    parser.add_argument("--weights", required=True, help="the folder that run saved its weights in (--save-weights)")
    parser.add_argument("--tf32", action="store_true", help="also the risk with TF32-rounded convolutions")
    parser.add_argument("--probes", type=int, nargs="+", default=[0], help="probe seeds for the TF32 comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    report = json.loads(Path(args.trace).read_text())
    crop = report["settings"]["crop"]
    scored = [(fit, *trace_risk(fit, crop, Path(args.weights), args.probes if args.tf32 else None)) for fit in report["fits"]]
    lines = [f"{platform.processor() or platform.machine()}, torch {torch.__version__}; {args.trace}.", ""]
    for fit, mean_variance, rows in scored:
        lines += fit_lines(fit, mean_variance, rows, crop, args.tf32)
    lines += summary_lines([(fit, rows) for fit, _, rows in scored])
    Path(args.out + ".json").write_text(json.dumps({"trace": args.trace, "fits": [
        {"name": fit["name"], "seed": fit["seed"], "mean_variance": mean_variance, "rows": rows}
        for fit, mean_variance, rows in scored
    ]}, indent=1))
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
