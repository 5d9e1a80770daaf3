"""Quality benchmark: PSNR / SSIM of ``enhance``, ``denoise`` and ``linear`` per mode, at fit checkpoints.

Data (read from ``../shared/data`` or ``$ZEROIG_SHARED/data``; skipped with a message if absent):
- ``lol15-dev``: real low/normal-light photo pairs; outputs are compared with the normal-light
  image as they are (PSNR, SSIM with ``channel_axis`` and ``data_range=1``) and, for PSNR, also
  scaled to the reference's mean gray level (:func:`at_reference_mean`), plus the colour cast
  (mean |per-channel mean - their average|, 8-bit levels) and the mean brightness (8-bit) of the
  output against the reference's.
- ``microscopy-dev``: gray fluorescence, low-SNR vs an average of many exposures; outputs are
  intensity-matched first (least-squares gain and offset of the output onto the reference).
  ``linear`` is also scored averaged half and half with the input denoised by calibrated total
  variation (``linear_tv``; what ``ZeroIG(average_with_tv=True)``, the microscopy front ends'
  default, infers), the TV result computed once per image.
- ``skimage-synthetic``: held-out photos, never looked at while the improved mode was designed:
  the natural-light photos bundled with scikit-image (``SYNTHETIC_PHOTOS``; 'coffee' is the demo's,
  so it is left out), resized first, then darkened at that size by the demo's sensor model
  (:func:`zeroig_plugin.demo.simulate_low_light`: 10 % exposure unless ``--exposure``, Poisson
  shot and Gaussian read noise, seeded per photo); scored like ``lol15-dev``. Needs no shared data.
- ``skimage-camera``: the same photos darkened as a camera records a short exposure
  (:func:`zeroig_plugin.demo.simulate_dark_capture`: the light they encode at 2 % exposure,
  shot and read noise in electrons, sRGB-encoded, 8-bit), so that, as in LOL's real pairs, the dark
  image is not the reference scaled down: its shadows sit in sRGB's toe. Needs no shared data.

On the photo datasets ``denoise`` is also scored after calibrated total variation of itself
(``denoise_tv``: what ``ZeroIG(finish_with_tv=True)`` infers),
and ``linear`` brought to the mode's brightness by one gain in linear light, then finished the same
way (``global_tv``: the default's global tone read from the same fit; for the default, its
``denoise_tv``, and for the variant ``improved-global-tone``, whose ``denoise_tv`` is the local tone
of the illumination map, the default's readout of the same fit); and the same after ``linear`` is
averaged half and half with calibrated TV of the input (``global_average_tv``: what ``zeroig
enhance`` writes for a photo, ``ZeroIG(average_with_tv=True, finish_with_tv=True)``).

Each mode is fitted once per image and seed (the published init, seed 2 unless ``--seeds``) and
scored at 250 / 500 / 1000 / 2000 steps (those up to ``--steps``, plus ``--steps`` itself). A
single fit's final PSNR moves by tenths of a dB with the seed or even the summation order, so
comparisons between modes on few images should use several seeds: with more than one, each
mode-seed gets its own rows and a table of per-image means (and ranges) over the seeds follows.
Writes ``<out>.json`` and ``<out>.md``.

    python benchmarks/quality.py --scale 0.25 --steps 1000 --modes faithful improved
    python benchmarks/quality.py --datasets microscopy-dev --crop 128 --steps 500
    python benchmarks/quality.py --datasets microscopy-dev --crop 64 --seeds 2 3 4 --modes faithful improved
    python benchmarks/quality.py --datasets lol15-dev --size 96 --steps 1000 --modes improved --ensembles 1 8
    python benchmarks/quality.py --datasets skimage-synthetic --size 160 --steps 1000 --modes faithful improved
    python benchmarks/quality.py --merge a.json b.json --out results/all   # one table from several runs
    python benchmarks/quality.py --datasets lol15-dev --modes default --keep-outputs /tmp/lol.npz \
        --out results/lol600   # then photo_finish.py --rescore /tmp/lol.npz, finish_calibration.py /tmp/lol.npz
    python benchmarks/quality.py --datasets microscopy-dev --crop 512 --modes improved-post-gain \
        --brightness headroom --selection select_after=none   # napari's default, read out at the final weights

Ablation variants from ``zeroig_plugin.improved.ablation_recipes`` are accepted as modes too.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ZEROIG_SHARED", REPO.parent / "shared"))
CHECKPOINTS = (250, 500, 1000, 2000)
DATASETS = ("lol15-dev", "microscopy-dev", "skimage-synthetic", "skimage-camera")
SYNTHETIC_DATASETS = ("skimage-synthetic", "skimage-camera")  # made here from scikit-image's photos: no shared data
INTENSITY_MATCHED = {"microscopy-dev"}
SYNTHETIC_PHOTOS = ("astronaut", "chelsea", "rocket", "immunohistochemistry")
SYNTHETIC_EXPOSURE = 0.1  # the demo's
SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}
FIT_SETTINGS = "fit_settings"  # kept outputs' entry with the fit's settings, as JSON (``--keep-outputs``)


def load(path: Path) -> np.ndarray:
    """An image file as float32 in ``[0, 1]``: ``(H, W)`` gray or ``(H, W, 3)`` RGB."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float32) / 65535.0
        else:
            image = image if image.mode in ("L", "RGB") else image.convert("L" if image.mode in ("LA", "1") else "RGB")
            array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 3:
        used = [c for c in range(3) if array[..., c].any()]
        same = np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])
        if same or len(used) <= 1:  # gray stored as RGB, or a one-colour palette (a red-ramp microscopy PNG)
            array = array.max(-1)
    return np.ascontiguousarray(array)


