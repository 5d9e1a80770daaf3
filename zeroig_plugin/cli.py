"""The ``zeroig`` command line: one group whose subcommands share the core's fitting engine.

Heavy modules (torch, the video pipeline) are imported inside the commands so ``zeroig --help``
answers at once.
"""
from __future__ import annotations

import json
import os
import sys
import time
from importlib import import_module
from pathlib import Path

import click

# Subcommands that live in other packages, loaded only when named (or listed by --help).
LAZY_COMMANDS = {"video": ("video.cli", "video_command")}
OUTPUT_KINDS = ("enhance", "denoise")
STACK_LATER_STEPS = 100  # default steps for each TIFF-stack plane after the first (warm-started)
LARGE_FOR_CPU = 1024 * 1024  # pixels; above this a whole-image CPU step takes tens of seconds (BENCHMARKS.md)
MAX_BRIGHTNESS = 0.8  # objective.MAX_BRIGHTNESS, literal so that --help needs no torch (a test keeps them equal)
HEADROOM_BRIGHTNESS = "headroom"  # improved.HEADROOM_BRIGHTNESS, literal for the same reason
ACCELERATIONS = ("auto", "exact", "off", "max")  # acceleration.PRESETS, literal for the same reason
# --for: the defaults each kind of image gives --output, --brightness, --exposure-gain,
# --average-with-tv and --finish-with-tv (an option given explicitly wins). Microscopy's are the
# napari plugin's defaults (a test keeps them equal), measured on the microscopy pairs:
# BENCHMARKS.md, "Microscopy at full size, 2000 steps, one machine" and "The fit averaged with a
# classical denoiser"; photos' finishing pass: "The photo's denoise finished by calibrated TV", and
# their average with TV before the global tone: "The global tone, the default since this session".
IMAGE_KINDS = {
    "photos": {"output": "both", "brightness": None, "exposure_gain": None, "average_with_tv": True, "finish_with_tv": True},
    "microscopy": {"output": "linear", "brightness": HEADROOM_BRIGHTNESS, "exposure_gain": True, "average_with_tv": True,
                   "finish_with_tv": False},
}
BRIGHTNESS_HELP = (
    "Mean luminance (0-0.8) of the outputs (an image already brighter keeps its level). Default: 0.5, "
    "mid-grey, the published rule's target "
    "(headroom --for microscopy). One dark image cannot tell a night scene from a dim room: lower it "
    "(e.g. 0.25) for scenes that should stay dark, raise it for more light. 'headroom': from the image, so "
    "that its highlights are not clipped (at most 0.5; for microscopy, whose display levels are a setting)."
)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, attribute = LAZY_COMMANDS[name]
            return getattr(import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="zeroig", prog_name="zeroig")
def cli() -> None:
    """Zero-shot low-light enhancement and denoising (ZERO-IG, CVPR 2024).

    No training data: three small networks are fitted to each image by self-supervised losses,
    then give two outputs: ENHANCE (brightened) and DENOISE (brightened and denoised), and a
    third, LINEAR (denoised at the input's own intensities, for microscopy).

    \b
    Try it:   zeroig demo
    Images:   zeroig enhance dark.png more/ -o results/
    Video:    zeroig video night.mp4 bright.mp4
    """


class _FitCrop(click.ParamType):
    """``--fit-crop``: a crop side of at least 16, ``auto`` or ``off`` (``None``: whole-image steps)."""

    name = "fit_crop"

    def convert(self, value, param, ctx):
        if value in ("auto", None) or isinstance(value, int):
            return value
        if value == "off":
            return None
        try:
            side = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a crop side, auto or off", param, ctx)
        if side < 16:
            self.fail(f"a crop side must be at least 16, got {side}", param, ctx)
        return side


class _Brightness(click.ParamType):
    """``--brightness``: a mean luminance in ``(0, MAX_BRIGHTNESS]``, or ``headroom``."""

    name = "brightness"

    def convert(self, value, param, ctx):
        if value == HEADROOM_BRIGHTNESS or isinstance(value, float):
            return value
        try:
            brightness = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or {HEADROOM_BRIGHTNESS!r}", param, ctx)
        if not 0 < brightness <= MAX_BRIGHTNESS:
            self.fail(f"{brightness} is not in (0, {MAX_BRIGHTNESS}]", param, ctx)
        return brightness


