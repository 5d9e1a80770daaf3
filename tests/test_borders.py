"""Flat borders (letterbox bars, zero fill) are found, kept out of the fits and passed through."""
import numpy as np
import pytest
import torch

from video.enhancer import WarmStartEnhancer, WarmStartSettings
from zeroig_plugin import ContentBox, ZeroIG, find_content, paste_content
from zeroig_plugin.borders import MIN_BORDER


def noisy_dark(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A dark, noisy picture with a gentle gradient (no flat row or column anywhere)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 0.05, width, dtype=np.float32)[None, :, None]
    return (rng.random((height, width, channels), dtype=np.float32) * 0.08 + ramp).astype(np.float32)


def framed(picture: np.ndarray, top: int, bottom: int, left: int, right: int, value: float = 0.0) -> np.ndarray:
    height, width = picture.shape[:2]
    out = np.full((top + height + bottom, left + width + right, picture.shape[2]), value, np.float32)
    out[top : top + height, left : left + width] = picture
    return out


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def test_finds_letterbox_and_pillarbox_bars_of_any_one_colour():
    picture = noisy_dark(30, 40)
    assert find_content(as_tensor(framed(picture, 7, 5, 0, 0))) == ContentBox(7, 37, 0, 40)
    assert find_content(as_tensor(framed(picture, 0, 0, 3, 9, value=0.2))) == ContentBox(0, 30, 3, 43)
    box = find_content(as_tensor(framed(picture, 4, 6, 8, 2)))
    assert box == ContentBox(4, 34, 8, 48) and (box.height, box.width) == picture.shape[:2]


def test_a_noisy_picture_a_thin_flat_line_or_a_flat_image_has_no_border():
    picture = noisy_dark(30, 40)
    assert find_content(as_tensor(picture)).covers(30, 40)
    one_black_row = picture.copy()
    one_black_row[0] = 0
    assert MIN_BORDER > 1 and find_content(as_tensor(one_black_row)).covers(30, 40)
    assert find_content(torch.zeros(1, 3, 20, 20)).covers(20, 20)
    halves = torch.zeros(1, 3, 20, 20)
    halves[..., :10] = 0.8  # two flat halves are a picture, not two borders
    assert find_content(halves).covers(20, 20)


def test_a_tolerance_admits_a_codecs_noise_on_the_bars():
    picture = framed(noisy_dark(30, 40), 6, 6, 0, 0)
    picture[36:] += np.random.default_rng(1).integers(0, 4, picture[36:].shape) / 255  # the bottom bar
    assert find_content(as_tensor(picture)) == ContentBox(6, 42, 0, 40)
    assert find_content(as_tensor(picture), tolerance=4 / 255) == ContentBox(6, 36, 0, 40)


def test_a_band_counts_only_where_every_channel_is_flat():
    picture = framed(noisy_dark(30, 40), 6, 6, 0, 0)
    picture[:6, :, 2] = np.linspace(0, 0.1, 40)  # the blue channel of the top band varies
    assert find_content(as_tensor(picture)) == ContentBox(0, 36, 0, 40)


def test_paste_content_frames_a_result_with_the_input_borders():
    around = torch.full((1, 3, 10, 12), 0.25)
    box = ContentBox(2, 8, 3, 9)
    result = paste_content(around, box, torch.ones(1, 3, 6, 6))
    assert result[..., 2:8, 3:9].eq(1).all() and result[..., :2, :].eq(0.25).all() and result[..., :, 9:].eq(0.25).all()
    assert around.eq(0.25).all()  # the input is not written to


@pytest.mark.parametrize("channels", [3, 1])
def test_default_mode_enhances_a_framed_picture_as_the_picture_alone(channels):
    """The bars change nothing inside them (exposure, colour, noise) and come out as they went in."""
    picture = noisy_dark(36, 44, channels)
    bordered = framed(picture, 10, 14, 6, 4)
    outputs = []
    for image in (picture, bordered):
        model = ZeroIG(device="cpu")
        model.fit(image, 4)
        outputs.append(model.infer(image, ensemble=2))
    alone, in_frame = outputs
    for kind in ("enhance", "denoise", "linear"):
        framed_output = getattr(in_frame, kind)
        assert framed_output.shape == bordered.shape
        np.testing.assert_array_equal(framed_output[10:46, 6:50], getattr(alone, kind))
        inside = np.zeros(bordered.shape[:2], bool)
        inside[10:46, 6:50] = True
        assert np.all(framed_output[~inside] == 0)


def test_faithful_mode_and_keep_borders_false_enhance_the_bars_as_published():
    bordered = framed(noisy_dark(24, 32), 8, 8, 0, 0)
    for options in ({"mode": "faithful"}, {"keep_borders": False}):
        model = ZeroIG(device="cpu", **options)
        assert not model.recipe.keep_borders
        model.fit(bordered, 2)
        assert model.infer(bordered, ensemble=1).denoise[:8].max() > 0.01


