"""The video package on tiny clips made here with PyAV (VFR, audio, rotation, odd size, 10-bit),
and on the shared video-dev clips when present. 1-3 fitting steps per frame, 32-64 px frames."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from video.cli import video_command
from video.enhancer import WarmStartEnhancer, WarmStartSettings
from video.pipeline import VideoInterrupted, enhance_video, iter_enhanced_frames
from video.sink import VideoSink
from video.source import decode_frames, probe
from video.threads import BackgroundConsumer, prefetch
from zeroig_plugin import MAX_BRIGHTNESS, InputError, OutputError

TINY = WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=32)
NO_FIT = WarmStartSettings(first_iters=0, iters_per_frame=0)  # for tests about I/O, not fitting
VFR_STEPS_MS = (33, 71)  # alternating frame spacings: a variable frame rate


def make_clip(
    path: Path,
    size: tuple[int, int] = (34, 30),
    frames: int = 6,
    audio: str | None = "aac",
    rotation: int = 90,
    pix_fmt: str = "yuv420p",
    tags: dict[str, str] | None = None,
) -> Path:
    """A dark, moving test clip: VFR timestamps in a 1/1000 time base, optional audio, rotation
    and container metadata."""
    width, height = size
    time_base = Fraction(1, 1000)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        container.metadata.update(tags or {})
        video = container.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = container.add_stream(audio, rate=8000 if audio == "pcm_mulaw" else 44100, layout="mono")
        pts = 0
        for index in range(frames):
            image = np.roll(rng.integers(0, 40, (height, width, 3)), index, axis=1).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            container.mux(video.encode(frame))
            pts += VFR_STEPS_MS[index % 2]
        container.mux(video.encode(None))
        if sound is not None:
            _write_tone(container, sound, seconds=pts / 1000)
    return path


def _write_tone(container, stream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    chunk = stream.codec_context.frame_size or 1024
    sample_format = stream.codec_context.format.name
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)
    for start in range(0, len(tone), chunk):
        samples = tone[start : start + chunk]
        data = (samples * 32767).astype(np.int16) if sample_format.startswith("s16") else samples.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data[None], format=sample_format, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def frame_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        return sorted(frame.pts * frame.time_base for frame in container.decode(video=0))


def audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(packet) for packet in container.demux(audio=0) if packet.size]


def first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "night.mp4")


@pytest.fixture(scope="module")
def enhanced(clip, tmp_path_factory) -> tuple[Path, object, list[str]]:
    """One full pipeline run on ``clip``, shared by the preservation tests."""
    output = tmp_path_factory.mktemp("out") / "night-enhanced.mp4"
    notes: list[str] = []
    result = enhance_video(clip, output, WarmStartEnhancer(TINY, device="cpu"), warn=notes.append)
    return output, result, notes


def tiny_enhancer(settings: WarmStartSettings = TINY) -> WarmStartEnhancer:
    return WarmStartEnhancer(settings, device="cpu")


# --- what the output keeps ------------------------------------------------------------------


def test_every_frame_kept_with_exact_vfr_timestamps(clip, enhanced):
    output, result, _ = enhanced
    assert result.complete and result.frames_done == result.frames_expected == 6
    times = frame_times(output)
    assert times == frame_times(clip)
    assert len({b - a for a, b in zip(times, times[1:])}) == 2  # still variable frame rate


def test_audio_packets_copied_byte_for_byte(clip, enhanced):
    output, _, _ = enhanced
    copied = audio_payloads(output)
    assert copied and copied == audio_payloads(clip)


def test_rotation_kept(clip, enhanced):
    output, _, _ = enhanced
    assert first_frame(clip).rotation == 90
    assert first_frame(output).rotation == 90


def test_output_is_libx264_yuv420p_and_brighter(clip, enhanced):
    output, _, _ = enhanced
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    before = first_frame(clip).to_ndarray(format="rgb24").mean()
    after = first_frame(output).to_ndarray(format="rgb24").mean()
    assert after > before


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_recording_metadata_is_kept_and_the_comment_records_the_settings(tmp_path, suffix):
    import json

    tags = {"creation_time": "2024-05-01T22:13:07.000000Z", "title": "car park, camera 3", "comment": "nightly export"}
    source = make_clip(tmp_path / "cam.mp4", frames=2, audio=None, tags=tags)
    settings = WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=32, temporal_strength=0.5)
    enhance_video(source, tmp_path / f"out{suffix}", WarmStartEnhancer(settings, device="cpu", brightness=0.3))
    with av.open(str(tmp_path / f"out{suffix}")) as container:
        written = {key.lower(): value for key, value in container.metadata.items()}
    assert {key: written[key] for key in ("creation_time", "title")} == {key: tags[key] for key in ("creation_time", "title")}
    earlier, settings_line = written["comment"].split("\n")
    record = json.loads(settings_line)
    assert earlier == "nightly export" and record["software"].startswith("zeroig ") and record["input"] == "cam.mp4"
    assert (record["steps"], record["steps_per_later_frame"], record["fit_size"], record["temporal_strength"]) == (2, 1, 32, 0.5)
    assert (record["output"], record["brightness"], record["exposure_gain"], record["ensemble"]) == ("denoise", 0.3, False, 1)


def test_odd_size_padded_to_even_and_said(tmp_path):
    source = make_clip(tmp_path / "odd.mkv", size=(33, 29), frames=2, audio=None, rotation=0, pix_fmt="yuv444p")
    notes: list[str] = []
    enhance_video(source, tmp_path / "odd-out.mp4", tiny_enhancer(NO_FIT), warn=notes.append)
    assert any("33x29" in note and "34x30" in note for note in notes)
    frame = first_frame(tmp_path / "odd-out.mp4")
    assert (frame.width, frame.height) == (34, 30)


def test_ten_bit_input_read_at_16_bits(tmp_path):
    source = make_clip(tmp_path / "ten.mp4", size=(32, 32), frames=2, audio=None, rotation=0, pix_fmt="yuv420p10le")
    assert probe(source).bits == 10
    frames = list(decode_frames(source))
    assert frames[0].rgb.dtype == np.uint16 and frames[0].rgb.shape == (32, 32, 3)
    out = tiny_enhancer().enhance(frames[0].rgb)
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)


COLOUR_PATCHES = ((200, 40, 40), (40, 200, 40), (40, 40, 200), (220, 200, 60))


def make_colour_clip(path: Path, width: int, matrix: str, full_range: bool, tags: dict | None) -> np.ndarray:
    """Three frames of saturated colour bars (16 px high) encoded with ``matrix`` and range, tagged
    with ``tags`` (codec-context colour fields) or untagged; returns the bars' RGB."""
    rgb = np.repeat(np.repeat(np.array(COLOUR_PATCHES, np.uint8)[None], width // 4, axis=1), 16, axis=0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, 16, "yuv420p"
        for name, value in (tags or {}).items():
            setattr(stream.codec_context, name, value)
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=matrix, dst_color_range="JPEG" if full_range else "MPEG")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return rgb


def _bar_error(decoded: np.ndarray, rgb: np.ndarray) -> int:
    """Largest difference inside the bars (chroma subsampling blurs their edges)."""
    width = rgb.shape[1] // 4
    inner = np.concatenate([np.arange(i * width + 2, (i + 1) * width - 2) for i in range(4)])
    return int(np.abs(decoded[:, inner].astype(int) - rgb[:, inner]).max())


@pytest.mark.parametrize(("width", "matrix"), [(1280, "ITU709"), (320, "ITU601")])
def test_untagged_video_is_read_with_the_matrix_players_assume_for_its_size(tmp_path, width, matrix):
    rgb = make_colour_clip(tmp_path / "untagged.mp4", width, matrix, full_range=False, tags=None)
    assert _bar_error(next(decode_frames(tmp_path / "untagged.mp4")).rgb, rgb) <= 3


def test_colour_tags_are_read_converted_with_and_written_to_the_output(tmp_path):
    tags = {"colorspace": 1, "color_range": 2, "color_primaries": 1, "color_trc": 1}  # BT.709, full range
    rgb = make_colour_clip(tmp_path / "tagged.mp4", 128, "ITU709", full_range=True, tags=tags)
    assert _bar_error(next(decode_frames(tmp_path / "tagged.mp4")).rgb, rgb) <= 3
    enhance_video(tmp_path / "tagged.mp4", tmp_path / "copy.mp4", tiny_enhancer(NO_FIT))
    frame = first_frame(tmp_path / "copy.mp4")
    assert (frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc) == (1, 2, 1, 1)
    passthrough = tmp_path / "passthrough.mp4"
    with VideoSink(passthrough, probe(tmp_path / "tagged.mp4"), None, crf=0) as sink:
        for decoded in decode_frames(tmp_path / "tagged.mp4"):
            sink.write(decoded.rgb, decoded.pts)
    assert _bar_error(next(decode_frames(passthrough)).rgb, rgb) <= 6  # two 8-bit round trips; the wrong matrix: 27


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    source = make_clip(tmp_path / "cctv.mov", size=(32, 32), frames=3, audio="pcm_mulaw", rotation=0)
    notes: list[str] = []
    enhance_video(source, tmp_path / "cctv.mp4", tiny_enhancer(NO_FIT), warn=notes.append)
    assert any("pcm_mulaw" in note and "AAC" in note for note in notes)
    with av.open(str(tmp_path / "cctv.mp4")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


def test_no_audio_works(tmp_path):
    source = make_clip(tmp_path / "silent.mp4", size=(32, 32), frames=2, audio=None)
    result = enhance_video(source, tmp_path / "silent-out.mp4", tiny_enhancer(NO_FIT))
    assert result.frames_done == 2 and audio_payloads(tmp_path / "silent-out.mp4") == []


# --- interruption and refusal ---------------------------------------------------------------


def test_ctrl_c_keeps_a_valid_shorter_video_with_matching_audio(clip, tmp_path):
    output = tmp_path / "cut.mp4"
    before = digest(clip)

    def interrupt_after_two(done, expected, report):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(VideoInterrupted) as caught:
        enhance_video(clip, output, tiny_enhancer(), on_frame=interrupt_after_two)
    assert caught.value.result.output == output and not caught.value.result.complete
    assert "valid" in caught.value.result.describe()
    assert frame_times(output) == frame_times(clip)[:2]
    assert 0 < len(audio_payloads(output)) < len(audio_payloads(clip))
    assert list(tmp_path.iterdir()) == [output]  # no temporary file left
    assert digest(clip) == before


def test_ctrl_c_before_any_frame_leaves_nothing(clip, tmp_path):
    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(VideoInterrupted) as caught:
        enhance_video(clip, tmp_path / "none.mp4", tiny_enhancer(NO_FIT), should_cancel=interrupt)
    assert caught.value.result.output is None and "nothing" in caught.value.result.describe()
    assert list(tmp_path.iterdir()) == []


def test_should_cancel_stops_cleanly(clip, tmp_path):
    calls = iter(range(100))
    result = enhance_video(clip, tmp_path / "part.mp4", tiny_enhancer(NO_FIT), should_cancel=lambda: next(calls) >= 1)
    assert result.frames_done == 1 and not result.complete
    assert len(frame_times(tmp_path / "part.mp4")) == 1


def test_refuses_to_overwrite_input_or_existing_output(clip, tmp_path):
    with pytest.raises(OutputError, match="input"):
        enhance_video(clip, clip, tiny_enhancer(NO_FIT), overwrite=True)
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        enhance_video(clip, existing, tiny_enhancer(NO_FIT))
    assert existing.read_bytes() == b"keep me"


def test_truncated_input_keeps_decoded_frames_and_says_so(tmp_path):
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:  # index first
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width = stream.height = 32
        for index in range(20):
            frame = av.VideoFrame.from_ndarray(np.random.default_rng(index).integers(0, 255, (32, 32, 3), np.uint8))
            frame.pts, frame.time_base = index, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError, match=r"truncated.*of the 20 frames it declares.*valid video"):
        enhance_video(cut, tmp_path / "cut-out.mp4", tiny_enhancer(NO_FIT))


# --- command line ---------------------------------------------------------------------------


def run_cli(*args: str):
    return CliRunner().invoke(video_command, [*map(str, args)])


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("text", "not a readable video file"),
        ("audio-only", "no video stream"),
        ("truncated", "truncated"),
    ],
)
def test_cli_bad_inputs_one_line_no_traceback(kind, message, clip, tmp_path):
    source = tmp_path / f"{kind}.mp4"
    if kind == "text":
        source.write_text("not a video\n")
    elif kind == "audio-only":
        source = tmp_path / "audio.m4a"
        with av.open(str(source), "w") as container:
            _write_tone(container, container.add_stream("aac", rate=44100, layout="mono"), seconds=0.2)
    elif kind == "truncated":
        source.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # index at the end: lost
    result = run_cli(source, tmp_path / "out.mp4", "--device", "cpu")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [result.output.strip().splitlines()[-1]]
    assert not (tmp_path / "out.mp4").exists()


