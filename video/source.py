"""Reading a video with PyAV: probe what it holds, then decode every frame with its exact timestamp.

Frames come out as RGB ``(H, W, 3)`` arrays: uint8 for 8-bit video, uint16 (``rgb48le``) for
inputs with more bits per component, so no precision is lost before the fit. YUV is converted with
the matrix and range the stream is tagged with; an untagged stream is read as players show it
(:func:`colour_tags`), and the writer encodes with the same tags.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from zeroig_plugin import InputError

__all__ = ["ColourTags", "VideoInfo", "DecodedFrame", "colour_tags", "probe", "decode_frames", "open_input", "file_url"]

_BT709, _SMPTE170M = 1, 6  # AVColorSpace
_FULL_RANGE, _UNSPECIFIED_RANGE = 2, 0  # AVColorRange
_SWSCALE_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
"""The AVColorSpace matrices swscale converts with, by the names PyAV's reformatter takes."""
MUXER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}
"""Container metadata the muxer writes for the file it makes (lower case), not copied from an input."""
_EBML_HEADER_ID, _MATROSKA_SEGMENT_ID = 0x1A45DFA3, 0x18538067
_MATROSKA_HEAD_BYTES = 4096  # the EBML header and the Segment's own header come first, in far fewer bytes


def file_url(path: str | os.PathLike) -> str:
    """``path`` as FFmpeg's ``file:`` URL, so that a colon in a local file name (``2024-01-01T12:00:00.mp4``)
    is not read as a protocol."""
    return "file:" + os.path.abspath(path)


@dataclass(frozen=True)
class ColourTags:
    """How a stream's YUV samples become colours, as FFmpeg numbers its tags.

    Attributes:
        matrix: YUV <-> RGB matrix (AVColorSpace: 1 BT.709, 6 BT.601, 9 BT.2020, ...), never
            unspecified: an untagged stream gets the one players assume (:func:`colour_tags`).
        full_range: samples span 0-255 (JPEG range) rather than 16-235 (MPEG, TV range).
        primaries, transfer: AVColorPrimaries and AVColorTransferCharacteristic, copied to the
            output as they are (2: unspecified).
    """

    matrix: int
    full_range: bool
    primaries: int
    transfer: int

    @property
    def swscale_matrix(self) -> str:
        """The matrix by the name PyAV's reformatter takes."""
        return _SWSCALE_MATRICES[self.matrix]


def colour_tags(frame: av.VideoFrame) -> ColourTags:
    """``frame``'s colour tags, with an untagged matrix read as players read it (mpv, VLC): BT.709
    for HD (at least 1280 wide or over 576 high), BT.601 below; an untagged range is full for the
    ``yuvj`` formats, TV range otherwise."""
    matrix = frame.colorspace
    if matrix not in _SWSCALE_MATRICES:  # untagged, RGB-coded, or one swscale lacks (YCgCo, ICtCp)
        matrix = _BT709 if frame.width >= 1280 or frame.height > 576 else _SMPTE170M
    full_range = frame.color_range == _FULL_RANGE or (
        frame.color_range == _UNSPECIFIED_RANGE and frame.format.name.startswith("yuvj")
    )
    return ColourTags(matrix, full_range, frame.color_primaries, frame.color_trc)


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to know about an input before the first frame is encoded.

    Attributes:
        width, height: coded size of the video stream, in pixels.
        time_base: the video stream's time base; frame ``pts`` are in these units.
        bits: bits per colour component (8 for ordinary video, 10 or more for HDR/pro footage).
        display_matrix: the 9 int32 of the display-matrix side data (rotation/flip), or ``None``.
        rotation: the counter-clockwise rotation that matrix encodes, in degrees.
        frame_count: frames the container declares (0 when it does not say).
        average_rate: the average frame rate, used for the encoder's rate hint only.
        audio_codec: the first audio stream's codec name, or ``None`` when there is no audio.
        truncated: the file ends before the data its container declares (frames are missing): the
            index (MP4 sample table, MKV cues) points past its end, or an MKV Segment declares
            more bytes than the file holds.
        colour: the first frame's :class:`ColourTags`, which the writer encodes and tags with.
        tags: the container's own metadata (recording date, place, title...), which the writer
            copies; what the muxer writes itself (brands, the encoder's name) is left out.
        other_streams: the kinds of the streams the pipeline leaves out (every stream but the
            first video and the first audio), e.g. ``("audio", "subtitle")``.
    """

    width: int
    height: int
    time_base: Fraction
    bits: int
    display_matrix: tuple[int, ...] | None
    rotation: int
    frame_count: int
    average_rate: Fraction | None
    audio_codec: str | None
    truncated: bool
    colour: ColourTags
    tags: dict[str, str] = field(default_factory=dict)
    other_streams: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: its position, exact timestamp and pixels.

    Attributes:
        index: 0-based position in decode (presentation) order.
        pts: presentation timestamp in ``time_base`` units.
        time_base: the stream time base.
        rgb: ``(H, W, 3)``, uint8, or uint16 when the input has more than 8 bits per component.
    """

    index: int
    pts: int
    time_base: Fraction

    rgb: np.ndarray

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)


