"""zeroig_plugin.demo: the built-in example, enhanced and scored as `zeroig enhance` would do a photo."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from zeroig_plugin.cli import cli


@pytest.mark.parametrize("mode, recorded, finished", [("default", "improved", True), ("faithful", "faithful", False)])
def test_the_demo_writes_its_images_and_scores_with_the_photo_defaults(tmp_path, mode, recorded, finished):
    result = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "--iters", "1", "--device", "cpu", "--mode", mode])
    assert result.exit_code == 0, result.output
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["denoise.png", "enhance.png", "low.png", "reference.png", "side_by_side.png"]
    scores = [line.split() for line in result.output.splitlines() if line.split()[:1] in (["low"], ["enhance"], ["denoise"])]
    assert [row[0] for row in scores] == ["low", "enhance", "denoise"]
    with Image.open(tmp_path / "denoise.png") as image:
        record = json.loads(image.text["Description"])
    assert record["finished_with_tv"] is finished  # `zeroig enhance`'s photo defaults, faithful as published
    assert record["mode"] == recorded and record["steps"] == 1