def test_native_frames_too_large_for_the_memory_are_fitted_on_crops_with_a_note(clip, tmp_path, monkeypatch):
    from zeroig_plugin import sizing

    frame = np.random.default_rng(2).integers(0, 30, (30, 34, 3), dtype=np.uint8)
    native = WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=0)
    whole = tiny_enhancer(native)
    whole.enhance(frame)
    assert whole.last_report.fit_crop is None
    monkeypatch.setattr(sizing, "memory_budget", lambda device: sizing.whole_image_fit_bytes(24, 24, device))
    enhancer = tiny_enhancer(native)
    enhancer.enhance(frame)
    assert enhancer.last_report.fit_crop == 16
    enhancer.enhance(frame)
    assert enhancer.last_report.fit_crop == 16, "the warm-started frames too"
    result = run_cli(clip, tmp_path / "out.mp4", "--device", "cpu", "--fit-size", "0", "--first-iters", "2",
                     "--iters-per-frame", "1", "--max-frames", "2")
    assert result.exit_code == 0, result.output
    assert result.output.count("each fitting step sees two random 16x16 crops of the frame") == 1


def test_cli_enhances_with_progress_and_options(clip, tmp_path):
    output = tmp_path / "cli.mp4"
    result = run_cli(
        clip, output, "--device", "cpu", "--first-iters", "2", "--iters-per-frame", "1", "--fit-size", "32",
        "--max-frames", "3", "--output", "denoise", "--crf", "30", "--preset", "ultrafast",
    )
    assert result.exit_code == 0, result.output
    assert "3/3" in result.output and "frame/s" in result.output and "wrote 3 of 3 frames" in result.output
    assert frame_times(output) == frame_times(clip)[:3]
    assert run_cli(clip, output, "--device", "cpu").exit_code == 1  # exists, no --overwrite