def _fail(message: str) -> None:
    click.secho(f"zeroig: error: {message}", fg="red", err=True)


def _expand_inputs(inputs: tuple[Path, ...]) -> tuple[list[Path], list[str]]:
    """Files as given, folders as their image files (sorted, not recursive); problems as messages."""
    from .imageio import FORMAT_NAMES, IMAGE_SUFFIXES

    files, problems = [], []
    for item in inputs:
        if item.is_dir():
            try:
                found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            except OSError as error:
                problems.append(f"{item}: {error.strerror or error}")
                continue
            if not found:
                problems.append(f"{item}: folder holds no {FORMAT_NAMES} files")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        elif item.exists():
            problems.append(f"{item}: not a regular file (a pipe or a device is not read)")
        else:
            problems.append(f"{item}: no such file or folder")
    return files, problems


def _border_note(model, pixels) -> str:
    """Where the fit left an image's flat borders (letterbox bars, zero fill) as they were, what
    it enhanced instead; empty when it enhanced the whole image."""
    box = model.content_box(pixels)
    if box.covers(*pixels.shape[:2]):
        return ""
    return f"; flat borders left as they are, the {box.width}x{box.height} picture at x {box.left}, y {box.top} enhanced"


def _no_data_note(missing) -> str:
    """How many values a float image marks as no data (NaN, infinities), from their mask
    (``LoadedImage.missing``, ``LoadedStack.missing``); empty where there are none."""
    if missing is None:
        return ""
    return f"; {int(missing.sum())} NaN or infinite values (no data) fitted as their nearest data and written back as NaN"


def _per_input_path(template: str | None, stem: str, option: str, many: bool) -> Path | None:
    if template is None:
        return None
    if many and "{stem}" not in template:
        raise click.BadParameter("with several inputs, put {stem} in the path (e.g. 'weights/{stem}.pt')", param_hint=option)
    return Path(template.replace("{stem}", stem))


def _files_of(path: Path, output_dir: Path, kinds: tuple[str, ...], loss_log: str | None, save_weights: str | None,
              many: bool) -> tuple[dict[str, Path], Path | None, Path | None]:
    """The files one input gives: its outputs by kind, its loss log and its weights (``None`` where
    not asked for). Raises click.UsageError where two of them would be the same file."""
    from .imageio import is_tiff

    outputs = {kind: output_dir / _output_name(path, kind, is_tiff(path)) for kind in kinds}
    loss_path = _per_input_path(loss_log, path.stem, "--loss-log", many)
    weights_path = _per_input_path(save_weights, path.stem, "--save-weights", many)
    named = {f"the {kind} output": target for kind, target in outputs.items()}
    named.update({option: target for option, target in (("--loss-log", loss_path), ("--save-weights", weights_path))
                  if target is not None})
    owner: dict[Path, str] = {}
    for label, target in named.items():
        key = target.resolve()
        if key in owner:
            raise click.UsageError(f"{owner[key]} and {label} would both be {target} (for {path.name})")
        owner[key] = label
    return outputs, loss_path, weights_path


def _clashes_between_inputs(files_of: dict) -> list[str]:
    """One note for each input whose files an earlier input also writes (``x.png`` and ``x.jpg``):
    said before any fit, since it is enhanced only if that earlier input fails."""
    first_owner: dict[Path, Path] = {}
    notes = []
    for path, (outputs, *extras) in files_of.items():
        targets = [*outputs.values(), *(extra for extra in extras if extra is not None)]
        earlier = next((first_owner[t.resolve()] for t in targets if t.resolve() in first_owner), None)
        if earlier is not None:
            notes.append(f"{path} writes the same files as {earlier}: it is enhanced only if {earlier} fails")
        for target in targets:
            first_owner.setdefault(target.resolve(), path)
    return notes


