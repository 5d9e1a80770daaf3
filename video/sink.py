"""Writing the enhanced video with PyAV: libx264 yuv420p, the input's exact timestamps, its
rotation matrix, its colour tags (YUV matrix and range, primaries, transfer: the frames are converted
with the matrix and range they are tagged with) and its audio (see :mod:`video.audio`).
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Callable

import av
import numpy as np
from zeroig_plugin import OutputError

from .audio import AudioCarrier, open_audio_carrier
from .source import VideoInfo, file_url

__all__ = ["VideoSink", "even_size", "pad_to_even", "OUTPUT_EXTENSIONS", "describe_output_extensions"]

OUTPUT_EXTENSIONS = (".mp4", ".mov", ".mkv", ".ts", ".m2ts", ".mts")
"""Output extensions whose containers hold H.264 with every frame's own timestamp (AVI keeps a
constant frame rate only; WebM and GIF cannot hold H.264)."""
_OUTPUT_FORMATS = ("mp4", "mov", "matroska", "mpegts")
"""The FFmpeg muxers of :data:`OUTPUT_EXTENSIONS` (a muxer's ``supported_codecs`` is no test:
mpegts lists only MPEG-1/2 codecs, though MPEG-TS is the broadcast container for H.264)."""


def describe_output_extensions() -> str:
    """The extensions the output may have, for messages: ``.mp4, .mov, .mkv, .ts, .m2ts or .mts``."""
    return f"{', '.join(OUTPUT_EXTENSIONS[:-1])} or {OUTPUT_EXTENSIONS[-1]}"


def even_size(width: int, height: int) -> tuple[int, int]:
    """The smallest even ``(width, height)`` covering the input: yuv420p needs even sides."""
    return width + width % 2, height + height % 2


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> ``(H + H % 2, W + W % 2, 3)`` by repeating the last row/column."""
    height, width = rgb.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