def test_cli_ctrl_c_says_what_was_kept_and_exits_130(clip, tmp_path, monkeypatch):
    real_enhance = WarmStartEnhancer.enhance

    def enhance_then_ctrl_c(self, frame):
        if self.frames_done == 2:
            raise KeyboardInterrupt
        return real_enhance(self, frame)

    monkeypatch.setattr(WarmStartEnhancer, "enhance", enhance_then_ctrl_c)
    output = tmp_path / "stopped.mp4"
    result = run_cli(clip, output, "--device", "cpu", "--first-iters", "0", "--iters-per-frame", "0")
    assert result.exit_code == 130
    assert "interrupted: a shorter but valid video: wrote 2 of 6 frames" in result.output
    assert len(frame_times(output)) == 2


def test_cli_module_imports_only_click():
    code = "import sys, video.cli; print(sorted(m for m in ('torch', 'av', 'numpy', 'zeroig_plugin') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# --- containers, timestamps and paths -------------------------------------------------------


def make_plain_clip(path: Path, frames: int = 3, container_format: str | None = None, extra_streams: bool = False) -> Path:
    """A 32x32 clip at 10 frames/s (pts 0, 1, 2... in 1/10 s); ``container_format="h264"`` makes a
    raw stream, whose packets carry no timestamps; ``extra_streams`` adds a second video stream
    and a second audio stream after the first ones."""
    with av.open(str(path), "w", format=container_format) as container:
        videos = [container.add_stream("libx264", rate=10, options={"preset": "ultrafast"}) for _ in range(1 + extra_streams)]
        for video in videos:
            video.width = video.height = 32
        sounds = [container.add_stream("aac", rate=44100, layout="mono") for _ in range(2)] if extra_streams else []
        for index in range(frames):
            image = np.full((32, 32, 3), 10 + 5 * index, np.uint8)
            for video in videos:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, 10)
                container.mux(video.encode(frame))
        for video in videos:
            container.mux(video.encode(None))
        for sound in sounds:
            _write_tone(container, sound, seconds=frames / 10)
    return path