def _make_parent_folders(paths) -> None:
    """Create the folders the loss logs and weights go to, before any fitting."""
    for folder in sorted({path.parent for path in paths if path is not None}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise click.ClickException(f"cannot create folder {folder}: {error.strerror or error}") from None


def _distinct_files(files: list[Path]) -> list[Path]:
    """``files`` without repeats of one file (the same path given twice, or also through its folder)."""
    seen: set[Path] = set()
    distinct = []
    for path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            distinct.append(path)
    return distinct


def _write_text_atomically(path: Path, text: str) -> None:
    from .checkpoint import atomic_write_path

    temporary = atomic_write_path(path)
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class _StepBar:
    """tqdm over fitting steps (or inference passes), showing the loss when the engine reports it."""

    def __init__(self, total: int | None, label: str, unit: str = "step"):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=label, unit=unit, dynamic_ncols=True, leave=False, disable=None)

    def __call__(self, done: int, total: int, loss: float | None = None) -> None:
        self._bar.total = total
        self._bar.update(done - self._bar.n)
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self) -> None:
        self._bar.close()


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for OUTDIR/{stem}_enhance.png and {stem}_denoise.png, or {stem}_linear.png (.tif for TIFF "
                   "input; created if needed).")
@click.option("--iters", default=2000, show_default=True, type=click.IntRange(min=0),
              help="Fitting steps per image. 0 with --weights is inference only (the published test script).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Start from this checkpoint (published .pt files load) instead of the seeded init.")
@click.option("--save-weights", metavar="PATH", help="Save the fitted weights; use {stem} in PATH for several inputs.")
@click.option("--mode", default="default", show_default=True,
              help="Fitting recipe: 'default' (= 'improved', recommended), 'crop' (the improved fit on two random "
                   "256x256 crops per step) or 'faithful' (the published method, exact). See `zeroig modes`.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--seed", default=2, show_default=True, type=int, help="Seed of the network init (2 as published).")
@click.option("--for", "image_kind", default="photos", show_default=True, type=click.Choice(list(IMAGE_KINDS)),
              help="What the images are; sets the defaults of --output, --brightness, --exposure-gain, "
                   "--average-with-tv and --finish-with-tv. photos: both outputs at mid-grey, the mode's exposure "
                   "gain, denoise from the fit averaged with TV and finished by TV. microscopy (the "
                   "napari plugin's defaults): --output linear --brightness headroom --exposure-gain "
                   "--average-with-tv, which denoised the fluorescence microscopy pairs better than the published "
                   "method (BENCHMARKS.md).")
@click.option("--output", "output", type=click.Choice(["enhance", "denoise", "both", "linear"]),
              help="Which results to write: enhance, denoise or both; linear: denoised at the input's own "
                   "intensities, not brightened (proportional to the input's below the brightened image's "
                   "saturation; for quantitative images such as microscopy; {stem}_linear.png; the fit then keeps "
                   "the weights with the lowest estimated error of linear). Default: both; linear --for microscopy.")
@click.option("--loss-log", metavar="FILE", help="Write the per-step losses (before each step) as a JSON list; {stem} for several inputs.")
@click.option("--acceleration", default="auto", show_default=True, type=click.Choice(ACCELERATIONS),
              help="auto: on CUDA whole-step CUDA graphs and TF32 convolutions (PyTorch's default; on CPU plain "
                   "float32); exact: the same in full float32 (about half the speed); max: + bf16 networks and "
                   "torch.compile (not bit-exact); off: plain eager float32. CPU-unavailable parts fall back.")
@click.option("--fit-crop", default="auto", show_default=True, type=_FitCrop(), metavar="N|auto|off",
              help="Fit on random NxN native-resolution crops, two per step (cost and memory stop growing with "
                   "the image); the whole image is still inferred. auto: whole-image steps, except for images "
                   "whose whole-image step would take over 80% of the GPU's memory (about 6.5 KiB per pixel, "
                   "12.5 GiB at 1080p) or half of the host's (8.5 KiB per pixel on a CPU), which are fitted on "
                   "the largest crops that fit; off: whole-image steps whatever the size.")
@click.option("--tile", type=click.IntRange(min=64), help="Infer in tiles of this size to bound memory (results are identical).")
@click.option("--ensemble", type=click.Choice(["1", "2", "4", "8"]),
              help="Average the inference over this many flips and transposes of the image (geometric "
                   "self-ensemble: +0.1-0.3 dB on the LOL photos measured; N inference passes, small next to "
                   "the fit). Default: the mode's, 8 for the improved modes, 1 for faithful.")
