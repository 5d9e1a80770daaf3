"""How TV's strength is chosen for a photo's ``denoise``: the calibration rules against the best strength.

The default finishes ``denoise`` with total variation at a multiple of its noise level chosen by
Noise2Self's J-invariant loss (:func:`zeroig_plugin.classical.tv_denoised`). With one-pixel masks
that loss assumes noise independent between pixels; the noise the networks leave is not
(neighbouring pixels' leftover noise correlates by about 0.2 to 0.6), so a pixel's masked-out
value is partly predicted by its neighbours' noise and the loss favours weak smoothing. The
default therefore calibrates on pixel-shuffled sub-images. How far from the best strength does
each rule put the finishing?

From saved fits (``photo_finish.py --keep-outputs``, ``quality.py --keep-outputs``), for each
photo's ``denoise`` TV is scored against the reference (PSNR, SSIM) at every multiple of
:data:`~zeroig_plugin.classical.STRENGTHS`, and each rule's pick is read off that curve:

- ``Noise2Self on pixel-shuffled sub-images, stride 3 (the default)``:
  :func:`~zeroig_plugin.classical.calibrated_tv` with ``stride=FINISH_STRIDE``, the one-pixel loss
  summed over the sub-images ``image[k::3, k::3]``, whose neighbouring pixels are 3 apart in the
  image, where the leftover noise is less correlated (the pixel-shuffle downsampling of AP-BSN,
  Lee et al., CVPR 2022); the weight chosen there is applied to the whole image. It cannot tell
  correlated noise from fine texture that sub-sampling aliases. Strides 2 and 4 beside it (each
  rule lowers its stride where the sub-images would be under ``MIN_SUB_IMAGE_SIDE``, as the
  default does);
- ``Noise2Self, one-pixel masks (the earlier default)``: the same on the image itself;
- ``Noise2Self, 3x3-block masks``: :func:`block_masked_losses`, every 3x3 block of a grid filled
  with the mean of the ring of pixels around it, the loss read at the blocks' centres, so the
  neighbours that share the centre's noise are masked too (J-invariance for noise correlated over
  one pixel, as Noise2Self allows for any known correlation);
- fixed multiples of the noise level (no calibration);
- ``best by SSIM against the reference``: not a rule (it reads the reference), the bound.

Each row gives the mean PSNR / SSIM and the worst change of one image against ``denoise`` as
fitted; the strengths picked are listed per image.

    python benchmarks/finish_calibration.py /tmp/lol600_300.npz --out results/finish_calibration_lol600_300steps
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_finish import tv  # noqa: E402
from quality import load_outputs  # noqa: E402

from zeroig_plugin.classical import FINISH_STRIDE  # noqa: E402

FIXED_MULTIPLES = (0.5, 1.0, 2.0)
BLOCK, BLOCK_STRIDE, BLOCK_OFFSETS = 3, 8, ((0, 0), (4, 4))
OTHER_STRIDES = (2, 4)
DEFAULT_RULE = f"Noise2Self on pixel-shuffled sub-images, stride {FINISH_STRIDE} (the default)"
ONE_PIXEL_RULE = "Noise2Self, one-pixel masks (the earlier default)"
BOUND = "best by SSIM against the reference (a bound)"


def block_masked_losses(image: np.ndarray, weights: list[float], block: int = BLOCK, stride: int = BLOCK_STRIDE,
                        offsets=BLOCK_OFFSETS) -> np.ndarray:
    """Noise2Self's self-supervised loss of TV at each of ``weights`` on ``image`` ``(H, W, C)``,
    with ``block x block`` masks: on a grid of ``stride`` (each offset of ``offsets`` one grid) the
    blocks are replaced by the mean of the ring of pixels just outside them, TV runs on that, and
    the mean square difference to ``image`` at the blocks' centres is summed over the grids;
    ``(len(weights),)``."""
    from scipy import ndimage

    half = block // 2
    ring = np.zeros((block + 2, block + 2), np.float32)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = 1
    ring /= ring.sum()
    ring_mean = np.stack([ndimage.convolve(image[..., c], ring, mode="mirror") for c in range(image.shape[-1])], -1)
    losses = np.zeros(len(weights))
    for top, left in offsets:
        rows = np.arange(top + half, image.shape[0] - half, stride)
        columns = np.arange(left + half, image.shape[1] - half, stride)
        centres = np.ix_(rows, columns)
        masked = image.copy()
        for dy in range(-half, half + 1):
            for dx in range(-half, half + 1):
                masked[np.ix_(rows + dy, columns + dx)] = ring_mean[centres]
        for index, weight in enumerate(weights):
            losses[index] += np.mean((tv(masked, weight)[centres] - image[centres]) ** 2)
    return losses


def picks(denoise: np.ndarray, level: float) -> dict[str, int]:
    """Each rule's choice of TV's weight for ``denoise`` ``(H, W, 3)``, whose noise level is
    ``level`` (> 0), as an index into ``STRENGTHS``, the multiples of ``level``."""
    from zeroig_plugin.classical import STRENGTHS, calibrated_tv

    def calibration(stride: int) -> int:
        return int(np.argmin(np.abs(STRENGTHS - calibrated_tv(denoise, stride=stride)[1])))

    chosen = {DEFAULT_RULE: calibration(FINISH_STRIDE), ONE_PIXEL_RULE: calibration(1),
              "Noise2Self, 3x3-block masks": int(np.argmin(block_masked_losses(denoise, [level * m for m in STRENGTHS])))}
    for stride in OTHER_STRIDES:
        chosen[f"Noise2Self on pixel-shuffled sub-images, stride {stride}"] = calibration(stride)
    for multiple in FIXED_MULTIPLES:
        chosen[f"{multiple:g}x the noise level"] = int(np.argmin(np.abs(STRENGTHS - multiple)))
    return chosen


def study(saved: dict[str, np.ndarray]) -> dict:
    """``{dataset: {image: {"as_fitted": [psnr, ssim], "curve": [[psnr, ssim] per strength], "picks": {rule: index}}}}``."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from zeroig_plugin.classical import STRENGTHS, noise_level

    def scores(image: np.ndarray, reference: np.ndarray) -> list[float]:
        image = np.clip(image, 0, 1)
        return [float(peak_signal_noise_ratio(reference, image, data_range=1)),
                float(structural_similarity(reference, image, channel_axis=-1, data_range=1))]

    results: dict = {}
    for key in saved:
        dataset, name, array = key.rsplit("/", 2)
        if array != "denoise":
            continue
        denoise, reference = saved[key].astype(np.float32), saved[f"{dataset}/{name}/high"]
        level = noise_level(denoise)
        curve, chosen = [], {}  # an output without measurable noise: TV is not applied
        if level > 0:
            curve = [scores(tv(denoise, level * m), reference) for m in STRENGTHS]
            chosen = {**picks(denoise, level), BOUND: int(np.argmax([ssim for _, ssim in curve]))}
        results.setdefault(dataset, {})[name] = {"as_fitted": scores(denoise, reference), "curve": curve, "picks": chosen}
        print(f"{dataset} {name}: {chosen}", file=sys.stderr, flush=True)
    return results