class VideoSink:
    """An open output file taking uint8 RGB frames with their input timestamps.

    The video stream uses the input's time base and every frame keeps its input ``pts``, so a
    variable frame rate stays variable (a timestamp that repeats or goes back is moved just after
    the one before it, with one note: containers need them strictly increasing); the input's
    container metadata (recording date, place, title) is copied. Use as a context manager, or call :meth:`close`; closing flushes the encoder
    and the audio, and writes the container trailer.

    Args:
        path: output file; its extension picks the container (``container_format`` overrides):
            MP4, MOV, Matroska or MPEG-TS.
        info: the input's :class:`~video.source.VideoInfo`.
        input_path: where to copy audio from (``None`` for no audio).
        crf, preset: libx264 rate factor and speed preset.
        warn: receives one-line notes (odd size padded, audio re-encoded or dropped, timestamps
            made increasing).
        container_format: container format name when ``path``'s extension does not say it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        info: VideoInfo,
        input_path: str | None,
        crf: int = 18,
        preset: str = "medium",
        warn: Callable[[str], None] = lambda message: None,
        container_format: str | None = None,
    ):
        self.info = info
        self.frames_written = 0
        self._warn = warn
        self._last_pts: int | None = None
        self._frame_step = 1
        self._least_step: int | None = None  # one tick of the muxer's time base, in input ticks; known once it starts
        self._timestamps_moved = False
        try:
            self._container = av.open(file_url(path), "w", format=container_format)
        except (av.error.FFmpegError, ValueError) as error:
            raise OutputError(f"{path}: cannot create the output ({error})") from None
        if self._container.format.name not in _OUTPUT_FORMATS:
            self._container.close()
            raise OutputError(
                f"{path}: cannot write {self._container.format.long_name} with every frame's timestamp; "
                f"use {describe_output_extensions()}"
            )
        self._container.metadata.update(info.tags)
        try:
            self._stream = self._add_video_stream(info, crf, preset, warn)
            self._audio: AudioCarrier | None = (
                open_audio_carrier(input_path, self._container, warn) if input_path and info.audio_codec else None
            )
        except BaseException:
            self._container.close()
            raise

    def _add_video_stream(self, info: VideoInfo, crf: int, preset: str, warn: Callable[[str], None]) -> av.VideoStream:
        rate = info.average_rate if info.average_rate else Fraction(30)
        stream = self._container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
        stream.width, stream.height = even_size(info.width, info.height)
        if (stream.width, stream.height) != (info.width, info.height):
            warn(
                f"odd frame size {info.width}x{info.height}: padded to {stream.width}x{stream.height} "
                "by repeating the last row/column (yuv420p needs even sides)"
            )
        stream.pix_fmt = "yuv420p"
        context = stream.codec_context
        context.colorspace, context.color_range = info.colour.matrix, 2 if info.colour.full_range else 1
        context.color_primaries, context.color_trc = info.colour.primaries, info.colour.transfer
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        stream.thread_type = "AUTO"
        if info.display_matrix:
            stream.set_display_matrix(info.display_matrix)
        return stream

    def describe(self, text: str) -> None:
        """Say what made the output in its ``comment``, after the input's own comment if it had
        one; call before the first :meth:`write`, as some containers write their metadata with
        the first frame."""
        metadata = self._container.metadata
        earlier = [metadata.pop(key) for key in list(metadata) if key.lower() == "comment"]
        metadata["comment"] = "\n".join([*earlier, text])

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one uint8 ``(H, W, 3)`` RGB frame (the input's size) at ``pts`` (input time base)."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_to_even(rgb)), format="rgb24").reformat(
            format="yuv420p", dst_colorspace=self.info.colour.swscale_matrix,
            dst_color_range="JPEG" if self.info.colour.full_range else "MPEG",
        )
        pts = self._increasing(pts)
        frame.pts = pts
        frame.time_base = self.info.time_base
        if self._last_pts is not None and pts > self._last_pts:
            self._frame_step = pts - self._last_pts
        self._last_pts = pts
        self._mux(self._stream.encode(frame))
        self.frames_written += 1

    def _increasing(self, pts: int) -> int:
        """``pts``, or where it would not come at least one tick of the muxer's time base after the
        frame before (a repeat, a step back, or two stamps that round to one tick), that frame's
        pts plus one such tick; the first such frame is reported once."""
        if self._least_step is None:
            self._container.start_encoding()  # writes the header, which settles the muxer's time base
            self._least_step = max(1, math.ceil(self._stream.time_base / self.info.time_base))
        if self._last_pts is None or pts >= self._last_pts + self._least_step:
            return pts
        if not self._timestamps_moved:
            self._timestamps_moved = True
            self._warn(
                f"timestamps repeat or go back at frame {self.frames_written} ({pts} after {self._last_pts}, "
                f"in units of {self.info.time_base} s): such frames are moved just after the frame before "
                "them, as the container needs increasing timestamps"
            )
        return self._last_pts + self._least_step

    def close(self, whole_input: bool = True) -> None:
        """Flush the encoder, mux the rest of the audio, write the trailer and close.

        With ``whole_input=False`` (a shortened run) audio stops where the last frame ends.
        """
        try:
            self._mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(self._container, float("inf") if whole_input else self.end_time)
                self._audio = None
        finally:
            self._container.close()

    def abandon(self) -> None:
        """Close without flushing (the file is to be deleted)."""
        if self._audio is not None:
            self._audio.close()
        self._container.close()

    @property
    def end_time(self) -> float:
        """Seconds at which the last written frame stops showing (its pts plus one frame step)."""
        if self._last_pts is None:
            return 0.0
        return float((self._last_pts + self._frame_step) * self.info.time_base)

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if self._audio is not None and packet.dts is not None:
                self._audio.mux_until(self._container, float(packet.dts * packet.time_base))
            self._container.mux(packet)

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()