@click.option("--brightness", type=_Brightness(), metavar="B|headroom", help=BRIGHTNESS_HELP)
@click.option("--exposure-gain/--no-exposure-gain", default=None,
              help="Aim the fit at 0.7 of the brightness and bring the denoised image up to it by one gain on the "
                   "light the sRGB values encode, as a longer exposure would (the improved modes' default, a global "
                   "tone: photos come out at the brightness, with fewer clipped pixels), or let the fit's exposure "
                   "rule alone set the level (the published way). A TIFF stack's planes share one gain per channel "
                   "(one tone curve: a dim plane stays dimmer than a bright one). Default: the mode's (on --for microscopy too, "
                   "where it denoised the microscopy pairs better and left linear level; off in mode faithful).")
@click.option("--average-with-tv/--no-average-with-tv", default=None,
              help="Average the linear output half and half with the input denoised by total variation, its "
                   "weight chosen on the image by Noise2Self's loss (seconds): two denoisers whose errors differ "
                   "(+0.2 to +2.3 dB on three of the four microscopy pairs measured, 0.07 dB less on the fourth); "
                   "with the exposure gain, denoise is brought up from the average (photos: +0.06 dB and +0.005 SSIM on "
                   "LOL, +0.2 dB and +0.02-0.04 SSIM on two fresh sets). Default: on, except for --mode faithful.")
@click.option("--finish-with-tv/--no-finish-with-tv", default=None,
              help="Pass the denoise output through total variation whose strength is chosen on that output by "
                   "Noise2Self's loss, read on its pixel-shuffled sub-images (the noise the networks leave is "
                   "correlated between neighbours; 0.3 s for 600x400 on a CPU): it takes out that noise, most "
                   "at full size (LOL photos at 600x400, 300 steps: SSIM +0.14); an output with little noise left "
                   "is barely changed. "
                   "Default: on for photos in the improved modes; off --for microscopy and in faithful.")
@click.option("--iters-per-plane", type=click.IntRange(min=0), metavar="N",
              help="TIFF stacks: steps for each plane after the first, continuing from the previous plane's "
                   f"fit. Default: {STACK_LATER_STEPS} (or --iters, if fewer).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (otherwise an existing output is an error and is kept).")