def prepare(array: np.ndarray, scale: float | None, size: int | None, crop: int | None) -> np.ndarray:
    """Downscale (area average) by ``scale`` or to a long side of ``size``, then centre-crop ``crop``."""
    from PIL import Image

    h, w = array.shape[:2]
    factor = scale if scale else (min(1.0, size / max(h, w)) if size else 1.0)
    if factor != 1.0:
        new = (max(16, round(w * factor)), max(16, round(h * factor)))
        channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[2])]
        resized = [np.asarray(Image.fromarray(c, mode="F").resize(new, Image.BOX)) for c in channels]
        array = resized[0] if array.ndim == 2 else np.stack(resized, -1)
    if crop:
        h, w = array.shape[:2]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        array = array[top : top + crop, left : left + crop]
    return np.ascontiguousarray(array.clip(0, 1), dtype=np.float32)


def intensity_match(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Least-squares ``gain * output + offset`` onto ``reference``, clipped to ``[0, 1]``."""
    x = output.reshape(-1).astype(np.float64)
    design = np.stack([x, np.ones_like(x)], 1)
    (gain, offset), *_ = np.linalg.lstsq(design, reference.reshape(-1).astype(np.float64), rcond=None)
    return np.clip(gain * output + offset, 0, 1).astype(np.float32)


def colour_cast(image: np.ndarray) -> float:
    """Mean absolute difference between the per-channel means and their average, 8-bit levels."""
    if image.ndim == 2:
        return 0.0
    means = image.reshape(-1, image.shape[-1]).mean(0) * 255
    return float(np.abs(means - means.mean()).mean())


def at_reference_mean(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``output`` scaled so that its mean gray level is the reference's, clipped to ``[0, 1]``
    (the "GT mean" protocol of low-light papers: exposure, which one dark image leaves open, set
    aside, so that what is left is restoration)."""
    from skimage.color import rgb2gray

    gray = (lambda x: rgb2gray(x) if x.ndim == 3 else x)  # noqa: E731
    return np.clip(output * (gray(reference).mean() / max(gray(output).mean(), 1e-6)), 0, 1).astype(np.float32)


def score(output: np.ndarray, reference: np.ndarray, match: bool) -> dict:
    """PSNR and SSIM against ``reference`` (after :func:`intensity_match` when ``match``, else as
    the output is, and also at the reference's mean: ``psnr_at_mean``), colour cast, brightness."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    compared = intensity_match(output, reference) if match else output
    channel_axis = -1 if compared.ndim == 3 else None
    scores = {
        "psnr": float(peak_signal_noise_ratio(reference, compared, data_range=1)),
        "ssim": float(structural_similarity(reference, compared, channel_axis=channel_axis, data_range=1)),
        "cast": colour_cast(output),
        "brightness": float(output.mean() * 255),
    }
    if not match:
        scores["psnr_at_mean"] = float(peak_signal_noise_ratio(reference, at_reference_mean(output, reference), data_range=1))
    return scores


def register_mode(mode: str) -> str:
    """``mode``, with ablation variants registered as modes (in this process only)."""
    from zeroig_plugin.improved import ablation_recipes
    from zeroig_plugin.recipes import available_modes, register_recipe

    variants = ablation_recipes()
    if mode in variants and mode not in available_modes():
        register_recipe(variants[mode])
    return mode


# Recipe fields read while fitting, so a run may set them on top of a mode (``--selection``).
SELECTION_SETTINGS = {"select_after": lambda v: None if v == "none" else int(v), "select_every": int, "selection_domain": str}


def selection_setting(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    if name not in SELECTION_SETTINGS:
        raise argparse.ArgumentTypeError(f"{name!r}: choose from {', '.join(SELECTION_SETTINGS)}")
    return name, SELECTION_SETTINGS[name](value)


def model_for(
    mode: str, device: str = "cpu", fit_crop: int | None = None, seed: int = 2, brightness: float | str | None = None,
    acceleration: str = "auto", selection: dict | None = None,
):
    """The model a run fits: ``mode`` (an ablation variant too) with ``brightness`` and the recipe's
    checkpoint-selection settings overridden by ``selection`` (:data:`SELECTION_SETTINGS`)."""
    from dataclasses import replace

    from zeroig_plugin import ZeroIG

    model = ZeroIG(mode=register_mode(mode), device=device, fit_crop=fit_crop, seed=seed, brightness=brightness,
                   acceleration=acceleration)
    model.recipe = replace(model.recipe, **(selection or {}))
    return model


def run_one(
    mode: str, low: np.ndarray, high: np.ndarray, checkpoints: list[int], match: bool, device: str, fit_crop: int | None,
    seed: int = 2, ensembles: tuple[int | None, ...] = (None,), brightness: float | str | None = None,
    acceleration: str = "auto", selection: dict | None = None, final_too: bool = False, kept: dict | None = None,
) -> dict:
    """One fit, scored at each checkpoint with each inference ensemble size (``None``: the
    mode's); a result per ``(ensemble size, readout)``, the readout ``"selected"`` (what the model
    infers with) or, with ``final_too`` and a model that selects checkpoints, also ``"final"`` (the
    weights the fit ended with: the same fit, read out as without selection). ``selection``
    overrides the recipe's checkpoint-selection settings (:data:`SELECTION_SETTINGS`). ``kept``,
    where given, receives the first readout's ``enhance``, ``denoise`` and ``linear`` at the last checkpoint."""
    from zeroig_plugin.classical import FINISH_STRIDE, calibrated_tv

    model = model_for(mode, device, fit_crop, seed, brightness, acceleration, selection)
    tv = calibrated_tv(low)[0]
    readouts = ("selected", "final") if final_too and model.checkpoint_selection else ("selected",)
    results: dict = {(ensemble, readout): {} for ensemble in ensembles for readout in readouts}
    done, fit_seconds = 0, 0.0
    rate_changes: list[list] = []  # [first step, learning rate], for recipes whose rate changes

    def note_rate(step: int, steps: int, loss: float | None) -> None:
        rate = model.optimizer.param_groups[0]["lr"]
        if not rate_changes or rate_changes[-1][1] != rate:
            rate_changes.append([done + step, rate])

    for checkpoint in checkpoints:
        start = time.perf_counter()
        model.fit(low, checkpoint - done, progress=note_rate)
        fit_seconds += time.perf_counter() - start
        done = checkpoint
        for ensemble, readout in results:
            with final_weights(model) if readout == "final" else contextlib.nullcontext():
                outputs = model.infer(low, ensemble=ensemble)
            if kept is not None and checkpoint == checkpoints[-1] and (ensemble, readout) == next(iter(results)):
                kept.update(enhance=outputs.enhance, denoise=outputs.denoise, linear=outputs.linear)
            results[ensemble, readout][str(checkpoint)] = {
                "enhance": score(outputs.enhance, high, match),
                "denoise": score(outputs.denoise, high, match),
                "linear": score(outputs.linear, high, match),
                **({"linear_tv": score((outputs.linear + tv) / 2, high, match)} if match
                   else {"denoise_tv": score(calibrated_tv(outputs.denoise, stride=FINISH_STRIDE)[0], high, match),
                         **{key: score(calibrated_tv(brightened(toned, model.recipe.brightness, True), stride=FINISH_STRIDE)[0],
                                       high, match)
                            for key, toned in (("global_tv", outputs.linear), ("global_average_tv", (outputs.linear + tv) / 2))}}),
            }
        print(f"  {mode} step {checkpoint}: denoise {results[ensembles[0], 'selected'][str(checkpoint)]['denoise']['psnr']:.2f} dB "
              f"({fit_seconds / done:.2f} s per step)", file=sys.stderr, flush=True)
    common = {
        "seconds_per_step": fit_seconds / max(1, done), "reference_brightness": float(high.mean() * 255),
        "learning_rates": rate_changes, "acceleration_notes": model.acceleration_notes,
        "brightness": model.recipe.brightness,  # the value used: "headroom" is resolved from the image
    }
    return {key: {"checkpoints": scored, **common} for key, scored in results.items()}


def brightened(image: np.ndarray, brightness: float, linear_light: bool = False, max_gain: float | None = None) -> np.ndarray:
    """``image`` ``(H, W, 3)`` or ``(H, W)`` (gray counted as RGB) brought to mean luminance
    ``brightness`` by one gain through the clip, on its values or, with ``linear_light``, on the
    light they encode (:func:`zeroig_plugin.improved.exposure_gain`, at most ``max_gain``; default
    the engine's cap). With ``linear_light`` it is how the default's global tone infers ``denoise``
    from ``linear`` (before the finishing)."""
    import torch

    from zeroig_plugin.improved import MAX_OUTPUT_GAIN, apply_gain, exposure_gain

    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    gain = exposure_gain(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None], brightness,
                         max_gain=max_gain or MAX_OUTPUT_GAIN, iterations=48, linear_light=linear_light)
    return apply_gain(torch.from_numpy(np.ascontiguousarray(image)), gain[0, 0], linear_light).numpy().astype(np.float32)