def test_raw_h264_frames_without_timestamps_are_spaced_by_the_frame_rate(tmp_path):
    source = make_plain_clip(tmp_path / "dvr.h264", frames=3, container_format="h264")
    assert [frame.time for frame in decode_frames(source)] == pytest.approx([0.0, 0.1, 0.2])
    enhance_video(source, tmp_path / "dvr.mp4", tiny_enhancer(NO_FIT))
    assert frame_times(tmp_path / "dvr.mp4") == [0, Fraction(1, 10), Fraction(2, 10)]


@pytest.mark.parametrize("name", ["out.avi", "out.webm", "out.xyz", "out"])
def test_outputs_without_exact_timestamps_or_h264_are_refused_naming_the_path_and_what_works(clip, tmp_path, name):
    with pytest.raises(OutputError) as refused:
        enhance_video(clip, tmp_path / name, tiny_enhancer(NO_FIT))
    message = str(refused.value)
    assert message.startswith(str(tmp_path / name) + ":") and "partial" not in message
    assert ".mp4, .mov, .mkv, .ts" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match=r"x\.avi: .*\.mp4, \.mov, \.mkv, \.ts"):
        VideoSink(tmp_path / "x.avi", probe(clip), None)


@pytest.mark.parametrize("suffix", [".ts", ".m2ts", ".mts"])
def test_mpegts_outputs_keep_the_frames_spacing_and_the_audio_in_sync(clip, tmp_path, suffix):
    output = tmp_path / f"broadcast{suffix}"
    enhance_video(clip, output, tiny_enhancer(NO_FIT))  # x264's medium preset: B-frames, so a start delay
    written, original = frame_times(output), frame_times(clip)
    assert [time - written[0] for time in written] == [time - original[0] for time in original]

    def audio_lead(path: Path) -> Fraction:
        with av.open(str(path)) as container:
            first_audio = next(p for p in container.demux(audio=0) if p.size)
            return frame_times(path)[0] - first_audio.pts * first_audio.time_base

    assert abs(audio_lead(output) - audio_lead(clip)) <= Fraction(1, 90000)
    adts_header = 7  # MPEG-TS carries AAC with an ADTS header on each packet
    assert [payload[adts_header:] for payload in audio_payloads(output)] == audio_payloads(clip)


