"""``zeroig video INPUT OUTPUT``: enhance a video file with warm-started per-frame fits.

Only click is imported at module level so ``zeroig --help`` stays instant; PyAV, torch and the
core are imported when the command runs.
"""
from __future__ import annotations

import click

# Mirrors video.enhancer.DEFAULTS (kept literal here so --help needs no torch import).
DEFAULT_FIRST_ITERS = 100
DEFAULT_ITERS_PER_FRAME = 2
DEFAULT_FIT_SIZE = 128
DEFAULT_SCENE_CUT = 1.3
DEFAULT_WEIGHT_SMOOTHING = 0.9
DEFAULT_TEMPORAL_STRENGTH = 0.8
DEFAULT_ENSEMBLE = 1
MAX_BRIGHTNESS = 0.8  # zeroig_plugin.MAX_BRIGHTNESS
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _mode_choices() -> list[str]:
    """Mode names from the core's recipe registry (imports only the light recipes module)."""
    try:
        from zeroig_plugin import available_modes
    except ImportError:  # pragma: no cover - the core is a dependency
        return ["default"]
    return available_modes()


class _LazyModeChoice(click.Choice):
    """A Choice whose names are read from the core only when the option is used or shown."""

    def __init__(self):
        super().__init__([])

    @property
    def choices(self):  # noqa: D401 - click reads this attribute
        return _mode_choices()

    @choices.setter
    def choices(self, value):
        pass


class _Interrupted(click.ClickException):
    """Ctrl-C or SIGTERM: says what is at the output path; exits with the signal's status (130,
    143) like other interrupted tools."""

    def __init__(self, what: str, exit_status: int):
        super().__init__(f"interrupted: {what}")
        self.exit_code = exit_status