def enhance(inputs, output_dir, iters, weights, save_weights, mode, device, seed, image_kind, output, loss_log,
            acceleration, fit_crop, tile, ensemble, brightness, exposure_gain, average_with_tv, finish_with_tv,
            iters_per_plane, overwrite) -> None:
    """Brighten and denoise images: each is fitted on its own, then inferred.

    INPUT is an image (PNG, JPEG, TIFF, BMP, WebP; 8/16-bit; gray, RGB or RGBA) or a folder of them.
    Outputs keep the input's bit depth (16-bit PNG for 16-bit input), gray stays gray; alpha, the
    ICC colour profile and a photo's EXIF (orientation made upright) are passed through. A TIFF
    gives TIFFs ({stem}_denoise.tif, ...) in its dtype (float stays float, on its own scale) with
    its pixel size. Exit status: 0 all done, 1 some input failed, 2 usage error, 130 or 143
    interrupted by Ctrl-C or SIGTERM (every file written is complete).

    A TIFF of several planes (z, time, channels) gives TIFF stacks of the same layout: each
    channel's first plane is fitted for --iters steps and every later plane for --iters-per-plane,
    starting from the previous plane's weights.

    Flat borders (letterbox bars, the zero fill around a registered image) are not fitted and are
    written out as they came in, in every mode but faithful.

    \b
    Examples:
      zeroig enhance dark.png -o out/                     # 2000 steps, the default mode
      zeroig enhance photos/ -o out/ --iters 500 --output denoise
      zeroig enhance night.png -o out/ --brightness 0.25  # a night scene that should stay dark
      zeroig enhance x.png -o out/ --weights LOL.pt --iters 0   # published checkpoint, inference only
      zeroig enhance cells.tif -o out/ --for microscopy    # {stem}_linear.tif, at the input's intensities
      zeroig enhance timelapse.tif -o out/ --for microscopy --iters-per-plane 50  # a stack, plane by plane
    """
    from .checkpoint import load_state_dict, network_from_state_dict
    from .errors import ZeroIGError
    from .imageio import read_image, read_stack, tiff_stack_axes, write_image, write_stack, write_tiff
    from .interrupts import sigterm_as_interrupt
    from .provenance import processing_record
    from .recipes import get_recipe

    if iters == 0 and weights is None:
        raise click.UsageError("--iters 0 means inference only and needs --weights")
    try:
        recipe = get_recipe(mode)
    except ZeroIGError as error:
        raise click.BadParameter(str(error), param_hint="--mode") from None
    may_be_microscopy = image_kind == "photos" and output is None and brightness is None and exposure_gain is None
    kind_defaults = IMAGE_KINDS[image_kind]
    output = output or kind_defaults["output"]
    if exposure_gain is None:  # None: the mode's own; faithful stays the published method unless asked
        exposure_gain = kind_defaults["exposure_gain"] and recipe.name != "faithful"
    if average_with_tv is None:  # faithful stays the published method unless asked
        average_with_tv = kind_defaults["average_with_tv"] and recipe.name != "faithful"
    if finish_with_tv is None:
        finish_with_tv = kind_defaults["finish_with_tv"] and recipe.name != "faithful"
    if iters == 0 and brightness is not None and recipe.with_exposure_gain(exposure_gain).fit_brightness_ratio is None:
        raise click.UsageError(f"in mode {mode!r} only the fit sets the brightness, and --iters 0 fits nothing")
    if brightness is None and iters and recipe.name != "faithful":  # faithful stays the published method unless asked
        brightness = kind_defaults["brightness"]
    state = None
    if weights is not None:
        try:
            state = load_state_dict(weights)
            network_from_state_dict(state, source=str(weights))
        except ZeroIGError as error:
            raise click.BadParameter(str(error), param_hint="--weights") from None
    from .engine import ZeroIG, describe_device, resolve_device
    from .sizing import fit_crop_side, memory_budget, whole_image_fit_bytes

    try:
        device_name = describe_device(device)
    except ZeroIGError as error:
        raise click.BadParameter(str(error), param_hint="--device") from None

    torch_device = resolve_device(device)

    def say_how_it_fits(name: str, shape: tuple[int, int]) -> None:
        """Before fitting an image of ``shape``: say that it is fitted on crops when its size chose
        that, or that a whole-image fit of it will be slow on a CPU."""
        if not iters:
            return
        crop_size = fit_crop if isinstance(fit_crop, int) else recipe.crop_size
        crop = fit_crop_side(crop_size, fit_crop == "auto", *shape, torch_device)
        size = f"{name} is {shape[1]}x{shape[0]}"
        if crop is not None and crop_size is None:
            need, allowed = whole_image_fit_bytes(*shape, torch_device) / 2**30, memory_budget(torch_device) / 2**30
            message = (f"{size}: each step fits two random {crop}x{crop} crops, as a whole-image step would take "
                       f"about {need:.1f} GiB, over the {allowed:.1f} GiB a fit may take on {device_name} "
                       "(--fit-crop off fits it whole)")
        elif crop is None and torch_device.type == "cpu" and shape[0] * shape[1] > LARGE_FOR_CPU:
            message = f"{size}; whole-image fitting on a CPU takes long per step: --fit-crop 512 keeps the step cost fixed"
        else:
            return
        click.echo(f"zeroig: note: {message}", err=True)

    files, problems = _expand_inputs(inputs)
    files = _distinct_files(files)
    many = len(files) > 1
    kinds = OUTPUT_KINDS if output == "both" else (output,)
    files_of = {path: _files_of(path, output_dir, kinds, loss_log, save_weights, many) for path in files}
    for problem in problems:
        _fail(problem)
    for note in _clashes_between_inputs(files_of):
        click.echo(f"zeroig: note: {note}", err=True)
    _make_parent_folders(extra for _, *extras in files_of.values() for extra in extras)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(f"cannot create output folder {output_dir}: {error.strerror or error}") from None
    if not os.access(output_dir, os.W_OK):
        raise click.ClickException(f"output folder {output_dir} is not writable")

    input_paths = {p.resolve() for p in files}
    claimed: dict[Path, Path] = {}
    failures = len(problems)
    done = 0
    acceleration_noted = False
    click.echo(f"zeroig: {len(files)} image(s), for {image_kind}, mode {mode}, {iters} steps each, on {device_name}", err=True)
    with sigterm_as_interrupt() as stop:
        try:
            for path in files:
                targets, loss_path, weights_path = files_of[path]
                written = [*targets.values(), *(extra for extra in (loss_path, weights_path) if extra is not None)]
                try:
                    stack_axes = tiff_stack_axes(path)
                    for target in written:
                        if target.resolve() in input_paths:
                            raise ZeroIGError(f"{path}: output {target} would overwrite an input")
                        if target.resolve() in claimed:
                            owner = claimed[target.resolve()]
                            raise ZeroIGError(f"{path}: output {target} is also the output of {owner} (same name)")
                        if target.is_dir():
                            raise ZeroIGError(f"{path}: output {target} is a folder")
                        if target.exists() and not overwrite:
                            raise ZeroIGError(f"{path}: output {target} exists (use --overwrite to replace it)")
                    for target in written:
                        claimed[target.resolve()] = path
                    stack = read_stack(path) if stack_axes else None
                    image = None if stack else read_image(path)
                    if may_be_microscopy and _looks_like_microscopy(stack, image):
                        click.echo(f"zeroig: note: {path.name} is a grey TIFF; if it is microscopy, --for microscopy "
                                   "writes it denoised at its own intensities, highlights unclipped", err=True)
                        may_be_microscopy = False
                    started = time.perf_counter()

                    def new_model() -> ZeroIG:
                        nonlocal acceleration_noted
                        model = ZeroIG(mode=mode, device=device, seed=seed, weights=state, acceleration=acceleration,
                                       fit_crop=fit_crop, brightness=brightness, exposure_gain=exposure_gain,
                                       select_for=output if output == "linear" else None, average_with_tv=average_with_tv,
                                       finish_with_tv=finish_with_tv)
                        if model.acceleration_notes and not acceleration_noted:
                            notes = "; ".join(model.acceleration_notes)
                            click.echo(f"zeroig: note: --acceleration {acceleration}: {notes}", err=True)
                            acceleration_noted = True
                        return model

                    inference = {"tile": tile, "ensemble": ensemble and int(ensemble)}

                    def record(kind: str, **details) -> dict:
                        return processing_record(model, kind, ensemble=inference["ensemble"],
                                                 weights=weights, input=path.name, **details)
                    if stack:
                        say_how_it_fits(path.name, stack.plane_shape)
                        later = min(iters, STACK_LATER_STEPS) if iters_per_plane is None else iters_per_plane
                        results, losses, models, stack_gains = _enhance_stack(
                            stack, new_model, mode, device, iters, later, kinds, inference)
                        model = models[-1]
                        per_channel = {"brightness": [each.recipe.brightness for each in models]} if len(models) > 1 else {}
                        gained = {"stack_gain": stack_gains[0] if len(stack_gains) == 1 else stack_gains} if stack_gains else {}
                        for kind, target in targets.items():
                            write_stack(target, results[kind], like=stack, provenance=record(
                                kind, steps=iters, steps_per_later_plane=later, **per_channel,
                                **(gained if kind != "linear" else {})))
                        note = _no_data_note(stack.missing)
                    else:
                        model = new_model()
                        picture = model.content_box(image.pixels)  # what is fitted: within flat borders
                        say_how_it_fits(path.name, (picture.height, picture.width))
                        losses = []
                        if iters:
                            bar = _StepBar(iters, path.name)
                            try:
                                losses = model.fit(image.pixels, iters, progress=bar, loss_every=10).losses
                            finally:
                                bar.close()
                        bar = _StepBar(None, f"{path.name} inference", unit="pass")
                        try:
                            results = model.infer(image.pixels, progress=bar, **inference)._asdict()
                        finally:
                            bar.close()
                        note = _border_note(model, image.pixels) + _no_data_note(image.missing)
                        for kind, target in targets.items():
                            if image.tiff_metadata is not None:
                                write_tiff(target, results[kind], like=image, provenance=record(kind))
                            else:
                                write_image(target, results[kind], bits=image.bits, alpha=image.alpha,
                                            icc_profile=image.icc_profile, exif=image.exif, provenance=record(kind))
                    if loss_path is not None:
                        _write_text_atomically(loss_path, json.dumps(losses))
                    if weights_path is not None:
                        model.save(weights_path)
                    elapsed = time.perf_counter() - started
                    click.echo(f"{path} -> {', '.join(str(t) for t in targets.values())} ({elapsed:.1f} s{note})")
                    done += 1
                except (ZeroIGError, OSError, FloatingPointError, RuntimeError) as error:  # RuntimeError: e.g. out of memory
                    failures += 1
                    for target in [target for target, owner in claimed.items() if owner == path]:
                        del claimed[target]  # a failed input's names are free for a later input of the same stem
                    _fail(_failure_message(path, error))
        except KeyboardInterrupt:
            click.echo(f"\nzeroig: interrupted after {done} of {len(files)} image(s); every file written is complete, "
                       "nothing partial was left.", err=True)
            sys.exit(stop.exit_status)
    if failures and len(files) + len(problems) > 1:
        click.echo(f"zeroig: {done} image(s) done, {failures} failed (see the errors above)", err=True)
    if failures:
        sys.exit(1)