def test_truncated_mkv_is_reported_and_a_live_recording_is_not(tmp_path):
    whole = make_plain_clip(tmp_path / "whole.mkv", frames=8)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    assert not probe(whole).truncated
    with pytest.raises(InputError, match=r"cut\.mkv: truncated.*decoded \d frames; a shorter but valid video"):
        enhance_video(cut, tmp_path / "cut-out.mp4", tiny_enhancer(NO_FIT))
    segment = data.index(bytes.fromhex("18538067")) + 4
    live = tmp_path / "live.mkv"  # as OBS writes a recording in progress: the Segment's size unknown
    live.write_bytes(data[:segment] + bytes.fromhex("01ffffffffffffff") + data[segment + 8 : int(len(data) * 0.8)])
    assert not probe(live).truncated


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_repeated_or_decreasing_timestamps_are_made_increasing_with_one_note(tmp_path, suffix):
    raw = make_plain_clip(tmp_path / "dvr.h264", frames=1, container_format="h264")  # a fine time base: 1/1200000
    info = probe(raw)
    tick = int(1 / (10 * info.time_base))
    stamps = [0, tick, tick, tick + 5, tick - 100, 3 * tick]  # a repeat, two stamps in one 90 kHz tick, a step back
    notes: list[str] = []
    output = tmp_path / f"out{suffix}"
    with VideoSink(output, info, None, preset="ultrafast", warn=notes.append) as sink:
        for pts in stamps:
            sink.write(np.zeros((32, 32, 3), np.uint8), pts)
    times = [time - frame_times(output)[0] for time in frame_times(output)]
    assert len(times) == len(stamps) and all(b > a for a, b in zip(times, times[1:]))
    assert times[1] == Fraction(1, 10) and times[-1] == Fraction(3, 10)
    assert len([note for note in notes if "timestamps" in note]) == 1


