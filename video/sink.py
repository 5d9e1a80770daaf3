"""Writing the enhanced video with PyAV: libx264 yuv420p, the input's exact timestamps, its
rotation matrix, its colour tags (YUV matrix and range, primaries, transfer: the frames are converted
with the matrix and range they are tagged with) and its audio (see :mod:`video.audio`).
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Callable

import av
import numpy as np
from zeroig_plugin import OutputError

from .audio import AudioCarrier, open_audio_carrier
from .source import VideoInfo

__all__ = ["VideoSink", "even_size", "pad_to_even"]


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
    variable frame rate stays variable; the input's container metadata (recording date, place,
    title) is copied. Use as a context manager, or call :meth:`close`; closing flushes the encoder
    and the audio, and writes the container trailer.

    Args:
        path: output file; its extension picks the container (``format`` overrides).
        info: the input's :class:`~video.source.VideoInfo`.
        input_path: where to copy audio from (``None`` for no audio).
        crf, preset: libx264 rate factor and speed preset.
        warn: receives one-line notes (odd size padded, audio re-encoded or dropped).
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
        self._last_pts: int | None = None
        self._frame_step = 1
        try:
            self._container = av.open(os.fspath(path), "w", format=container_format)
        except (av.error.FFmpegError, ValueError) as error:
            raise OutputError(f"{path}: cannot create the output ({error})") from None
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
        if "libx264" not in self._container.supported_codecs:
            raise OutputError(f"the {self._container.format.name} container cannot hold H.264 video: use .mp4, .mkv or .mov")
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
        frame.pts = pts
        frame.time_base = self.info.time_base
        if self._last_pts is not None and pts > self._last_pts:
            self._frame_step = pts - self._last_pts
        self._last_pts = pts
        self._mux(self._stream.encode(frame))
        self.frames_written += 1

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