@click.command("video")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=str))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(dir_okay=False, writable=True, path_type=str))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--mode", type=_LazyModeChoice(), default="default", show_default=True, help="Fitting recipe.")
@click.option(
    "--output", "output_kind", type=click.Choice(["enhance", "denoise"]), default="denoise", show_default=True,
    help="denoise: brightened and denoised (the published final output); enhance: brightened only.",
)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), help="Start from this checkpoint.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option(
    "--first-iters", type=click.IntRange(min=0), default=DEFAULT_FIRST_ITERS, show_default=True,
    help="Fitting steps on the first frame and after each scene cut.",
)
@click.option(
    "--iters-per-frame", type=click.IntRange(min=0), default=DEFAULT_ITERS_PER_FRAME, show_default=True,
    help="Fitting steps on every later frame, continuing from the previous frame.",
)
@click.option(
    "--fit-size", type=click.IntRange(min=0), default=DEFAULT_FIT_SIZE, show_default=True,
    help="Fit on a copy downscaled to this longest side (0: native size, on the largest crops that fit where a "
         "whole frame would not fit the device's memory); inference is full size.",
)
@click.option(
    "--scene-cut", type=click.FloatRange(min=0), default=DEFAULT_SCENE_CUT, show_default=True,
    help="Frame-difference threshold for a scene cut (restart with --first-iters); 0 disables.",
)
@click.option(
    "--weight-smoothing", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_WEIGHT_SMOOTHING,
    show_default=True, help="Infer with a moving average of the weights across frames (0: latest weights).",
)
@click.option(
    "--temporal-strength", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_TEMPORAL_STRENGTH,
    show_default=True,
    help="Motion-compensated temporal filter on the output (3DNR): weight of the previous frame where "
    "nothing moved; 0 switches it off.",
)
@click.option(
    "--ensemble", type=click.Choice(["1", "2", "4", "8"]), default=str(DEFAULT_ENSEMBLE), show_default=True,
    help="Average each frame's inference over this many flips and transposes (N times the inference cost).",
)
@click.option(
    "--brightness", type=click.FloatRange(0, MAX_BRIGHTNESS, min_open=True), metavar="B",
    help="Mean luminance (0-0.8) each frame's fit aims the output at. Default: 0.5, mid-grey, the published "
    "rule; lower it (e.g. 0.25) to keep a night scene dark.",
)
@click.option(
    "--exposure-gain", is_flag=True,
    help="Fit each frame to 0.7 of --brightness and bring it there by one gain, as the image command does. "
    "Off by default: a frame's few steps leave the fit short of the level, and the gain would lift the "
    "remaining noise with it.",
)
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="libx264 quality (lower is better).")
@click.option("--preset", type=click.Choice(X264_PRESETS), default="medium", show_default=True, help="libx264 speed preset.")
@click.option("--seed", type=int, default=2, show_default=True, help="Seed of the initial weights.")
def video_command(
    input_path, output_path, device, mode, output_kind, weights, max_frames, overwrite,
    first_iters, iters_per_frame, fit_size, scene_cut, weight_smoothing, temporal_strength, ensemble, brightness,
    exposure_gain, crf, preset, seed,
):
    """Enhance a low-light video, frame by frame, each fit warm-started from the previous frame.

    Timestamps (variable frame rate too), rotation and audio are kept; the video is re-encoded
    with libx264 (yuv420p). Letterbox and pillarbox bars stay as they are: only the picture
    between them is fitted and enhanced (in every mode but faithful). The output (.mp4, .mov, .mkv,
    .ts, .m2ts or .mts) is written under a temporary name and renamed when done; Ctrl-C or SIGTERM
    keeps the frames finished so far as a valid, shorter video (nothing, if no frame was finished)
    and exits 130 or 143. Exit status 1: an error, a truncated input included (its frames decoded
    are kept); 2: a usage error.
    """
    import sys

    import av
    from tqdm import tqdm
    from zeroig_plugin import ZeroIGError, describe_device
    from zeroig_plugin.interrupts import sigterm_as_interrupt

    from .enhancer import WarmStartEnhancer, WarmStartSettings
    from .pipeline import VideoInterrupted, check_paths, enhance_video, expected_frames
    from .source import probe

    def warn(message: str) -> None:
        tqdm.write(f"zeroig video: {message}", file=sys.stderr)

    try:
        describe_device(device)
    except ZeroIGError as error:
        raise click.BadParameter(str(error), param_hint="--device") from None

    with sigterm_as_interrupt() as stop:
        try:
            check_paths(input_path, output_path, overwrite)
            total = expected_frames(probe(input_path), max_frames) or None
            settings = WarmStartSettings(
                first_iters=first_iters, iters_per_frame=iters_per_frame, fit_size=fit_size,
                scene_cut_threshold=scene_cut or None, weight_smoothing=weight_smoothing, output=output_kind,
                temporal_strength=temporal_strength, ensemble=int(ensemble), exposure_gain=exposure_gain,
            )
            enhancer = WarmStartEnhancer(settings, mode=mode, device=device, seed=seed, weights=weights, brightness=brightness)
            temporal = f"temporal filter {temporal_strength:g}" if temporal_strength else "no temporal filter"
            warn(f"on {describe_device(enhancer.device)}, fitting at {fit_size or 'native'} px, output {output_kind}, {temporal}")
            with tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr) as bar:

                def on_frame(done: int, expected: int, report) -> None:
                    if report.scene_cut:
                        warn(f"scene cut at frame {report.index} (statistic {report.cut_statistic:.2f}): restarting the fit")
                    if report.index == 0 and report.fit_crop is not None:
                        warn(f"each fitting step sees two random {report.fit_crop}x{report.fit_crop} crops of the frame: a "
                             "whole-frame step would not fit the device's memory (--fit-size fits a downscaled copy instead)")
                    if (report.index == 0 or report.scene_cut) and report.picture_box is not None:
                        box = report.picture_box
                        warn(f"flat borders (letterbox bars) left as they are: enhancing the {box.width}x{box.height} "
                             f"picture at x {box.left}, y {box.top}")
                    bar.update(1)

                result = enhance_video(
                    input_path, output_path, enhancer, max_frames=max_frames, crf=crf, preset=preset,
                    overwrite=overwrite, on_frame=on_frame, warn=warn,
                )
        except VideoInterrupted as interrupted:
            raise _Interrupted(interrupted.result.describe(), stop.exit_status) from None
        except KeyboardInterrupt:
            raise _Interrupted("nothing was written", stop.exit_status) from None
        except (ZeroIGError, FloatingPointError, av.error.FFmpegError, OSError) as error:
            raise click.ClickException(str(error)) from None
    frames_per_second = result.frames_done / result.seconds if result.seconds else 0.0
    click.echo(f"{result.describe()} ({frames_per_second:.2f} frames/s)", err=True)