def test_an_output_that_cannot_be_created_is_refused_before_any_fit(clip):
    enhancer = tiny_enhancer()
    with pytest.raises(OutputError, match=r"^/proc/out\.mp4: cannot create the output"):
        enhance_video(clip, "/proc/out.mp4", enhancer)
    assert enhancer.frames_done == 0
    result = run_cli(clip, "/proc/out.mp4", "--device", "cpu", "--first-iters", "1")
    assert result.exit_code == 1 and "Error: /proc/out.mp4: cannot create the output" in result.output


def test_colons_in_file_names_are_not_read_as_protocols(clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names: FFmpeg reads "2024-01-01T12:" as a protocol, "/tmp/...:" not
    Path("2024-01-01T12:00:00.mp4").write_bytes(clip.read_bytes())
    enhance_video("2024-01-01T12:00:00.mp4", "cam2:out.mp4", tiny_enhancer(NO_FIT), max_frames=2)
    assert [frame.pts * frame.time_base for frame in decode_frames(tmp_path / "cam2:out.mp4")] == frame_times(clip)[:2]


def test_a_count_the_input_does_not_declare_is_not_made_up_from_max_frames(tmp_path):
    source = make_plain_clip(tmp_path / "short.mkv", frames=3)
    result = enhance_video(source, tmp_path / "short-out.mp4", tiny_enhancer(NO_FIT), max_frames=8)
    assert result.complete and result.frames_expected == 0
    assert result.describe().startswith("wrote 3 frames to")


def test_streams_left_out_are_named_in_one_note(tmp_path):
    source = make_plain_clip(tmp_path / "two-cameras.mkv", frames=2, extra_streams=True)
    notes: list[str] = []
    enhance_video(source, tmp_path / "out.mkv", tiny_enhancer(NO_FIT), warn=notes.append)
    left_out = [note for note in notes if "left out" in note]
    assert left_out == ["only the first video stream and the first audio stream are used; left out: 1 video stream, 1 audio stream"]
    with av.open(str(tmp_path / "out.mkv")) as container:
        assert (len(container.streams.video), len(container.streams.audio)) == (1, 1)


def test_cli_sigterm_keeps_a_valid_shorter_video_like_ctrl_c(clip, tmp_path, monkeypatch):
    import os
    import signal

    class Unhandled(Exception):
        pass

    def test_handler(signal_number, frame):
        raise Unhandled

    real_enhance = WarmStartEnhancer.enhance

    def enhance_then_sigterm(self, frame):
        if self.frames_done == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_enhance(self, frame)

    monkeypatch.setattr(WarmStartEnhancer, "enhance", enhance_then_sigterm)
    previous = signal.signal(signal.SIGTERM, test_handler)
    try:
        result = run_cli(clip, tmp_path / "stopped.mp4", "--device", "cpu", "--first-iters", "0", "--iters-per-frame", "0")
        assert signal.getsignal(signal.SIGTERM) is test_handler  # the command's own handler is gone again
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert "interrupted: a shorter but valid video: wrote 2 of 6 frames" in result.output
    assert len(frame_times(tmp_path / "stopped.mp4")) == 2
    assert list(tmp_path.iterdir()) == [tmp_path / "stopped.mp4"]


# --- scripting API --------------------------------------------------------------------------


def test_frame_by_frame_enhancer_keeps_warm_state_and_resets_on_cuts():
    enhancer = WarmStartEnhancer(WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=32, scene_cut_threshold=1.3), device="cpu")
    rng = np.random.default_rng(1)
    dark = rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)
    out = enhancer.enhance(dark)
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    assert enhancer.last_report.steps == 2
    enhancer.enhance(np.roll(dark, 1, axis=1))
    assert enhancer.last_report.steps == 1 and not enhancer.last_report.scene_cut
    other_scene = np.zeros_like(dark)
    other_scene[:, :16] = 200
    enhancer.enhance(other_scene)
    assert enhancer.last_report.scene_cut and enhancer.last_report.steps == 2
    assert enhancer.model.steps_done == 2  # restarted from the initial weights
    floats = enhancer.enhance(dark.astype(np.float32) / 255)
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() <= 1


