"""Which checkpoint each selection rule keeps, for `denoise` and `linear`, re-scored from traced
fits' saved weights.

Reads ``selection_trace.py`` results (each fit's `denoise` and `linear` PSNR and SSIM at every
check) and the weights those runs saved (``--save-weights``), and at every check computes, each as
a mean and on an 8x8 grid of blocks: the pair score (:func:`zeroig_plugin.objective.
pair_consistency`, the published term's, enhanced domain) and Stein's risk estimate of `linear`
(:func:`zeroig_plugin.objective.stein_risk_map`, the engine's noise variance and probe), with the
risk's divergence. The rules compared:

- ``pair score, lowest``: the default's selection for `denoise` until 2026-12-06;
- ``pair score, latest within one standard error``: of the checks whose pair score exceeds the
  lowest by at most one standard error of their blockwise difference, the latest (the default's
  since);
- ``risk, lowest``;
- ``risk, one-standard-error rule``: of the checks tied with the lowest risk, the smallest
  divergence (the default's for a fit whose only output is `linear`);
- ``final weights``, and each fit's best check (an oracle, per output).

`linear` is reported for the intensity-matched datasets (microscopy) only: elsewhere it sits at the
dark input's level and the traced score compares it with the normal-light photo.

Writes ``<out>.json`` and ``<out>.md``.

    python benchmarks/selection_trace.py --datasets skimage-synthetic --size 128 --exposure-gain on \
        --steps 1000 --save-weights /tmp/w --out /tmp/trace
    python benchmarks/selection_rules.py --trace /tmp/trace.json --weights /tmp/w --out results/selection_rules_photos128
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import INTENSITY_MATCHED, pairs, prepare  # noqa: E402
from selection_trace import weights_folder  # noqa: E402

from zeroig_plugin import ZeroIG  # noqa: E402
from zeroig_plugin.checkpoint import load_state_dict, network_from_state_dict  # noqa: E402
from zeroig_plugin.engine import risk_inputs  # noqa: E402
from zeroig_plugin.objective import (  # noqa: E402
    one_standard_error_choice, pair_consistency_map, risk_blocks, stein_risk_map,
)

OUTPUTS = {"denoise": ("psnr", "ssim"), "linear": ("linear_psnr", "linear_ssim")}


def _tied_choice(rows: list[dict], score: str, tiebreak) -> int:
    """:func:`one_standard_error_choice` on ``rows``' ``score`` and its blocks, ``tiebreak(row)`` the
    quantity the tied check with the smallest value of is kept."""
    return one_standard_error_choice(
        torch.tensor([r[score] for r in rows], dtype=torch.float64),
        torch.tensor([r[f"{score}_blocks"] for r in rows], dtype=torch.float64),
        torch.tensor([tiebreak(r) for r in rows], dtype=torch.float64),
    )


RULES = {  # name -> index of the check it keeps among one fit's rows
    "pair score, lowest (before)": lambda rows: int(np.argmin([r["pair"] for r in rows])),
    "pair score, latest within one standard error (now, `denoise`)": lambda rows: _tied_choice(rows, "pair", lambda r: -r["step"]),
    "risk, lowest": lambda rows: int(np.argmin([r["risk"] for r in rows])),
    "risk, one-standard-error rule (now, `linear` alone)": lambda rows: _tied_choice(rows, "risk", lambda r: r["divergence"]),
    "final weights": lambda rows: len(rows) - 1,
}


@torch.no_grad()
def rescore(fit: dict, settings: dict, weights: Path) -> list[dict]:
    """Per check of ``fit``: the traced outputs' scores and both selection scores with their blocks."""
    [(_, low, _)] = pairs(fit["dataset"], None, [fit["name"]], lambda a: prepare(a, None, settings["size"], settings["crop"]))
    pixels = torch.from_numpy(low)
    image = pixels[None, None].expand(1, 3, -1, -1) if pixels.ndim == 2 else pixels.permute(2, 0, 1)[None]
    image = ZeroIG(device="cpu").content_box(image).crop(image).contiguous()  # what the engine fits and scores
    variance, probe = risk_inputs(image)
    folder = weights_folder(weights, fit["name"], fit["seed"], fit["exposure_gain"])
    rows = []
    for check in fit["trace"]:
        net = network_from_state_dict(load_state_dict(folder / f"step{check['step']}.pt")).train()
        pair = pair_consistency_map(net, image)
        risk, divergence = stein_risk_map(net, image, variance, probe)
        rows.append({
            **{key: check[key] for key in ("step", "psnr", "ssim", "linear_psnr", "linear_ssim")},
            "traced_pair": check["scores"]["enhanced"], "traced_risk": check["scores"]["risk"],
            "pair": float(pair.mean()), "pair_blocks": risk_blocks(pair).tolist(),
            "risk": float(risk.mean()), "risk_blocks": risk_blocks(risk).tolist(), "divergence": float(divergence.mean()),
        })
    print(f"{fit['name']} seed {fit['seed']}: {len(rows)} checks", file=sys.stderr, flush=True)
    return rows