def open_input(path: str | os.PathLike) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every way it can fail into one :class:`InputError` line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a video file")
    try:
        container = av.open(file_url(path), "r")
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: not a readable video file, or truncated ({_reason(error)})") from None
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        container.close()
        raise InputError(f"{path}: has no video stream ({kinds} only)")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe ``path``'s first video stream, decoding its first frame for side data.

    Raises:
        InputError: missing, not a video, audio-only, or no frame can be decoded.
    """
    with open_input(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = next(_decode(container, stream, os.fspath(path)), None)
        if first is None:
            raise InputError(f"{os.fspath(path)}: no video frame could be decoded (empty or truncated file)")
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        matrix = _display_matrix(first)
        file_size = os.path.getsize(path)
        kept = {kept_stream.index for kept_stream in (stream, *container.streams.audio[:1])}
        return VideoInfo(
            width=first.width,
            height=first.height,
            time_base=stream.time_base,
            bits=_bits_per_component(first.format),
            display_matrix=matrix,
            rotation=first.rotation if matrix else 0,
            frame_count=stream.frames,
            average_rate=stream.average_rate or stream.guessed_rate,
            audio_codec=audio,
            truncated=_index_past_end(stream, file_size)
            or ("matroska" in container.format.name and _matroska_segment_past_end(path, file_size)),
            colour=colour_tags(first),
            tags={key: value for key, value in container.metadata.items() if key.lower() not in MUXER_TAGS},
            other_streams=tuple(other.type for other in container.streams if other.index not in kept),
        )


def decode_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[DecodedFrame]:
    """Every frame of ``path``'s first video stream, in presentation order, decoded on FFmpeg's
    threads and flushed at the end so none is lost.

    Frames without a timestamp (a raw ``.h264`` stream) get one continued from the previous
    frame's spacing, or from the stream's frame rate when no frame had one.

    Raises:
        InputError: the file cannot be opened, or decoding fails part way (truncated or corrupt).
    """
    path = os.fspath(path)
    with open_input(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        high_depth = None
        last_pts, step = None, _frame_duration(stream)
        for index, frame in enumerate(_decode(container, stream, path)):
            if max_frames is not None and index >= max_frames:
                return
            if high_depth is None:
                high_depth = _bits_per_component(frame.format) > 8
            pts = frame.pts
            if pts is None:
                pts = 0 if last_pts is None else last_pts + step
            elif last_pts is not None and pts > last_pts:
                step = pts - last_pts
            last_pts = pts
            yield DecodedFrame(index, pts, stream.time_base, frame_to_rgb(frame, high_depth))


def frame_to_rgb(frame: av.VideoFrame, high_depth: bool) -> np.ndarray:
    """A decoded frame as ``(H, W, 3)`` RGB: uint16 (``rgb48le``) when ``high_depth``, else uint8,
    converted with its :func:`colour_tags` (swscale alone would read every untagged frame as
    BT.601, which players show HD video with BT.709: greens 26 levels apart)."""
    tags = colour_tags(frame)
    return frame.to_ndarray(
        format="rgb48le" if high_depth else "rgb24",
        src_colorspace=tags.swscale_matrix, src_color_range="JPEG" if tags.full_range else "MPEG",
    )


def _decode(container: av.container.InputContainer, stream: av.VideoStream, path: str) -> Iterator[av.VideoFrame]:
    """Demux and decode ``stream``; ``container.decode`` flushes the decoder at end of file."""
    decoded = 0
    try:
        for frame in container.decode(stream):
            decoded += 1
            yield frame
    except av.error.FFmpegError as error:
        raise InputError(
            f"{path}: truncated or corrupt, decoding stopped after {decoded} frame(s) ({_reason(error)})"
        ) from None


def _frame_duration(stream: av.VideoStream) -> int:
    """One frame's duration in ``stream``'s time base, from its frame rate; 1 tick when it has none."""
    rate = stream.guessed_rate or stream.average_rate
    return max(1, round(1 / (rate * stream.time_base))) if rate else 1


def _index_past_end(stream: av.VideoStream, file_size: int) -> bool:
    """Whether the demuxer's index (MP4 sample table, MKV cues) names bytes beyond ``file_size``."""
    return any(entry.pos + entry.size > file_size for entry in stream.index_entries if entry.pos >= 0)


