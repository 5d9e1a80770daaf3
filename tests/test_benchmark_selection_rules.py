"""benchmarks/selection_rules.py: each rule keeps the check it says it keeps."""
from __future__ import annotations

import numpy as np


def _rows(pair: list[float], pair_spread: list[float], risk: list[float], divergence: list[float]) -> list[dict]:
    pattern = np.random.default_rng(0).standard_normal(64)
    return [
        {"step": 250 + 50 * i, "pair": p, "pair_blocks": (p + s * (pattern - pattern.mean())).tolist(),
         "risk": r, "risk_blocks": [r] * 64, "divergence": d}
        for i, (p, s, r, d) in enumerate(zip(pair, pair_spread, risk, divergence))
    ]


def test_rules_keep_the_lowest_the_latest_tied_and_the_smoothest_tied_check(benchmark_script):
    rules = benchmark_script("selection_rules").RULES
    # pair: the second check is lowest, the third within one standard error of it (noisy blocks), the
    # fourth clearly above; risk: the first is lowest and the others clearly above it
    rows = _rows([1.0, 0.9, 0.91, 2.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.5, 1.2, 1.1], [0.3, 0.1, 0.2, 0.05])
    kept = {name.split(" (")[0]: rule(rows) for name, rule in rules.items()}
    assert kept == {
        "pair score, lowest": 1, "pair score, latest within one standard error": 2,
        "risk, lowest": 0, "risk, one-standard-error rule": 0, "final weights": 3,
    }
    tied_risk = _rows([1.0] * 4, [0.0] * 4, [1.0, 1.0, 1.0, 1.5], [0.3, 0.1, 0.2, 0.05])
    assert rules["risk, one-standard-error rule (now, `linear` alone)"](tied_risk) == 1  # the smoothest of the tied
