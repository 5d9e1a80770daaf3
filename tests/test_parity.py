"""The faithful mode against the published code's fixtures (../shared/reference)."""
from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from zeroig_plugin import ZeroIG, load_state_dict, read_image
from zeroig_plugin.cli import cli
from zeroig_plugin.networks import ZeroIGNet, published_init


def _chw(array: np.ndarray) -> np.ndarray:
    return array.transpose(2, 0, 1)


def test_seeded_init_matches_the_published_init_exactly(reference_dir):
    published = load_state_dict(reference_dir / "fit_init_state.pt")
    ours = published_init(2).state_dict()
    assert ours.keys() == published.keys()
    for key, value in published.items():
        assert torch.equal(ours[key], value), key


def test_published_checkpoint_inference_matches_fixture_in_float(reference_dir):
    image = read_image(reference_dir / "lol_1_low.png")
    outputs = ZeroIG(mode="faithful", device="cpu", weights=reference_dir / "LOL.pt").infer(image.pixels)
    for name in ("enhance", "denoise"):
        produced = getattr(outputs, name)
        expected = np.load(reference_dir / f"lol_ckpt_{name}.npy")
        assert np.abs(_chw(produced) - expected).max() <= 1e-4, name


def test_published_checkpoint_inference_through_the_cli(reference_dir, tmp_path):
    result = CliRunner().invoke(cli, [
        "enhance", str(reference_dir / "lol_1_low.png"), "--weights", str(reference_dir / "LOL.pt"),
        "--iters", "0", "--mode", "faithful", "--device", "cpu", "-o", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    for name in ("enhance", "denoise"):
        written = np.asarray(Image.open(tmp_path / f"lol_1_low_{name}.png")).astype(int)
        expected = np.rint(np.load(reference_dir / f"lol_ckpt_{name}.npy").transpose(1, 2, 0) * 255)
        assert np.abs(written - expected).max() <= 1, name


def _assert_losses_match(losses: list[float], reference: list[float]) -> None:
    assert len(losses) == len(reference)
    assert abs(losses[0] - reference[0]) <= 1e-4 * reference[0]
    for ours, theirs in zip(losses, reference):
        assert abs(ours - theirs) <= 0.005 * theirs


def test_ten_step_fit_reproduces_the_logged_losses(reference_dir):
    reference = json.loads((reference_dir / "fit_losses.json").read_text())["losses"]
    crop = np.load(reference_dir / "fit_input.npy").transpose(1, 2, 0)
    model = ZeroIG(mode="faithful", device="cpu", weights=reference_dir / "fit_init_state.pt")
    report = model.fit(crop, 10)
    _assert_losses_match(report.losses, reference)
    outputs = model.infer(crop)
    assert np.abs(_chw(outputs.enhance) - np.load(reference_dir / "fit_after10_enhance.npy")).max() < 5e-3
    assert np.abs(_chw(outputs.denoise) - np.load(reference_dir / "fit_after10_denoise.npy")).max() < 5e-3


def test_ten_step_fit_through_the_cli_from_a_lossless_png(reference_dir, tmp_path):
    reference = json.loads((reference_dir / "fit_losses.json").read_text())["losses"]
    crop = np.load(reference_dir / "fit_input.npy").transpose(1, 2, 0)
    as_8bit = np.rint(crop * 255).astype(np.uint8)
    assert np.abs(as_8bit / 255 - crop).max() < 1e-6  # the crop is 8-bit data: PNG is lossless
    Image.fromarray(as_8bit).save(tmp_path / "crop.png")
    result = CliRunner().invoke(cli, [
        "enhance", str(tmp_path / "crop.png"), "--weights", str(reference_dir / "fit_init_state.pt"), "--iters", "10",
        "--loss-log", str(tmp_path / "L.json"), "--device", "cpu", "--mode", "faithful", "-o", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    _assert_losses_match(json.loads((tmp_path / "L.json").read_text()), reference)


def test_saved_weights_have_the_published_keys_and_load_into_published_networks(reference_dir, tmp_path):
    model = ZeroIG(mode="faithful", device="cpu", weights=reference_dir / "LOL.pt")
    model.save(tmp_path / "copy.pt")
    saved = torch.load(tmp_path / "copy.pt", map_location="cpu", weights_only=True)
    published = torch.load(reference_dir / "LOL.pt", map_location="cpu", weights_only=True)
    assert saved.keys() == published.keys()
    assert all(torch.equal(saved[k], published[k]) for k in published)
    ZeroIGNet().load_state_dict(saved)  # strict, as the published loader's model would
