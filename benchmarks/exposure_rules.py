"""Can one dark image tell how bright its scene should be? Exposure rules against the references.

No fitting: for each low/normal-light pair, the mean luminance (Rec.601) a rule would aim the
output at, from the low image alone, against the normal-light reference's mean luminance.

- ``mid-grey``: the published rule, 0.5 whatever the image (``--brightness`` default).
- ``highlight key``: scale the image so that its 99th luminance percentile lands at 0.9, as an
  auto-exposure that keeps highlights would: the target is ``0.9 * mean / p99``. It separates a
  high-contrast night scene (dark sky, bright rocket) from an evenly lit room, if anything does.

    python benchmarks/exposure_rules.py                   # LOL dev at 200 px and the held-out photos at 160 px
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from quality import pairs, prepare

REC601 = np.array([0.299, 0.587, 0.114])
RULES = {
    "mid-grey": lambda y: 0.5,
    "highlight key": lambda y: float(0.9 * y.mean() / max(np.percentile(y, 99), 1e-6)),
}


def luminance(image: np.ndarray) -> np.ndarray:
    return image @ REC601 if image.ndim == 3 else image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["lol15-dev:200", "skimage-synthetic:160"],
                        help="DATASET:LONG_SIDE entries (photo datasets: microscopy is intensity-matched anyway)")
    args = parser.parse_args(argv)
    errors: dict[str, list[float]] = {rule: [] for rule in RULES}
    print("| image | reference mean | " + " | ".join(RULES) + " |")
    print("|---|---|" + "---|" * len(RULES))
    for entry in args.datasets:
        dataset, size = entry.split(":")
        try:
            found = pairs(dataset, None, None, lambda array: prepare(array, None, int(size), None))
        except FileNotFoundError:
            print(f"skipped {dataset}: not found (set ZEROIG_SHARED to the shared/ folder)", file=sys.stderr)
            continue
        for name, low, high in found:
            reference = float(luminance(high).mean())
            targets = {rule: aim(luminance(low)) for rule, aim in RULES.items()}
            for rule, target in targets.items():
                errors[rule].append(abs(target - reference))
            print(f"| {dataset}:{name} | {reference:.3f} | " + " | ".join(f"{t:.3f}" for t in targets.values()) + " |")
    print("| mean absolute error | | " + " | ".join(f"{np.mean(e):.3f}" for e in errors.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
