"""The README's Python examples run as written, on tiny files and with a few steps."""
from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
STEP_COUNTS = re.compile(r"\b(steps|first_iters|iters_per_frame)=\d+")


def _python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _dark_frames(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [(rng.random((48, 64, 3)) * 40).astype(np.uint8) for _ in range(count)]


@pytest.fixture
def example_files(tmp_path, monkeypatch):
    """``dark.png``, ``next.png`` and a five-frame ``night.mp4`` in the working directory."""
    rng = np.random.default_rng(0)
    for name, frame in zip(("dark.png", "next.png"), _dark_frames(2, rng)):
        Image.fromarray(frame).save(tmp_path / name)
    with av.open(str(tmp_path / "night.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in _dark_frames(5, rng):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_the_scripting_and_video_examples():
    examples = _python_examples()
    assert len(examples) == 2
    assert "ZeroIG(" in examples[0] and "WarmStartEnhancer(" in examples[1]


@pytest.mark.parametrize(
    "which, outputs",
    [(0, ["bright.png", "fitted.pt"]), (1, ["bright-0001.png", "bright-0002.png", "bright-0003.png"])],
    ids=["images", "video"],
)
def test_a_readme_example_runs_and_writes_what_it_says(example_files, which, outputs):
    code = STEP_COUNTS.sub(lambda match: f"{match.group(1)}=2", _python_examples()[which])
    exec(compile(code, f"README.md python example {which + 1}", "exec"), {})
    assert all((example_files / name).stat().st_size > 0 for name in outputs)
    dark_level = np.asarray(Image.open(example_files / "dark.png")).mean()  # the frames are as dark
    assert np.asarray(Image.open(example_files / outputs[0])).mean() > 2 * dark_level
