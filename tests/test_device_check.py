"""benchmarks/device_check.sh, the one prepared call for a lent GPU, runs end to end (on the CPU,
tiny): it only ever runs on a machine few sessions get, so drift must show up here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.sh"
PAIRS = {"FMD_R_1", "gigadb_mito-20x-noise1", "w2s_001_0", "w2s_017_1"}


def _run(shared: Path, out: Path, **knobs: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "ZEROIG_SHARED": str(shared), "OUT": str(out), **knobs}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)


def test_device_check_scores_both_modes_on_every_pair_and_archives_the_results(shared_data_dir, tmp_path):
    done = _run(
        shared_data_dir.parent, tmp_path / "out", STEPS="2", EARLY_STEPS="1", CROP="24", LOL_SIZE="32", FIRST_SEEDS="2", LATER_SEEDS="",
        LARGE_SIZES="64x48", LARGE_STEPS="2",
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(tmp_path / "out" / "device_check.tar.gz") as archive:
        archive.extractall(tmp_path / "results", filter="data")
    results = tmp_path / "results"
    assert "tests: exit 0" in (results / "summary.txt").read_text()
    for mode, label in (("headroom", "improved-post-gain, brightness headroom"), ("faithful", "faithful")):
        report = json.loads((results / f"quality_microscopy24_seed2_{mode}.json").read_text())
        assert report["settings"]["device"].startswith("cpu")
        scored = report["results"]["microscopy-dev"][label]
        assert set(scored) == PAIRS
        assert all(set(result["checkpoints"]) == {"2"} for result in scored.values())
        assert all("linear_tv" in result["checkpoints"]["2"] for result in scored.values())  # the front ends' output
    (lol,) = json.loads((results / "quality_lol32_default.json").read_text())["results"]["lol15-dev"].values()
    assert len(lol) == 5 and all("denoise_tv" in result["checkpoints"]["2"] for result in lol.values())  # the photo default's output
    assert "lol: exit 0" in (results / "summary.txt").read_text()
    finishes = json.loads((results / "photo_finish_lol32_2steps.json").read_text())["results"]["lol15-dev"]
    assert "TV of denoise, calibrated (the default)" in finishes and all(len(images) == 5 for images in finishes.values())
    rules = json.loads((results / "finish_calibration_lol32_2steps.json").read_text())["results"]["lol15-dev"]
    assert len(rules) == 5 and all(result["curve"] for result in rules.values())
    split = json.loads((results / "tone_detail_lol32_1_2steps.json").read_text())["results"]
    assert len(split) == 5 and all(list(labels) == ["1", "2"] for labels in split.values())
    assert "lol tone and detail: exit 0" in (results / "summary.txt").read_text()
    assert not list(results.glob("*.npz")), "the fits' outputs stay behind"
    large = json.loads((results / "large_photo_64x48.json").read_text())
    assert large["size"] == [64, 48] and large["steps"] == 2 and large["finite"]
    assert "large photo 64x48: exit 0" in (results / "summary.txt").read_text()
    assert not list(results.glob("quality_microscopy24_seed3_*")), "an empty LATER_SEEDS skips the last part"


def test_device_check_without_the_data_says_how_to_bring_it(tmp_path):
    done = _run(tmp_path / "nowhere", tmp_path / "out")
    assert done.returncode == 2
    assert "make device-data" in done.stderr
    assert (tmp_path / "out" / "device_check.tar.gz").is_file()
