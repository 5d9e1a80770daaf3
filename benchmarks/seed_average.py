"""Does averaging fits from several seeds beat one fit? (Not adopted: BENCHMARKS.md, "Averaging fits".)

Each image is fitted once per seed in one mode; the final ``denoise`` and ``linear`` outputs are
scored alone and averaged over the seeds (pixel mean), with :func:`quality.score` (microscopy
intensity-matched). Writes ``<out>.json`` and prints a table.

    python benchmarks/seed_average.py --dataset lol15-dev --size 96 --out results/seed_average_lol96_1000steps
    python benchmarks/seed_average.py --dataset microscopy-dev --crop 128 --out results/seed_average_microscopy128_1000steps
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from quality import DATASETS, INTENSITY_MATCHED, pairs, prepare, score

KINDS = ("denoise", "linear")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--mode", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--size", type=int, help="downscale to this long side")
    parser.add_argument("--crop", type=int, help="then centre-crop to this square side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from zeroig_plugin import ZeroIG

    match = args.dataset in INTENSITY_MATCHED
    try:
        found = pairs(args.dataset, None, None, lambda array: prepare(array, None, args.size, args.crop))
    except FileNotFoundError:
        print(f"skipped {args.dataset}: not found (set ZEROIG_SHARED to the shared/ folder)", file=sys.stderr)
        return 0
    report = {"settings": {**vars(args), "torch": torch.__version__}, "images": {}}
    print(f"| image | output | {' | '.join(f'seed {s}' for s in args.seeds)} | average of the fits |")
    print("|---|---|" + "---|" * (len(args.seeds) + 1))
    for name, low, high in found:
        outputs = []
        for seed in args.seeds:
            model = ZeroIG(mode=args.mode, device="cpu", seed=seed)
            model.fit(low, args.steps)
            outputs.append(model.infer(low))
        report["images"][name] = {}
        for kind in KINDS:
            single = [score(getattr(o, kind), high, match) for o in outputs]
            averaged = score(np.mean([getattr(o, kind) for o in outputs], axis=0), high, match)
            report["images"][name][kind] = {"seeds": single, "average": averaged}
            cells = " | ".join(f"{s['psnr']:.2f}" for s in [*single, averaged])
            print(f"| {name} | {kind} | {cells} |", flush=True)
    with open(f"{args.out}.json", "w") as handle:
        json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
