"""Carrying an input's audio into the output, interleaved with the video as it is written.

Packets are copied without re-encoding when the output container can hold the codec. When it
cannot (e.g. G.711 ``pcm_mulaw`` into MP4) the audio is re-encoded to AAC; when even that is
impossible it is dropped. Either case is reported through ``warn``.
"""
from __future__ import annotations

from typing import Callable, Iterator

import av

from .source import file_url

__all__ = ["AudioCarrier", "open_audio_carrier"]

AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
MPEGTS_AUDIO_CODECS = ("aac", "mp2", "mp3", "ac3", "eac3")
"""Audio codecs FFmpeg's mpegts muxer writes (its ``supported_codecs`` lists MPEG-1/2 ones only)."""


class AudioCarrier:
    """Muxes the input's first audio stream into ``output``, packet by packet, up to a time.

    Owns its own input container on the same file (so audio demuxing never disturbs the video
    decode thread). Call :meth:`mux_until` before each video packet and :meth:`finish` with the
    video's end time; audio past that end is left out, so a shortened video gets matching audio.
    """

    def __init__(self, source: av.container.InputContainer, output: av.container.OutputContainer, transcode: bool):
        self._source = source
        self._in_stream = source.streams.audio[0]
        self._packets: Iterator[av.Packet] = source.demux(self._in_stream)
        self._pending: av.Packet | None = None
        self._exhausted = False
        if transcode:
            layout = self._in_stream.codec_context.layout.name or "stereo"
            rate = _nearest_aac_rate(self._in_stream.codec_context.sample_rate)
            self.stream = output.add_stream("aac", rate=rate, layout=layout)
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        else:
            self.stream = output.add_stream_from_template(self._in_stream)
            self._resampler = None
        self.packets_written = 0

    def mux_until(self, output: av.container.OutputContainer, seconds: float) -> None:
        """Mux every audio packet that starts before ``seconds`` (presentation time)."""
        while not self._exhausted:
            packet = self._pending or self._next_packet()
            if packet is None:
                self._exhausted = True
                break
            if packet.pts is not None and float(packet.pts * packet.time_base) >= seconds:
                self._pending = packet
                return
            self._pending = None
            self._write(output, packet)

    def finish(self, output: av.container.OutputContainer, seconds: float) -> None:
        """Mux the audio up to ``seconds`` (``inf`` for all of it), flush the AAC encoder if re-encoding, close the input."""
        self.mux_until(output, seconds)
        if self._resampler is not None:
            for frame in self._resampler.resample(None):
                self._encode(output, frame)
            self._encode(output, None)
        self._source.close()

    def close(self) -> None:
        self._source.close()

    def _next_packet(self) -> av.Packet | None:
        for packet in self._packets:
            if packet.size:  # skips the empty flush packet demux yields at end of stream
                return packet
        return None

    def _write(self, output: av.container.OutputContainer, packet: av.Packet) -> None:
        if self._resampler is None:
            packet.stream = self.stream
            output.mux(packet)
            self.packets_written += 1
            return
        for frame in self._in_stream.decode(packet):
            for resampled in self._resampler.resample(frame):
                self._encode(output, resampled)

    def _encode(self, output: av.container.OutputContainer, frame: av.AudioFrame | None) -> None:
        packets = self.stream.encode(frame)
        output.mux(packets)
        self.packets_written += len(packets)


def open_audio_carrier(
    input_path: str, output: av.container.OutputContainer, warn: Callable[[str], None]
) -> AudioCarrier | None:
    """An :class:`AudioCarrier` for ``input_path``'s first audio stream, or ``None`` when it has
    none or the output container can hold neither that codec nor AAC (then ``warn`` says so)."""
    source = av.open(file_url(input_path), "r")
    if not source.streams.audio:
        source.close()
        return None
    codec = source.streams.audio[0].codec_context.name
    supported = MPEGTS_AUDIO_CODECS if output.format.name == "mpegts" else output.supported_codecs
    if codec in supported:
        return AudioCarrier(source, output, transcode=False)
    if "aac" in supported:
        warn(f"audio: the {output.format.name} container cannot hold {codec}; re-encoding the audio to AAC")
        return AudioCarrier(source, output, transcode=True)
    source.close()
    warn(f"audio: the {output.format.name} container can hold neither {codec} nor AAC; the output has no audio")
    return None


def _nearest_aac_rate(rate: int) -> int:
    return min(AAC_SAMPLE_RATES, key=lambda candidate: abs(candidate - rate))

