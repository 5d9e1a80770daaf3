"""File to file: decode (worker thread) -> warm-started fit + inference (calling thread) ->
encode and mux (worker thread), written under a temporary name and renamed when complete.

An interrupted run (Ctrl-C, ``should_cancel``) or a truncated input keeps the frames already
done as a valid, shorter video at the output path; if no frame was done, nothing is left.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import av
from zeroig_plugin import InputError, OutputError, record_text, release_freed_memory

from .enhancer import FrameReport, WarmStartEnhancer
from .sink import OUTPUT_EXTENSIONS, VideoSink, describe_output_extensions
from .source import DecodedFrame, VideoInfo, decode_frames, probe
from .threads import BackgroundConsumer, prefetch

__all__ = [
    "RunResult",
    "VideoInterrupted",
    "enhance_video",
    "iter_enhanced_frames",
    "check_paths",
    "expected_frames",
]

FrameCallback = Callable[[int, int, FrameReport], None]
"""Called after each frame with ``(frames_done, frames_expected or 0, report)``."""

QUEUE_DEPTH = 4  # frames decoded ahead / waiting for the encoder


class RunResult(NamedTuple):
    """What :func:`enhance_video` did.

    Attributes:
        frames_done: frames enhanced and written.
        frames_expected: frames the input declares (capped by ``max_frames``); 0 when unknown.
        complete: every frame of the input (or ``max_frames``) was written.
        output: the file written, or ``None`` when nothing was.
        seconds: wall time of the run.
    """

    frames_done: int
    frames_expected: int
    complete: bool
    output: Path | None
    seconds: float

    def describe(self) -> str:
        """One line saying what is at the output path."""
        if self.output is None:
            return "nothing was written (no frame was finished)"
        of_total = f" of {self.frames_expected}" if self.frames_expected else ""
        kind = "" if self.complete else "a shorter but valid video: "
        return f"{kind}wrote {self.frames_done}{of_total} frames to {self.output}"


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`enhance_video`, after the frames done were saved (see ``result``)."""

    def __init__(self, result: RunResult):
        super().__init__(result.describe())
        self.result = result


def check_paths(input_path: str | os.PathLike, output_path: str | os.PathLike, overwrite: bool) -> tuple[Path, Path]:
    """Refuse outputs that would overwrite the input, an existing file (without ``overwrite``),
    a folder, go to a folder that does not exist, or have an extension other than
    :data:`~video.sink.OUTPUT_EXTENSIONS`.

    Raises:
        InputError, OutputError
    """
    source, target = Path(input_path), Path(output_path)
    if not source.exists():
        raise InputError(f"{source}: no such file")
    if target.exists() and source.resolve() == target.resolve():
        raise OutputError(f"{target}: the output would overwrite the input; choose another name")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give an output file name such as {target / 'enhanced.mp4'}")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists (use --overwrite to replace it)")
    if not target.parent.resolve().is_dir():
        raise OutputError(f"{target.parent}: no such folder")
    if target.suffix.lower() not in OUTPUT_EXTENSIONS:
        kind = f"a {target.suffix} file" if target.suffix else "a file without an extension"
        raise OutputError(
            f"{target}: cannot write {kind} (H.264 with every frame's timestamp); use {describe_output_extensions()}"
        )
    return source, target


def _check_creatable(partial: Path, target: Path) -> None:
    """Create and remove the temporary output, so an output that cannot be written is refused
    before any fitting (the muxer opens its file only with the first packet)."""
    try:
        partial.open("wb").close()
    except OSError as error:
        raise OutputError(f"{target}: cannot create the output ({error.strerror or error})") from None
    partial.unlink()


def expected_frames(info: VideoInfo, max_frames: int | None) -> int:
    """Frames a run will write: the declared count capped by ``max_frames``; 0 when the input
    declares none (MKV), as a shorter input may end before ``max_frames``."""
    return min(info.frame_count, max_frames or info.frame_count)


def _check_max_frames(max_frames: int | None) -> None:
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames is a number of frames (at least 1) or None for all, got {max_frames!r}")


def _describe_left_out(kinds: tuple[str, ...]) -> str:
    counts = ", ".join(f"{count} {kind} stream{'s' * (count > 1)}" for kind, count in Counter(kinds).items())
    return f"only the first video stream and the first audio stream are used; left out: {counts}"