@contextlib.contextmanager
def final_weights(model):
    """Within this block ``model`` infers with the weights its fit ended with (averaged, as a fit
    without checkpoint selection infers), not the checkpoint its selection keeps."""
    kept, model._best = model._best, None  # the engine infers with _best where selection kept one
    try:
        yield
    finally:
        model._best = kept


def pairs(
    dataset: str, limit: int | None, names: list[str] | None, resize, exposure: float = SYNTHETIC_EXPOSURE
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, low, high)`` per image of ``dataset``, each passed through ``resize`` (synthetic
    pairs are darkened after it, so their noise is at the size fitted, to ``exposure``)."""
    if dataset in SYNTHETIC_DATASETS:
        from skimage import data

        from zeroig_plugin.demo import simulate_dark_capture, simulate_low_light

        found = []
        for seed, name in enumerate(SYNTHETIC_PHOTOS):
            if not names or name in names:
                high = resize(getattr(data, name)().astype(np.float32) / 255)
                low = (simulate_low_light(high, exposure=exposure, seed=seed) if dataset == "skimage-synthetic"
                       else simulate_dark_capture(high, seed=seed))
                found.append((name, low, high))
        return found[:limit] if limit else found
    root = SHARED / "data" / dataset
    found = []
    for low in sorted((root / "low").iterdir()):
        high = root / "high" / low.name
        if low.suffix.lower() in SUFFIXES and high.is_file() and (not names or low.stem in names):
            found.append((low.stem, resize(load(low)), resize(load(high))))
    return found[:limit] if limit else found


def last_scores(result: dict) -> dict:
    """One image's result's scores at its last checkpoint, by output."""
    return list(result["checkpoints"].values())[-1]


def _figure(value: float, decimals: int) -> str:
    return "-" if np.isnan(value) else f"{value:.{decimals}f}"


def _final_cell(result: dict) -> str:
    last = last_scores(result)
    cell = f"{last['denoise']['psnr']:.2f} / {last['denoise']['ssim']:.3f}"
    others = [f"{label} {last[output]['psnr']:.2f} / {last[output]['ssim']:.3f}"
              for output, label in (("denoise_tv", "finished by TV"), ("global_tv", "global tone"),
                                    ("global_average_tv", "global tone of linear averaged with TV"), ("linear", "linear"),
                                    ("linear_tv", "with TV"))
              if output in last]
    return cell + (f" ({', '.join(others)})" if others else "")


def table(report: dict) -> str:
    """Markdown: one row per dataset, mode and checkpoint, means over images, then per-image finals."""
    lines = []
    for dataset, modes in report["results"].items():
        match = dataset in INTENSITY_MATCHED
        lines += [
            f"### {dataset}" + (" (outputs intensity-matched to the reference)" if match else ""),
            "",
            "| mode | steps | enhance PSNR | enhance SSIM | denoise PSNR | denoise SSIM | denoise PSNR at the reference's mean "
            "| colour cast (8-bit) | brightness (8-bit) / ref | best-to-final drop (dB) | linear PSNR | linear SSIM "
            "| linear with TV PSNR | linear with TV SSIM | denoise finished by TV PSNR | denoise finished by TV SSIM "
            "| global tone PSNR | global tone SSIM | global tone, averaged with TV PSNR | global tone, averaged with TV SSIM |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for mode, images in modes.items():
            # Merged runs may stop at different checkpoints: mean rows over the ones every image has,
            # each image's drop to its own last checkpoint.
            steps = [s for s in next(iter(images.values()))["checkpoints"] if all(s in r["checkpoints"] for r in images.values())]
            reference = np.mean([r["reference_brightness"] for r in images.values()])
            drops = [
                max(c["denoise"]["psnr"] for c in r["checkpoints"].values()) - last_scores(r)["denoise"]["psnr"]
                for r in images.values()
            ]
            for step in steps:
                get = lambda part, key: np.mean([r["checkpoints"][step].get(part, {}).get(key, np.nan) for r in images.values()])  # noqa: E731
                at_mean = "-" if match or np.isnan(get("denoise", "psnr_at_mean")) else f"{get('denoise', 'psnr_at_mean'):.2f}"
                drop = f"{np.mean(drops):.2f} (max {max(drops):.2f})" if step == steps[-1] else ""
                lines.append(
                    f"| {mode} | {step} | {get('enhance', 'psnr'):.2f} | {get('enhance', 'ssim'):.3f} | "
                    f"{get('denoise', 'psnr'):.2f} | {get('denoise', 'ssim'):.3f} | {at_mean} | {get('denoise', 'cast'):.1f} | "
                    f"{get('denoise', 'brightness'):.0f} / {reference:.0f} | {drop} | "
                    f"{_figure(get('linear', 'psnr'), 2)} | {_figure(get('linear', 'ssim'), 3)} | "
                    f"{_figure(get('linear_tv', 'psnr'), 2)} | {_figure(get('linear_tv', 'ssim'), 3)} | "
                    f"{_figure(get('denoise_tv', 'psnr'), 2)} | {_figure(get('denoise_tv', 'ssim'), 3)} | "
                    f"{_figure(get('global_tv', 'psnr'), 2)} | {_figure(get('global_tv', 'ssim'), 3)} | "
                    f"{_figure(get('global_average_tv', 'psnr'), 2)} | {_figure(get('global_average_tv', 'ssim'), 3)} |"
                )
        lines += ["", "Per image, denoise PSNR / SSIM at the last checkpoint (then denoise finished by TV's, the global tone's, with "
                  "linear averaged with TV, linear's and linear with TV's, where scored):", ""]
        names = list(next(iter(modes.values())))
        lines += ["| mode | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for mode, images in modes.items():
            cells = [_final_cell(images[n]) if n in images else "-" for n in names]
            lines.append(f"| {mode} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _seed_summary(modes, names)
    return "\n".join(lines)


def _seed_summary(modes: dict, names: list[str]) -> list[str]:
    """Per image, mean and range over seeds of each mode's final denoise PSNR (rows labelled
    ``<mode>, seed <n>``); nothing when no mode ran with more than one seed."""
    groups: dict[str, list[dict]] = {}
    for label, images in modes.items():
        seeded = re.fullmatch(r"(.*), seed \d+", label)
        if seeded:
            groups.setdefault(seeded.group(1), []).append(images)
    groups = {mode: runs for mode, runs in groups.items() if len(runs) > 1}
    if not groups:
        return []
    lines = [
        "Per image, final denoise PSNR over seeds: mean (min to max):",
        "",
        "| mode | seeds | " + " | ".join(names) + " | mean |",
        "|---|---|" + "---|" * (len(names) + 1),
    ]
    for mode, runs in groups.items():
        cells, means = [], []
        for name in names:
            finals = [last_scores(r[name])["denoise"]["psnr"] for r in runs if name in r]
            cells.append(f"{np.mean(finals):.2f} ({min(finals):.2f} to {max(finals):.2f})" if finals else "-")
            if finals:
                means.append(np.mean(finals))
        mean = f"{np.mean(means):.2f}" if len(means) == len(names) else "-"
        lines.append(f"| {mode} | {len(runs)} | " + " | ".join(cells) + f" | {mean} |")
    return [*lines, ""]


def merge(paths: list[str]) -> dict:
    merged: dict = {"settings": [], "results": {}}
    for path in paths:
        part = json.loads(Path(path).read_text())
        settings = part["settings"]
        merged["settings"].extend(settings if isinstance(settings, list) else [settings])  # merged files merge again
        for dataset, modes in part["results"].items():
            for mode, images in modes.items():
                merged["results"].setdefault(dataset, {}).setdefault(mode, {}).update(images)
    return merged


def write(report: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=1))
    settings = report["settings"] if isinstance(report["settings"], list) else [report["settings"]]
    header = "\n".join(f"- {json.dumps(s)}" for s in settings)
    Path(f"{out}.md").write_text(f"# Quality benchmark\n\nRuns:\n{header}\n\n{table(report)}\n")
    print(table(report))


def save_outputs(saved: dict[str, np.ndarray], settings: dict, path: str) -> None:
    """``saved`` (keys ``dataset/name/array``) and the run's ``settings`` (under :data:`FIT_SETTINGS`),
    written whole under a temporary name and renamed, so that a run stopped part way leaves the
    images done so far."""
    partial = Path(f"{path}.partial.npz")
    np.savez_compressed(partial, **saved, **{FIT_SETTINGS: json.dumps(settings)})
    partial.replace(path)


def load_outputs(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The run's settings and the arrays (keys ``dataset/name/array``) that ``--keep-outputs`` saved."""
    saved = dict(np.load(path).items())
    return json.loads(str(saved.pop(FIT_SETTINGS))), saved


