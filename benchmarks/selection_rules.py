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
  for one session);
- ``pair score, latest without significant drift``: the same with the drift test's threshold
  (:func:`zeroig_plugin.objective.drift_threshold`, a 5 % test shared among the fit's checks; the
  default's since);
- ``risk, lowest``;
- ``risk, one-standard-error rule``: of the checks tied with the lowest risk, the smallest
  divergence (the default's for a fit whose only output is `linear`);
- ``final weights``, and each fit's best check (an oracle, per output).

`linear` is reported for the intensity-matched datasets (microscopy) only: elsewhere it sits at the
dark input's level and the traced score compares it with the normal-light photo.

Writes ``<out>.json`` and ``<out>.md``; ``--summarise <out>.json`` rewrites the tables from the
scores saved there, without the weights (``--summarise A.json B.json --out C``: one report over
several, ``C.md``). A further table reads the pair score's latest check within 1, 2, 3 or 4
standard errors of the lowest beside the drift test's threshold, and a last one asks whether the
scores could stop a fit early (:func:`stopped_at`): what each output's rule keeps when the fit ends
at the first check after which the score has not improved for 4 or 8 checks.

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
    drift_threshold, pair_consistency_map, risk_blocks, stein_risk_map, tied_choice,
)

OUTPUTS = {"denoise": ("psnr", "ssim"), "linear": ("linear_psnr", "linear_ssim")}


def _tied_choice(rows: list[dict], score: str, tiebreak, standard_errors: float = 1.0) -> int:
    """:func:`tied_choice` on ``rows``' ``score`` and its blocks, ``tiebreak(row)`` the
    quantity the tied check with the smallest value of is kept."""
    return tied_choice(
        torch.tensor([r[score] for r in rows], dtype=torch.float64),
        torch.tensor([r[f"{score}_blocks"] for r in rows], dtype=torch.float64),
        torch.tensor([tiebreak(r) for r in rows], dtype=torch.float64),
        standard_errors,
    )


RULES = {  # name -> index of the check it keeps among one fit's rows
    "pair score, lowest (before)": lambda rows: int(np.argmin([r["pair"] for r in rows])),
    "pair score, latest within one standard error": lambda rows: _tied_choice(rows, "pair", lambda r: -r["step"]),
    "pair score, latest without significant drift (now, `denoise`)": lambda rows: _tied_choice(
        rows, "pair", lambda r: -r["step"], drift_threshold(len(rows))),
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


def threshold_table(scored: list[tuple[dict, list[dict]]]) -> list[str]:
    """`denoise` at the latest check of each fit within a fixed number of standard errors of the
    lowest pair score, beside the drift test's threshold: how much the choice of threshold moves."""
    thresholds = [("1", lambda rows: 1.0), ("2", lambda rows: 2.0),
                  ("the drift test's (2.73 for 16 checks, 2.99 for 36)", lambda rows: drift_threshold(len(rows))),
                  ("3", lambda rows: 3.0), ("4", lambda rows: 4.0)]
    drift = [rows[_tied_choice(rows, "pair", lambda r: -r["step"], drift_threshold(len(rows)))]["psnr"] for _, rows in scored]
    lines = [f"The pair score's latest check within a threshold, `denoise` over {len(scored)} fits: PSNR / SSIM, mean, "
             "and the PSNR difference from the drift test's: worst / best, fits more than 0.05 dB below it.", "",
             "| standard errors | PSNR / SSIM | against the drift test | below it |", "|---|---|---|---|"]
    for name, threshold in thresholds:
        kept = [rows[_tied_choice(rows, "pair", lambda r: -r["step"], threshold(rows))] for _, rows in scored]
        difference = np.array([k["psnr"] for k in kept]) - drift
        lines.append(f"| {name} | {np.mean([k['psnr'] for k in kept]):.2f} / {np.mean([k['ssim'] for k in kept]):.3f} | "
                     f"{difference.min():+.2f} / {difference.max():+.2f} | {int((difference < -0.05).sum())} |")
    return lines + [""]


STOP_PATIENCE = (4, 8)
"""Checks without improvement (200 and 400 steps at the engine's interval of 50) after which
:func:`stopped_at` ends a fit."""
DEFAULT_RULES = {  # output -> (the score its selection reads, the default's rule for it)
    "denoise": ("pair", RULES["pair score, latest without significant drift (now, `denoise`)"]),
    "linear": ("risk", RULES["risk, one-standard-error rule (now, `linear` alone)"]),
}


def stopped_at(rows: list[dict], score: str, patience: int) -> int:
    """The check at which a fit would stop early: the first after which ``patience`` checks in a
    row have not lowered ``score`` below the lowest before them by more than one standard error of
    their blockwise difference; the last check if there is none."""
    for end in range(patience, len(rows)):
        lowest = np.array(min(rows[: end - patience + 1], key=lambda r: r[score])[f"{score}_blocks"])
        differences = [np.array(r[f"{score}_blocks"]) - lowest for r in rows[end - patience + 1 : end + 1]]
        if not any(d.mean() < -d.std(ddof=1) / len(d) ** 0.5 for d in differences):
            return end
    return len(rows) - 1


def stopping_table(scored: list[tuple[dict, list[dict]]]) -> list[str]:
    """Each output's default rule applied to the checks up to :func:`stopped_at` against the
    whole fit's: how much an early stop would cost, and how many steps it would save."""
    lines = ["A fit stopped once its selection score has not improved (by one standard error) for "
             "`patience` checks, each output kept by its default rule among the checks done: PSNR "
             "difference from the whole fit's choice, mean / worst / best, fits more than 0.1 dB "
             "below it, and the share of the fit's steps run.", "",
             "| output | patience (checks) | fits | PSNR difference | below by > 0.1 dB | steps run |",
             "|---|---|---|---|---|---|"]
    for output, (score, rule) in DEFAULT_RULES.items():
        psnr = OUTPUTS[output][0]
        fits = [rows for fit, rows in scored if output == "denoise" or fit["dataset"] in INTENSITY_MATCHED]
        for patience in STOP_PATIENCE if fits else ():
            stops = [stopped_at(rows, score, patience) for rows in fits]
            difference = np.array([rows[rule(rows[: stop + 1])][psnr] - rows[rule(rows)][psnr] for rows, stop in zip(fits, stops)])
            share = np.mean([rows[stop]["step"] / rows[-1]["step"] for rows, stop in zip(fits, stops)])
            lines.append(f"| `{output}` | {patience} | {len(fits)} | {difference.mean():+.2f} / {difference.min():+.2f} / "
                         f"{difference.max():+.2f} | {int((difference < -0.1).sum())} | {share:.0%} |")
    return lines + [""]


def report(scored: list[tuple[dict, list[dict]]], traces: list[str]) -> list[str]:
    lines = [f"{platform.processor() or platform.machine()}, torch {torch.__version__}; {', '.join(traces)}.", ""]
    for output in OUTPUTS:
        fits = [(fit, rows) for fit, rows in scored if output == "denoise" or fit["dataset"] in INTENSITY_MATCHED]
        if fits:
            lines += fit_table(fits, output) + summary_table(fits, output)
    lines += threshold_table(scored) + stopping_table(scored)
    drift = max(max(abs(r["pair"] / r["traced_pair"] - 1), abs(r["risk"] / r["traced_risk"] - 1)) for _, rows in scored for r in rows)
    return lines + [f"Scores recomputed here differ from the traced ones by at most {drift:.2%} (relative).", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", nargs="+", help="selection_trace.py JSON results")
    parser.add_argument("--weights", nargs="+", help="the folder each run saved its weights in, in order")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summarise", nargs="+", help="rewrite the tables of these results' JSON instead of "
                        "re-scoring: in place for one, into --out.md for several")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.summarise:
        if len(args.summarise) > 1 and not args.out:
            parser.error("several --summarise results need --out")
        saved = [json.loads(Path(path).read_text()) for path in args.summarise]
        lines = report([(fit, fit["rows"]) for result in saved for fit in result["fits"]], [t for result in saved for t in result["traces"]])
        Path(args.out + ".md" if args.out else Path(args.summarise[0]).with_suffix(".md")).write_text("\n".join(lines))
        print("\n".join(lines))
        return 0
    if not (args.trace and args.weights and args.out) or len(args.trace) != len(args.weights):
        parser.error("give --trace, one --weights folder per trace and --out, or --summarise")
    torch.set_num_threads(args.threads)
    scored = []
    for trace, weights in zip(args.trace, args.weights):
        run = json.loads(Path(trace).read_text())
        scored += [(fit, rescore(fit, run["settings"], Path(weights))) for fit in run["fits"]]
    lines = report(scored, args.trace)
    Path(args.out + ".json").write_text(json.dumps({"traces": args.trace, "fits": [
        {"dataset": fit["dataset"], "name": fit["name"], "seed": fit["seed"], "rows": rows} for fit, rows in scored
    ]}, indent=1))
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
