"""benchmarks/selection_rules.py: each rule keeps the check it says it keeps."""
from __future__ import annotations

import numpy as np


def _rows(pair: list[float], pair_spread: list[float], risk: list[float], divergence: list[float]) -> list[dict]:
    pattern = np.random.default_rng(0).standard_normal(64)
    pattern = (pattern - pattern.mean()) / pattern.std(ddof=1)  # a spread s gives a standard error of s / 8
    return [
        {"step": 250 + 50 * i, "pair": p, "pair_blocks": (p + s * pattern).tolist(),
         "risk": r, "risk_blocks": [r] * 64, "divergence": d}
        for i, (p, s, r, d) in enumerate(zip(pair, pair_spread, risk, divergence))
    ]


def test_rules_keep_the_lowest_the_latest_tied_the_latest_undrifted_and_the_smoothest_tied_check(benchmark_script):
    rules = benchmark_script("selection_rules").RULES
    # pair: the second check is lowest, the third within one standard error of it (noisy blocks), the
    # fourth clearly above; risk: the first is lowest and the others clearly above it
    rows = _rows([1.0, 0.9, 0.91, 2.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.5, 1.2, 1.1], [0.3, 0.1, 0.2, 0.05])
    kept = {name.split(" (")[0]: rule(rows) for name, rule in rules.items()}
    assert kept == {
        "pair score, lowest": 1, "pair score, latest within one standard error": 2,
        "pair score, latest without significant drift": 2, "risk, lowest": 0, "risk, one-standard-error rule": 0, "final weights": 3,
    }
    tied_risk = _rows([1.0] * 4, [0.0] * 4, [1.0, 1.0, 1.0, 1.5], [0.3, 0.1, 0.2, 0.05])
    assert rules["risk, one-standard-error rule (now, `linear` alone)"](tied_risk) == 1  # the smoothest of the tied
    # the second check two standard errors above the first: beyond one, within the drift test's 2.13 for three checks
    drifting = _rows([1.0, 1.25, 3.0], [0.0, 1.0, 0.0], [1.0] * 3, [0.1] * 3)
    assert rules["pair score, latest within one standard error"](drifting) == 0
    assert rules["pair score, latest without significant drift (now, `denoise`)"](drifting) == 1


def test_summarise_reports_several_saved_results_without_their_weights(benchmark_script, tmp_path):
    import json

    script = benchmark_script("selection_rules")
    paths = []
    for seed, pair in [(2, [1.0, 1.25, 3.0]), (3, [1.0, 0.9, 0.8])]:
        rows = [{**row, "psnr": 20.0 + i, "ssim": 0.5, "linear_psnr": 0.0, "linear_ssim": 0.0,
                 "traced_pair": row["pair"], "traced_risk": row["risk"]}
                for i, row in enumerate(_rows(pair, [0.0, 1.0, 0.0], [1.0] * 3, [0.1] * 3))]
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps({"traces": [f"trace{seed}.json"], "fits": [
            {"dataset": "lol15-dev", "name": "1", "seed": seed, "rows": rows}]}))
        paths.append(str(path))
    assert script.main(["--summarise", *paths, "--out", str(tmp_path / "both")]) == 0
    report = (tmp_path / "both.md").read_text()
    assert "trace2.json, trace3.json" in report and "Over 2 fits" in report
    # seed 2 keeps its second check (21 dB) by the drift test, its first (20 dB) within one standard error
    assert "| 1, seed 2 | 20.00 / 0.500 (250) | 20.00 / 0.500 (250) | 21.00 / 0.500 (300) |" in report
    assert "| 1 | 21.00 / 0.500 | -1.00 / +0.00 | 1 |" in report  # seed 3 keeps its last check (22 dB) either way


def test_a_fit_stops_once_its_score_has_not_improved_for_patience_checks(benchmark_script):
    script = benchmark_script("selection_rules")
    # the score falls clearly until the third check, then wanders within one standard error of it
    plateau = _rows([3.0, 2.0, 1.0, 1.1, 0.99, 1.05, 1.2, 0.98], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0] * 8, [0.1] * 8)
    assert script.stopped_at(plateau, "pair", 4) == 6  # checks 3 to 6 do not beat check 2's score
    assert script.stopped_at(plateau, "pair", 2) == 4
    falling = _rows([5.0 - 0.5 * i for i in range(8)], [0.0] * 8, [1.0] * 8, [0.1] * 8)
    assert script.stopped_at(falling, "pair", 2) == 7  # never stops: the last check


def test_stopping_table_reports_what_an_early_stop_keeps_against_the_whole_fit(benchmark_script):
    script = benchmark_script("selection_rules")
    # the score levels off from check 2, but the output keeps improving: an early stop costs 2 dB
    rows = [{**row, "psnr": 20.0 + (2.0 if i == 7 else 0.0), "ssim": 0.5}
            for i, row in enumerate(_rows([3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9], [0.0] * 8, [1.0] * 8, [0.1] * 8))]
    table = "\n".join(script.stopping_table([({"dataset": "lol15-dev", "name": "1", "seed": 2}, rows)]))
    assert "| `denoise` | 4 | 1 | -2.00 / -2.00 / -2.00 | 1 | 92% |" in table  # stopped at step 550 of 600
    assert "`linear`" not in table  # not intensity-matched