def test_frames_the_enhancer_cannot_take_are_refused_before_its_state_changes():
    enhancer = tiny_enhancer()
    dark = np.random.default_rng(3).integers(0, 30, (32, 32, 3), dtype=np.uint8)
    enhancer.enhance(dark)
    nan_frame = dark.astype(np.float32) / 255
    nan_frame[0, 0, 0] = np.nan
    bad_frames = [dark.astype(np.float32), np.zeros((0, 0, 3), np.uint8), nan_frame]  # 0-255 floats, empty, NaN
    for bad in bad_frames:
        with pytest.raises(InputError):
            enhancer.enhance(bad)
    assert enhancer.frames_done == 1
    enhancer.enhance(np.roll(dark, 1, axis=1))
    assert np.isfinite(enhancer.last_report.cut_statistic) and not enhancer.last_report.scene_cut
    assert enhancer.last_report.steps == 1  # still warm


def test_frames_of_one_value_pass_through_unfitted_and_the_first_picture_gets_the_full_fit():
    enhancer = WarmStartEnhancer(WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=32), device="cpu")
    black, no_signal = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), (20, 40, 160), np.uint8)
    for flat in (black, no_signal, black):
        np.testing.assert_array_equal(enhancer.enhance(flat), flat)
        assert enhancer.last_report.steps == 0 and enhancer.model.steps_done == 0
    dark = np.random.default_rng(5).integers(0, 30, (32, 32, 3), dtype=np.uint8)
    enhancer.enhance(dark)
    assert enhancer.last_report.steps == 2 and enhancer.frames_done == 4
    enhancer.enhance(black)
    enhancer.enhance(np.roll(dark, 1, axis=1))  # a black frame between two of one scene cuts nothing
    assert enhancer.last_report.steps == 1 and not enhancer.last_report.scene_cut


def test_scene_cut_returns_to_the_given_checkpoint_not_the_seeded_init():
    checkpoint = WarmStartEnhancer(TINY, device="cpu", seed=7).model.state_dict()
    every_frame_a_cut = WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=32, scene_cut_threshold=-1.0)
    enhancer = WarmStartEnhancer(every_frame_a_cut, device="cpu", weights=checkpoint)
    dark = np.random.default_rng(2).integers(0, 30, (32, 32, 3), dtype=np.uint8)
    first = enhancer.enhance(dark)
    again = enhancer.enhance(dark)  # a cut: back to the checkpoint, same 2 steps, same result
    assert enhancer.last_report.scene_cut
    assert np.array_equal(first, again)
    seeded = WarmStartEnhancer(every_frame_a_cut, device="cpu").enhance(dark)
    assert not np.array_equal(first, seeded)


def test_brightness_reaches_the_frame_fits(clip, tmp_path, monkeypatch, dark_scene_rgb8):
    settings = WarmStartSettings(first_iters=80, iters_per_frame=1, fit_size=32, temporal_strength=0)
    means = {b: WarmStartEnhancer(settings, device="cpu", brightness=b).enhance(dark_scene_rgb8).mean() / 255 for b in (0.25, 0.7)}
    assert means[0.25] == pytest.approx(0.25, abs=0.07) and means[0.7] > means[0.25] + 0.2
    chosen = []
    real_init = WarmStartEnhancer.__init__

    def recording_init(self, settings, **options):
        real_init(self, settings, **options)
        chosen.append((self.model.recipe.brightness, self.model.recipe.fit_brightness_ratio is not None))

    monkeypatch.setattr(WarmStartEnhancer, "__init__", recording_init)
    for extra in ([], ["--exposure-gain"]):
        result = run_cli(clip, tmp_path / f"b{len(extra)}.mp4", "--device", "cpu", "--first-iters", "0",
                         "--iters-per-frame", "0", "--max-frames", "1", "--brightness", "0.3", *extra)
        assert result.exit_code == 0, result.output
    assert chosen == [(0.3, False), (0.3, True)]  # video fits set the level themselves unless asked
    assert run_cli(clip, tmp_path / "c.mp4", "--brightness", "0").exit_code == 2
    unknown_device = run_cli(clip, tmp_path / "d.mp4", "--device", "tpu")
    assert unknown_device.exit_code == 2 and "Invalid value for --device" in unknown_device.output
    assert not (tmp_path / "d.mp4").exists()


def test_settings_are_checked():
    with pytest.raises(ValueError):
        WarmStartSettings(weight_smoothing=1.0)
    with pytest.raises(ValueError):
        WarmStartSettings(output="both")
    with pytest.raises(ValueError, match="ensemble"):
        WarmStartSettings(ensemble=3)