def fit_table(scored: list[tuple[dict, list[dict]]], output: str) -> list[str]:
    psnr, ssim = OUTPUTS[output]
    lines = [f"`{output}` PSNR (dB) / SSIM of the check each rule keeps (step):", "",
             "| fit | " + " | ".join(RULES) + " | best PSNR |", "|---|" + "---|" * (len(RULES) + 1)]
    for fit, rows in scored:
        cells = [f"{rows[i][psnr]:.2f} / {rows[i][ssim]:.3f} ({rows[i]['step']})" for i in (rule(rows) for rule in RULES.values())]
        best = max(rows, key=lambda r: r[psnr])
        lines.append(f"| {fit['name']}, seed {fit['seed']} | " + " | ".join(cells) + f" | {best[psnr]:.2f} ({best['step']}) |")
    return lines + [""]


def summary_table(scored: list[tuple[dict, list[dict]]], output: str) -> list[str]:
    psnr, ssim = OUTPUTS[output]
    base = next(iter(RULES.values()))
    lines = [f"Over {len(scored)} fits, `{output}` PSNR / SSIM at the kept check, mean, and the difference from "
             "the pair score's lowest: mean / worst / best.", "",
             "| rule | PSNR / SSIM | PSNR difference | SSIM difference |", "|---|---|---|---|"]
    for name, rule in [*RULES.items(), ("each fit's best check (oracle)", lambda rows: int(np.argmax([r[psnr] for r in rows])))]:
        kept = [(rows[rule(rows)], rows[base(rows)]) for _, rows in scored]
        differences = [np.array([k[key] - b[key] for k, b in kept]) for key in (psnr, ssim)]
        lines.append(f"| {name} | {np.mean([k[psnr] for k, _ in kept]):.2f} / {np.mean([k[ssim] for k, _ in kept]):.3f} | "
                     + " | ".join(f"{d.mean():+.3f} / {d.min():+.3f} / {d.max():+.3f}" for d in differences) + " |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", required=True, nargs="+", help="selection_trace.py JSON results")
    parser.add_argument("--weights", required=True, nargs="+", help="the folder each run saved its weights in, in order")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if len(args.trace) != len(args.weights):
        parser.error("give one --weights folder per --trace")
    torch.set_num_threads(args.threads)
    scored = []
    for trace, weights in zip(args.trace, args.weights):
        report = json.loads(Path(trace).read_text())
        scored += [(fit, rescore(fit, report["settings"], Path(weights))) for fit in report["fits"]]
    lines = [f"{platform.processor() or platform.machine()}, torch {torch.__version__}; {', '.join(args.trace)}.", ""]
    for output in OUTPUTS:
        fits = [(fit, rows) for fit, rows in scored if output == "denoise" or fit["dataset"] in INTENSITY_MATCHED]
        if fits:
            lines += fit_table(fits, output) + summary_table(fits, output)
    drift = max(max(abs(r["pair"] / r["traced_pair"] - 1), abs(r["risk"] / r["traced_risk"] - 1)) for _, rows in scored for r in rows)
    lines += [f"Scores recomputed here differ from the traced ones by at most {drift:.2%} (relative).", ""]
    Path(args.out + ".json").write_text(json.dumps({"traces": args.trace, "fits": [
        {"dataset": fit["dataset"], "name": fit["name"], "seed": fit["seed"], "rows": rows} for fit, rows in scored
    ]}, indent=1))
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
