"""Can one dark image tell how bright its scene should be? Exposure rules against the references.

No fitting: for each low/normal-light pair, the mean luminance (Rec.601) a rule would aim the
output at, from the low image alone, against the normal-light reference's mean luminance.

- ``mid-grey``: the published rule, 0.5 whatever the image (``--brightness`` default).
- ``highlight key``: scale the image so that its 99th luminance percentile lands at 0.9, as an
  auto-exposure that keeps highlights would: the target is ``0.9 * mean / p99``. It separates a
  high-contrast night scene (dark sky, bright rocket) from an evenly lit room, if anything does.
- ``log-average 0.18``: Reinhard et al.'s photographic key (SIGGRAPH 2002): the linear (sRGB-decoded)
  luminance scaled so that its log-average is 0.18, re-encoded.
- ``automatic key``: the same with the key chosen from the image, ``0.18 * 4 ** f``, ``f`` where the
  log-average sits between the 1st and 99th percentiles (Reinhard, "Parameter estimation for
  photographic tone reproduction", 2002): a dark-heavy histogram asks for a low key.
- ``max entropy`` / ``max well-exposedness``: the gain (1 to 40) whose clipped result has the most
  histogram entropy (on a 5x5 box mean, so that noise does not count as content) / the highest mean
  of Mertens et al.'s well-exposedness weight ``exp(-(v - 0.5)^2 / 0.08)`` (exposure fusion, 2007);
  classic auto-exposure criteria.

Beside them, not a rule a user has: ``capture ratio, known`` aims at the low image's mean times the
median reference / low ratio of the *other* pairs of the same dataset (leave one out). Both sets
were made at a nearly fixed ratio (LOL's pairs at 5-8x, the synthetic photos at exactly 10x), so
their reference levels follow from the capture protocol, which one dark image does not carry.

    python benchmarks/exposure_rules.py                   # LOL dev at 200 px and the held-out photos at 160 px
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy.ndimage import uniform_filter

from quality import pairs, prepare

REC601 = np.array([0.299, 0.587, 0.114])
GAINS = np.geomspace(1.0, 40.0, 200)


def _srgb_expand(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def _srgb_compress(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def photographic_key(y: np.ndarray, key: float | None = None) -> float:
    """Mean of the re-encoded luminance once the linear log-average is ``key`` (automatic when None)."""
    linear = _srgb_expand(np.clip(y, 0.0, 1.0))
    eps = 1e-4
    log_average = np.exp(np.mean(np.log(eps + linear)))
    if key is None:
        low, high = np.log2(np.percentile(linear, [1, 99]) + eps)
        key = 0.18 * 4 ** ((2 * np.log2(log_average) - low - high) / (high - low))
    return float(_srgb_compress(linear * key / log_average).mean())


def _histogram_entropy(v: np.ndarray) -> float:
    frequencies = np.bincount((v * 255).astype(int).ravel(), minlength=256) / v.size
    frequencies = frequencies[frequencies > 0]
    return float(-(frequencies * np.log(frequencies)).sum())


def _well_exposedness(v: np.ndarray) -> float:
    return float(np.exp(-((v - 0.5) ** 2) / (2 * 0.2**2)).mean())


def best_gain_level(y: np.ndarray, criterion, judged_on: np.ndarray | None = None) -> float:
    """Mean of ``clip(g * y)`` for the gain ``g`` that maximises ``criterion`` on ``judged_on`` (default y)."""
    judged_on = y if judged_on is None else judged_on
    gain = max(GAINS, key=lambda g: criterion(np.clip(g * judged_on, 0.0, 1.0)))
    return float(np.clip(gain * y, 0.0, 1.0).mean())


RULES = {
    "mid-grey": lambda y: 0.5,
    "highlight key": lambda y: float(0.9 * y.mean() / max(np.percentile(y, 99), 1e-6)),
    "log-average 0.18": lambda y: photographic_key(y, 0.18),
    "automatic key": photographic_key,
    "max entropy": lambda y: best_gain_level(y, _histogram_entropy, uniform_filter(y, 5)),
    "max well-exposedness": lambda y: best_gain_level(y, _well_exposedness),
}


def luminance(image: np.ndarray) -> np.ndarray:
    return image @ REC601 if image.ndim == 3 else image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["lol15-dev:200", "skimage-synthetic:160"],
                        help="DATASET:LONG_SIDE entries (photo datasets: microscopy is intensity-matched anyway)")
    args = parser.parse_args(argv)
    oracle = "capture ratio, known (not zero-shot)"
    columns = [*RULES, oracle]
    errors: dict[str, list[float]] = {rule: [] for rule in columns}
    print("| image | reference mean | reference / low | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for entry in args.datasets:
        dataset, size = entry.split(":")
        try:
            found = pairs(dataset, None, None, lambda array: prepare(array, None, int(size), None))
        except FileNotFoundError:
            print(f"skipped {dataset}: not found (set ZEROIG_SHARED to the shared/ folder)", file=sys.stderr)
            continue
        lows = [luminance(low) for _, low, _ in found]
        references = [float(luminance(high).mean()) for _, _, high in found]
        ratios = [reference / float(low.mean()) for low, reference in zip(lows, references)]
        dataset_errors: dict[str, list[float]] = {rule: [] for rule in columns}
        for index, ((name, _, _), low, reference) in enumerate(zip(found, lows, references)):
            targets = {rule: aim(low) for rule, aim in RULES.items()}
            others = ratios[:index] + ratios[index + 1:]
            targets[oracle] = min(float(np.median(others)) * float(low.mean()), 1.0) if others else float("nan")
            for rule, target in targets.items():
                dataset_errors[rule].append(abs(target - reference))
            print(f"| {dataset}:{name} | {reference:.3f} | {ratios[index]:.2f} | "
                  + " | ".join(f"{t:.3f}" for t in targets.values()) + " |")
        print(f"| {dataset}: mean absolute error | | | "
              + " | ".join(f"{np.nanmean(e):.3f}" for e in dataset_errors.values()) + " |")
        for rule, values in dataset_errors.items():
            errors[rule] += values
    print("| all: mean absolute error | | | " + " | ".join(f"{np.nanmean(e):.3f}" for e in errors.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