def test_cli_defaults_mirror_the_settings_defaults():
    from video import cli
    from video.enhancer import DEFAULTS

    assert (cli.DEFAULT_FIRST_ITERS, cli.DEFAULT_ITERS_PER_FRAME, cli.DEFAULT_FIT_SIZE, cli.DEFAULT_SCENE_CUT,
            cli.DEFAULT_WEIGHT_SMOOTHING, cli.DEFAULT_TEMPORAL_STRENGTH, cli.DEFAULT_ENSEMBLE) == (
        DEFAULTS.first_iters, DEFAULTS.iters_per_frame, DEFAULTS.fit_size, DEFAULTS.scene_cut_threshold,
        DEFAULTS.weight_smoothing, DEFAULTS.temporal_strength, DEFAULTS.ensemble)
    assert cli.MAX_BRIGHTNESS == MAX_BRIGHTNESS


def test_iter_enhanced_frames_yields_every_frame_with_its_time(clip):
    frames = list(iter_enhanced_frames(clip, tiny_enhancer(), max_frames=3))
    assert [frame.index for frame in frames] == [0, 1, 2]
    assert [frame.pts * frame.time_base for frame in frames] == frame_times(clip)[:3]
    assert frames[0].rgb.dtype == np.uint8 and frames[0].rgb.shape == (30, 34, 3)


def test_threads_pass_worker_errors_to_the_caller():
    def broken():
        yield 1
        raise InputError("boom")

    with pytest.raises(InputError, match="boom"):
        list(prefetch(broken()))
    consumer = BackgroundConsumer(lambda item: 1 / item)
    consumer.submit(1)
    consumer.submit(0)
    with pytest.raises(ZeroDivisionError):
        consumer.finish()


# --- shared clips ---------------------------------------------------------------------------


def test_shared_surgical_clip_frames_and_timestamps(shared_data_dir, tmp_path):
    source = shared_data_dir / "video-dev" / "surgical" / "low" / "test_video02_100.mp4"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    result = enhance_video(source, tmp_path / "surgical.mp4", tiny_enhancer(NO_FIT), max_frames=2)
    assert result.frames_done == 2
    assert frame_times(tmp_path / "surgical.mp4") == frame_times(source)[:2]


def test_shared_fall_clip_audio_and_timestamps_survive_the_io(shared_data_dir, tmp_path):
    """The real 720x1280 clip with AAC audio through decode and encode (8 frames, no fit: CPU-cheap)."""
    from video.sink import VideoSink

    source = shared_data_dir / "video-dev" / "fall-lowlight.mp4"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    output = tmp_path / "fall.mp4"
    with VideoSink(output, probe(source), str(source), preset="ultrafast") as sink:
        for frame in decode_frames(source, max_frames=8):
            sink.write(frame.rgb, frame.pts)
    assert frame_times(output) == frame_times(source)[:8]
    assert audio_payloads(output) == audio_payloads(source)  # a whole-input close keeps all the audio


@pytest.mark.parametrize("ensemble", [1, 8])
def test_frames_are_normalised_with_the_statistics_of_the_fitted_copy(ensemble):
    settings = WarmStartSettings(
        first_iters=3, iters_per_frame=1, fit_size=24, weight_smoothing=0.0, temporal_strength=0.0, ensemble=ensemble
    )
    enhancer = tiny_enhancer(settings)
    assert enhancer.model.recipe.inference_statistics == "image"  # the default mode reads out that way
    rng = np.random.default_rng(5)
    frame = (rng.random((48, 64, 3)) * 0.15).astype(np.float32)
    out = enhancer.enhance(frame)
    fitted = enhancer.fit_view(torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0))
    borrowed = enhancer.model.infer(frame, statistics_from=fitted, ensemble=ensemble).denoise
    own = enhancer.model.infer(frame, ensemble=ensemble).denoise
    assert np.abs(out - borrowed).max() < 1e-5
    assert np.abs(out - own).max() > 1e-4
    other_ensemble = enhancer.model.infer(frame, statistics_from=fitted, ensemble=8 if ensemble == 1 else 1).denoise
    assert np.abs(out - other_ensemble).max() > 1e-4
