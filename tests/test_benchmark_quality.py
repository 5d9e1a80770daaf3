"""benchmarks/quality.py writes its results where asked: a run's files are not lost to another's."""
from __future__ import annotations

import json


def test_out_names_with_dots_are_kept_whole_and_the_partial_file_is_removed(tmp_path, benchmark_script):
    """Two runs named ``..._b0.5`` and ``..._b0.25`` once both wrote ``..._b0.json``."""
    quality = benchmark_script("quality")
    for brightness in ("0.5", "0.25"):
        assert quality.main([
            "--datasets", "skimage-synthetic", "--images", "1", "--size", "24", "--steps", "2",
            "--modes", "faithful", "--brightness", brightness, "--threads", "1",
            "--out", str(tmp_path / f"run_b{brightness}"),
        ]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run_b0.25.json", "run_b0.25.md", "run_b0.5.json", "run_b0.5.md",
    ]
    for brightness in ("0.5", "0.25"):
        report = json.loads((tmp_path / f"run_b{brightness}.json").read_text())
        assert report["settings"]["brightness"] == float(brightness)
        (result,) = report["results"]["skimage-synthetic"].values()
        (scored,) = result.values()
        assert scored["brightness"] == float(brightness)
        assert set(scored["checkpoints"]["2"]) == {"enhance", "denoise", "linear"}