def enhance_video(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    enhancer: WarmStartEnhancer,
    *,
    max_frames: int | None = None,
    crf: int = 18,
    preset: str = "medium",
    overwrite: bool = False,
    on_frame: FrameCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> RunResult:
    """Enhance every frame of ``input_path`` into ``output_path`` with ``enhancer``.

    Timestamps, rotation, audio and the container's metadata are kept (see :class:`~video.sink.VideoSink`);
    the output's ``comment`` holds the settings (:meth:`WarmStartEnhancer.processing_record`).
    ``should_cancel()`` is checked before each frame; a cancelled run returns with
    ``complete=False`` after saving the frames done.

    Raises:
        InputError: the input cannot be read, or is truncated (the frames decoded are saved first;
            the message says so).
        OutputError: the output cannot be created or written (checked before any fitting).
        VideoInterrupted: Ctrl-C; the frames done were saved (``.result`` says what is where).
        ValueError: ``max_frames`` below 1 (``None`` is every frame).
    """
    started = time.perf_counter()
    _check_max_frames(max_frames)
    source, target = check_paths(input_path, output_path, overwrite)
    partial = target.with_name(f"{target.stem}.partial-{os.getpid()}{target.suffix}")
    _check_creatable(partial, target)
    info = probe(source)
    if info.other_streams:
        warn(_describe_left_out(info.other_streams))
    expected = expected_frames(info, max_frames)
    sink = VideoSink(partial, info, str(source), crf=crf, preset=preset, warn=warn)
    writer: BackgroundConsumer = BackgroundConsumer(lambda item: sink.write(*item), QUEUE_DEPTH, name="video-encode")
    frames_done, stopped_early, interrupted, input_failure = 0, False, False, None
    try:
        try:
            for frame in prefetch(decode_frames(source, max_frames), QUEUE_DEPTH, name="video-decode"):
                if should_cancel is not None and should_cancel():
                    stopped_early = True
                    break
                enhanced = enhancer.enhance(frame.rgb)
                if frames_done == 0:  # before the first frame is written, once its fit has set fit_crop
                    sink.describe(record_text({**enhancer.processing_record(), "input": source.name}))
                writer.submit((enhanced, frame.pts))
                frames_done += 1
                if on_frame is not None:
                    on_frame(frames_done, expected, enhancer.last_report)
        except KeyboardInterrupt:
            stopped_early = interrupted = True
        except InputError as error:
            stopped_early, input_failure = True, error
        writer.finish()
        if info.truncated and not stopped_early and frames_done < min(info.frame_count or math.inf, max_frames or math.inf):
            stopped_early = True
            declared = f" of the {info.frame_count} frames it declares" if info.frame_count else " frames"
            input_failure = InputError(
                f"{source}: truncated (the file ends before the data its container declares): decoded {frames_done}{declared}"
            )
        complete = not stopped_early
        written = _finalize(sink, partial, target, whole_input=complete and (max_frames is None or frames_done < max_frames))
    except BaseException as error:
        writer.abort()
        sink.abandon()
        partial.unlink(missing_ok=True)
        if isinstance(error, av.error.FFmpegError):  # its own message names the temporary file
            raise OutputError(f"{target}: writing the output failed ({error.strerror or type(error).__name__})") from None
        raise
    finally:
        release_freed_memory()
    result = RunResult(frames_done if written else 0, expected, complete, target if written else None, time.perf_counter() - started)
    if interrupted:
        raise VideoInterrupted(result)
    if input_failure is not None:
        raise InputError(f"{input_failure}; {result.describe()}")
    return result


def _finalize(sink: VideoSink, partial: Path, target: Path, whole_input: bool) -> bool:
    """Close the encoder and rename ``partial`` to ``target``; with no frame written, remove it."""
    if sink.frames_written == 0:
        sink.abandon()
        partial.unlink(missing_ok=True)
        return False
    sink.close(whole_input=whole_input)
    os.replace(partial, target)
    return True


def iter_enhanced_frames(
    path: str | os.PathLike, enhancer: WarmStartEnhancer | None = None, max_frames: int | None = None
) -> Iterator[DecodedFrame]:
    """Decode ``path`` (on a worker thread) and yield each frame enhanced, warm-started from the
    previous one. ``enhancer`` defaults to a :class:`WarmStartEnhancer` with default settings.

    Example:
        >>> for frame in iter_enhanced_frames("night.mp4", max_frames=10):
        ...     print(frame.index, frame.time, frame.rgb.shape)
    """
    _check_max_frames(max_frames)
    enhancer = enhancer or WarmStartEnhancer()
    try:
        for frame in prefetch(decode_frames(path, max_frames), QUEUE_DEPTH, name="video-decode"):
            yield dataclasses.replace(frame, rgb=enhancer.enhance(frame.rgb))
    finally:
        release_freed_memory()