def _looks_like_microscopy(stack, image) -> bool:
    """A grey TIFF or TIFF stack: what a microscope or a scientific camera writes, rarely a photo."""
    if stack is not None:
        return "S" not in stack.axes
    return image.tiff_metadata is not None and image.pixels.ndim == 2


def _failure_message(path: Path, error: Exception) -> str:
    from .errors import ZeroIGError

    if isinstance(error, ZeroIGError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        about = f" ({error.filename})" if error.filename and Path(error.filename) != path else ""
        return f"{path}: {error.strerror}{about}"
    message = str(error).splitlines()[0] if isinstance(error, RuntimeError) else str(error)
    if "out of memory" in message:
        message += (" (the device's memory is shared with other programs: a smaller --fit-crop and "
                    "--tile bound what the fit and the inference take)")
    return f"{path}: {message}"


def _output_name(path: Path, kind: str, tiff: bool) -> str:
    """``{stem}_{kind}.png``, or ``.tif`` for a TIFF (``x.ome.tif`` gives ``x_{kind}.ome.tif``)."""
    if not tiff:
        return f"{path.stem}_{kind}.png"
    ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    return f"{path.name[: path.name.lower().rindex('.ome.')]}_{kind}.ome.tif" if ome else f"{path.stem}_{kind}.tif"


def _enhance_stack(
    stack, new_model, mode: str, device: str, iters: int, later_iters: int, kinds: tuple[str, ...], inference: dict
):
    """Fit and infer every plane of a TIFF stack, warm-starting each from the previous plane's fit.

    Each channel (the ``C`` axis) gets a fresh model; within it the planes are visited in storage
    order, the first fitted for ``iters`` steps and each later one for ``later_iters``. Returns the
    outputs of ``kinds`` in the stack's layout, dtype and scale (float stacks as float32, NaN
    where the stack had NaN: no data, fitted as its nearest data), the
    losses of each plane's fit, each channel's model after its last plane, and each channel's
    stack gain (empty where there is none). The whole stack shares one scale
    (:func:`~zeroig_plugin.imageio.value_scale`), and with the exposure gain a channel's planes
    are brought up by one gain (:class:`~zeroig_plugin.StackExposure`), so equal intensities in
    any two planes come out equal.
    """
    import numpy as np

    from .engine import StackExposure, inference_passes
    from .imageio import stored_form, to_float, to_stored, value_scale

    colours = stack.planes[..., :3] if stack.rgb else stack.planes  # alpha sets no scale
    scale = value_scale(colours)
    dtype, stored_scale = stored_form(colours, scale)
    alpha = stack.rgb and stack.planes.shape[-1] == 4
    outer = stack.planes.shape[: stack.planes.ndim - (3 if stack.rgb else 2)]
    channel_of = (lambda at: 0) if stack.channel_axis is None else (lambda at: at[stack.channel_axis])
    channels = 1 if stack.channel_axis is None else outer[stack.channel_axis]
    positions = sorted(np.ndindex(*outer), key=channel_of)
    passes = inference_passes(mode, *stack.plane_shape, inference["tile"], inference["ensemble"] or None, device)
    total = channels * iters + (len(positions) - channels) * later_iters + len(positions) * passes
    results = {kind: np.empty(stack.planes.shape, np.float32 if np.issubdtype(dtype, np.floating) else dtype) for kind in kinds}
    brought_up_later = len(positions) > channels and any(kind in ("enhance", "denoise") for kind in kinds)
    losses: list[list[float]] = []
    done, model, channel, models, exposure, stack_gains = 0, None, None, [], None, []

    def store(position: tuple, outputs: dict) -> None:
        for kind, values in results.items():
            if kind in outputs:
                stored = to_stored(outputs[kind], stored_scale, dtype)
                if stack.missing is not None:
                    stored[stack.missing[position]] = np.nan
                if alpha:
                    stored = np.concatenate([stored, stack.planes[position][..., 3:].astype(values.dtype)], axis=-1)
                values[position] = stored

    def bring_up_channel() -> None:
        if exposure is not None:
            for position, enhance, denoise in exposure.brought_up():
                store(position, {"enhance": enhance, "denoise": denoise})
            stack_gains.append(exposure.gain)

    bar = _StepBar(total, f"{stack.path.name} ({len(positions)} planes)")
    try:
        for position in positions:
            first = model is None or channel_of(position) != channel
            if first:
                bring_up_channel()
                model, channel = new_model(), channel_of(position)
                models.append(model)
                exposure = StackExposure(model) if brought_up_later and StackExposure.applies_to(model) else None
            plane = to_float(stack.planes[position], scale)[0]
            plane = plane[..., :3] if stack.rgb else plane
            steps = iters if first else later_iters
            plane_losses: list[float] = []
            if steps:
                report = model.fit(plane, steps, progress=lambda d, t, loss: bar(done + d, total, loss), loss_every=10)
                plane_losses = report.losses
            done += steps
            outputs = model.infer(plane, progress=lambda d, t: bar(done + d, total), **inference)._asdict()
            done += passes
            if exposure is None:
                store(position, outputs)
            else:
                exposure.add(position, plane, outputs["linear"])
                store(position, {"linear": outputs["linear"]})
            losses.append(plane_losses)
        bring_up_channel()
    finally:
        bar.close()
    return results, losses, models, stack_gains


@cli.command()
@click.option("-o", "--output-dir", default="demo-output", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--iters", default=None, type=click.IntRange(min=1), help="Fitting steps (default: chosen to finish in minutes on a CPU).")
@click.option("--mode", default="default", show_default=True, help="Fitting recipe, see `zeroig modes`.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def demo(output_dir, iters, mode, device) -> None:
    """Enhance a built-in example and score it against its reference.

    A normal-light photo shipped with scikit-image is darkened as a camera records 2 % of its
    light (seeded shot and read noise, 8 bits), enhanced, and written as low / enhance / denoise /
    reference PNGs and one side-by-side image; PSNR and SSIM of the input and both outputs against
    the reference are printed.
    """
    from .demo import run_demo
    from .engine import describe_device
    from .errors import ZeroIGError
    from .recipes import get_recipe

    for check, value, option in ((get_recipe, mode, "--mode"), (describe_device, device, "--device")):
        try:
            check(value)
        except ZeroIGError as error:
            raise click.BadParameter(str(error), param_hint=option) from None
    try:
        run_demo(output_dir, iters=iters, mode=mode, device=device)
    except ZeroIGError as error:
        raise click.ClickException(str(error)) from None


@cli.command()
def modes() -> None:
    """List the fitting recipes (--mode) and what each does."""
    from .recipes import DEFAULT_MODE, available_modes, get_recipe

    for name in available_modes():
        if name != "default":
            marker = " (default)" if name == DEFAULT_MODE else ""
            click.echo(f"{name}{marker}: {get_recipe(name).description}")


def main() -> None:
    """Console entry point: no traceback reaches the user unless ZEROIG_DEBUG is set."""
    try:
        cli.main(prog_name="zeroig")
    except Exception as error:  # a bug, not bad input: say so in one line
        if os.environ.get("ZEROIG_DEBUG"):
            raise
        _fail(f"internal error: {type(error).__name__}: {error} (set ZEROIG_DEBUG=1 for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