def table(results: dict) -> str:
    """Markdown: per dataset, each rule's mean PSNR / SSIM, worst change against ``denoise`` as
    fitted, and the multiples it picked per image."""
    from zeroig_plugin.classical import STRENGTHS

    lines = []
    for dataset, images in results.items():
        names = list(images)
        rules = list(next(iter(images.values()))["picks"])
        lines += [f"### {dataset}", "", "| rule | PSNR / SSIM (mean) | worst change of one image (dB / SSIM) | multiples of "
                  f"the noise level picked ({', '.join(names)}) |", "|---|---|---|---|"]
        fitted = np.array([images[n]["as_fitted"] for n in names])
        lines.append(f"| denoise (as fitted) | {fitted[:, 0].mean():.2f} / {fitted[:, 1].mean():.3f} | | |")
        for rule in rules:
            chosen = [images[n]["picks"].get(rule) for n in names]
            finished = np.array([images[n]["curve"][i] if i is not None else images[n]["as_fitted"] for n, i in zip(names, chosen)])
            change = finished - fitted
            multiples = ", ".join("-" if i is None else f"{STRENGTHS[i]:.2g}" for i in chosen)
            lines.append(f"| {rule} | {finished[:, 0].mean():.2f} / {finished[:, 1].mean():.3f} | "
                         f"{change[:, 0].min():+.2f} / {change[:, 1].min():+.3f} | {multiples} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("saved", nargs="+", metavar="NPZ", help="outputs kept by photo_finish.py --keep-outputs")
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    import skimage

    loaded = [load_outputs(path) for path in args.saved]
    settings = {"saved": args.saved, "fitted": [fit for fit, _ in loaded], "scikit-image": skimage.__version__}
    results = study({key: value for _, saved in loaded for key, value in saved.items()})
    markdown = table(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    Path(f"{args.out}.md").write_text(f"# How TV's strength is chosen for a photo's denoise\n\n- {json.dumps(settings)}\n\n{markdown}")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