def record_fitted_shapes(enhancer: WarmStartEnhancer) -> list[tuple]:
    """The shape of every image the enhancer's model is fitted on, as it goes."""
    shapes, real_fit = [], enhancer.model.fit
    enhancer.model.fit = lambda image, steps, **options: shapes.append(tuple(image.shape)) or real_fit(image, steps, **options)
    return shapes


def test_video_enhancer_keeps_bars_black_and_its_picture_box_still_within_a_scene():
    settings = WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=32)
    enhancer = WarmStartEnhancer(settings, device="cpu")
    fitted_shapes = record_fitted_shapes(enhancer)
    picture = (noisy_dark(40, 56) * 255).astype(np.uint8)
    first = framed(picture.astype(np.float32), 12, 12, 0, 0).astype(np.uint8)
    darker_edge = first.copy()
    darker_edge[12:16] = 0  # this frame's picture starts with black rows: the bars look thicker
    for frame in (first, darker_edge):
        out = enhancer.enhance(frame)
        assert np.all(out[:12] == 0) and np.all(out[52:] == 0) and out[12:52].mean() > 2 * picture.mean()
    assert len(set(fitted_shapes)) == 1  # the fit's input did not shrink to the second frame's bars


def test_a_black_frame_before_a_letterboxed_scene_does_not_set_its_box():
    """A fade from black: the first frame is blank, the bars appear with the picture."""
    settings = WarmStartSettings(first_iters=1, iters_per_frame=1, fit_size=0, scene_cut_threshold=None)
    enhancer = WarmStartEnhancer(settings, device="cpu")
    fitted_shapes = record_fitted_shapes(enhancer)
    picture = (noisy_dark(24, 40) * 255).astype(np.uint8)
    letterboxed = framed(picture.astype(np.float32), 8, 8, 0, 0).astype(np.uint8)
    for divisor in (0, 16, 4, 1):  # black, then ever brighter (no scene cut: the first frame's fit goes on)
        enhancer.enhance(letterboxed // divisor if divisor else np.zeros_like(letterboxed))
    assert fitted_shapes[-2:] == [(24, 40, 3)] * 2  # the box of the first frame that showed the picture


def test_video_enhancer_without_the_temporal_filter_treats_a_letterboxed_clip_as_the_clip():
    settings = WarmStartSettings(first_iters=2, iters_per_frame=1, fit_size=32, temporal_strength=0)
    frames = [(noisy_dark(40, 56, seed=seed) * 255).astype(np.uint8) for seed in range(3)]
    plain, letterboxed = WarmStartEnhancer(settings, device="cpu"), WarmStartEnhancer(settings, device="cpu")
    for frame in frames:
        expected = plain.enhance(frame)
        got = letterboxed.enhance(framed(frame.astype(np.float32), 8, 8, 0, 0).astype(np.uint8))
        np.testing.assert_array_equal(got[8:48], expected)


def test_image_cli_leaves_the_bars_of_a_letterboxed_photo_and_says_so(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from zeroig_plugin.cli import cli

    photo = framed(noisy_dark(24, 32), 10, 10, 0, 0)
    Image.fromarray((photo * 255).round().astype(np.uint8)).save(tmp_path / "letterboxed.png")
    result = CliRunner().invoke(cli, ["enhance", str(tmp_path / "letterboxed.png"), "-o", str(tmp_path / "out"),
                                      "--iters", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "flat borders left as they are, the 32x24 picture at x 0, y 10 enhanced" in result.output
    denoised = np.asarray(Image.open(tmp_path / "out" / "letterboxed_denoise.png"))
    assert not denoised[:10].any() and not denoised[34:].any() and denoised[10:34].mean() > 2 * 255 * photo[10:34].mean()


def test_video_cli_keeps_a_clips_black_bars_black(tmp_path):
    import av
    from click.testing import CliRunner

    from video.cli import video_command

    source, rng = tmp_path / "letterboxed.mp4", np.random.default_rng(3)
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(3):
            image = np.zeros((64, 64, 3), np.uint8)
            image[16:48] = np.roll(rng.integers(5, 45, (32, 64, 3)), index, axis=1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    output = tmp_path / "out.mp4"
    result = CliRunner().invoke(video_command, [str(source), str(output), "--device", "cpu", "--first-iters", "2",
                                                "--iters-per-frame", "1", "--fit-size", "32", "--preset", "ultrafast"])
    assert result.exit_code == 0, result.output
    assert "flat borders (letterbox bars) left as they are: enhancing the 64x32 picture at x 0, y 16" in result.output
    with av.open(str(output)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 3
    for frame in frames:  # within the codecs' noise on the bars, away from the picture's edge
        assert frame[:12].max() <= 4 and frame[52:].max() <= 4 and frame[20:44].mean() > 2 * 25  # input: 25