def _matroska_segment_past_end(path: str | os.PathLike, file_size: int) -> bool:
    """Whether a Matroska file's Segment, by the size its header declares, ends past ``file_size``
    (a recording cut off). A live recording (OBS) declares the unknown size: never truncated by this."""
    with open(path, "rb") as file:
        head = file.read(_MATROSKA_HEAD_BYTES)
    ebml = _ebml_element(head, 0)
    if ebml is None or ebml[0] != _EBML_HEADER_ID or ebml[1] is None:
        return False
    segment = _ebml_element(head, ebml[2] + ebml[1])
    if segment is None or segment[0] != _MATROSKA_SEGMENT_ID or segment[1] is None:
        return False
    return segment[2] + segment[1] > file_size


def _ebml_element(data: bytes, offset: int) -> tuple[int, int | None, int] | None:
    """The EBML element header at ``offset``: ``(id, data size or None when unknown, data offset)``;
    ``None`` where ``data`` holds no valid header there."""
    element_id = _ebml_vint(data, offset)
    if element_id is None:
        return None
    id_length, id_bits, _ = element_id
    size = _ebml_vint(data, offset + id_length)
    if size is None:
        return None
    size_length, _, value = size
    unknown = value == (1 << 7 * size_length) - 1  # every value bit set
    return id_bits, None if unknown else value, offset + id_length + size_length


def _ebml_vint(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """The EBML variable-length integer at ``offset``: ``(length in bytes, its bits with the length
    marker (how IDs are written), its value without it)``."""
    if offset >= len(data) or data[offset] == 0:
        return None
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return None
    bits = int.from_bytes(data[offset : offset + length], "big")
    return length, bits, bits & ((1 << 7 * length) - 1)


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    # Looked up by key: iterating side data yields the entries in PyAV 18.1.0 but their keys from 18.1.1.
    matrix = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
    return None if matrix is None else struct.unpack("<9i", bytes(matrix)[:36])


def _bits_per_component(video_format: av.VideoFormat) -> int:
    return max((component.bits for component in video_format.components), default=8)


def _reason(error: av.error.FFmpegError) -> str:
    return error.strerror or type(error).__name__