def main(argv: list[str] | None = None) -> int:
    from zeroig_plugin.cli import ACCELERATIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", default=["faithful", "default"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--steps", type=int, default=2000, help="last checkpoint (default 2000)")
    parser.add_argument("--scale", type=float, default=None, help="downscale factor (area average), e.g. 0.25")
    parser.add_argument("--size", type=int, default=None, help="downscale to this long side (ignored with --scale)")
    parser.add_argument("--crop", type=int, default=None, help="then centre-crop to this square side")
    parser.add_argument(
        "--fit-crop", type=int, default=None,
        help="fit on random native crops of this side, as ZeroIG(fit_crop=N) does (two per step); "
        "e.g. 85 on 200 px LOL is crop mode's 256 at 600x400; inference stays whole-image",
    )
    parser.add_argument("--images", type=int, default=None, help="at most this many images per dataset")
    parser.add_argument("--names", nargs="+", default=None, help="only these image stems")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2], help="fit each mode once per seed (default: 2, the published)")
    parser.add_argument(
        "--ensembles", nargs="+", type=int, choices=(1, 2, 4, 8), default=None,
        help="score each fit with each of these inference ensemble sizes (same fit, several readouts; "
        "default: the mode's own)",
    )
    parser.add_argument(
        "--exposure", type=float, default=SYNTHETIC_EXPOSURE,
        help="skimage-synthetic: the simulated exposure of the encoded values (default 0.1, the demo's; 0.02 is "
        "five times darker); skimage-camera's is fixed (2 %% of the light)",
    )
    parser.add_argument(
        "--brightness", type=lambda value: value if value == "headroom" else float(value), default=None,
        help="the exposure rule's target mean luminance, or 'headroom' (from each image's highlights), as "
        "ZeroIG(brightness=...) (default: the mode's, 0.5)",
    )
    parser.add_argument(
        "--selection", nargs="+", type=selection_setting, default=[], metavar="FIELD=VALUE",
        help="override the mode's checkpoint selection, e.g. select_after=none (the final weights) or "
        "selection_domain=input",
    )
    parser.add_argument(
        "--final-too", action="store_true",
        help="where a mode selects checkpoints, also score each fit's final weights (same fit, a second row)",
    )
    parser.add_argument(
        "--keep-outputs", metavar="NPZ", default=None,
        help="save each photo pair's low, high and last enhance, denoise and linear (the first mode, seed and ensemble's) "
        "as photo_finish.py --keep-outputs does, for photo_finish.py --rescore and finish_calibration.py",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--acceleration", default="auto", choices=ACCELERATIONS,
        help="as ZeroIG(acceleration=...); max runs the networks in bf16 (not bit-comparable) where the "
        "device has bf16 kernels (each result's acceleration_notes says what fell back)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality"), help="writes OUT.json and OUT.md")
    parser.add_argument("--merge", nargs="+", default=None, help="merge these JSON results into one table")
    args = parser.parse_args(argv)

    if args.merge:
        write(merge(args.merge), args.out)
        return 0
    datasets = [d for d in args.datasets if d in SYNTHETIC_DATASETS or (SHARED / "data" / d).is_dir()]
    for missing in sorted(set(args.datasets) - set(datasets)):
        print(f"skipped {missing}: not found in {SHARED / 'data'} (set ZEROIG_SHARED to the shared/ folder)")
    import torch

    from zeroig_plugin import describe_device
    from zeroig_plugin.recipes import DEFAULT_MODE

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints = sorted({c for c in CHECKPOINTS if c < args.steps} | {args.steps})
    modes = [register_mode(DEFAULT_MODE if m == "default" else m) for m in dict.fromkeys(args.modes)]
    seeds = list(dict.fromkeys(args.seeds))
    ensembles = tuple(dict.fromkeys(args.ensembles)) if args.ensembles else (None,)

    def label(mode: str, seed: int, ensemble: int | None, readout: str = "selected") -> str:
        parts = [mode] + [f"fit crop {args.fit_crop}"] * bool(args.fit_crop) + [f"ensemble {ensemble}"] * bool(ensemble)
        parts += ["final weights"] * (readout == "final")
        parts += [f"acceleration {args.acceleration}"] * (args.acceleration != "auto")
        if args.brightness is not None:
            parts.append(f"brightness {args.brightness}")
        parts += [f"{name} {value}" for name, value in args.selection]
        return ", ".join(parts + [f"seed {seed}"] * (len(seeds) > 1))

    runs = [(mode, seed) for mode in modes for seed in seeds]
    settings = {
        "device": describe_device(args.device), "torch": torch.__version__, "python": platform.python_version(),
        "steps": checkpoints, "scale": args.scale, "size": args.size, "crop": args.crop, "fit_crop": args.fit_crop,
        "brightness": args.brightness, "acceleration": args.acceleration, "selection": dict(args.selection), "synthetic_exposure": args.exposure, "final_too": args.final_too, "modes": [label(mode, seed, ensemble) for mode, seed in runs for ensemble in ensembles], "seeds": seeds,
    }
    report = {"settings": settings, "results": {}}
    partial = Path(f"{args.out}.partial.json")  # what is done so far, should the run be stopped
    resize = lambda array: prepare(array, args.scale, args.size, args.crop)  # noqa: E731
    saved: dict[str, np.ndarray] = {}
    for dataset in datasets:
        for name, low, high in pairs(dataset, args.images, args.names, resize, args.exposure):
            for mode, seed in runs:
                start = time.perf_counter()
                kept = {} if args.keep_outputs and dataset not in INTENSITY_MATCHED and (mode, seed) == runs[0] else None
                scored = run_one(mode, low, high, checkpoints, dataset in INTENSITY_MATCHED, args.device, args.fit_crop, seed, ensembles,
                                 args.brightness, args.acceleration, dict(args.selection), args.final_too, kept)
                if kept:
                    saved.update({f"{dataset}/{name}/{key}": np.asarray(array, np.float32)
                                  for key, array in {"low": low, "high": high, **kept}.items()})
                    save_outputs(saved, {**settings, "mode": label(mode, seed, ensembles[0])}, args.keep_outputs)
                for (ensemble, readout), result in scored.items():
                    report["results"].setdefault(dataset, {}).setdefault(label(mode, seed, ensemble, readout), {})[name] = result
                    final, finished = last_scores(result)["denoise"], last_scores(result).get("denoise_tv")
                    print(f"{dataset} {name} {low.shape} {label(mode, seed, ensemble, readout)}: denoise {final['psnr']:.2f} dB / "
                          f"{final['ssim']:.3f}" + (f", finished by TV {finished['psnr']:.2f} / {finished['ssim']:.3f}" if finished else "")
                          + f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps(report, indent=1))
    write(report, args.out)
    partial.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
