"""Image reading and writing: formats, depths, gray/RGB/RGBA, orientation, and broken files."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from zeroig_plugin import InputError, read_image, write_image
from zeroig_plugin.imageio import fill_no_data, from_float, read_stack, tiff_stack_axes, write_stack, write_tiff


def _gradient(height: int, width: int, channels: int, peak: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(height * width + channels)
    return rng.integers(0, peak + 1, (height, width, channels)).astype(dtype).squeeze()


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_8bit_rgb_reads_exactly(tmp_path, suffix):
    pixels = _gradient(13, 17, 3, 255, np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"x{suffix}")
    image = read_image(tmp_path / f"x{suffix}")
    assert image.bits == 8 and image.alpha is None and image.pixels.shape == (13, 17, 3)
    assert np.array_equal(from_float(image.pixels, 8), pixels)


def test_jpeg_reads_as_8bit_rgb(tmp_path):
    Image.fromarray(_gradient(16, 16, 3, 255, np.uint8)).save(tmp_path / "x.jpg", quality=95)
    image = read_image(tmp_path / "x.jpg")
    assert image.bits == 8 and image.pixels.shape == (16, 16, 3) and image.pixels.dtype == np.float32


def test_16bit_rgb_png_round_trips_every_level(tmp_path):
    import cv2

    pixels = _gradient(9, 11, 3, 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "x.png"), pixels[..., ::-1])
    image = read_image(tmp_path / "x.png")
    assert image.bits == 16 and np.array_equal(from_float(image.pixels, 16), pixels)
    write_image(tmp_path / "y.png", image.pixels, bits=image.bits)
    assert np.array_equal(read_image(tmp_path / "y.png").pixels, image.pixels)


def test_16bit_gray_png_and_tiff(tmp_path):
    pixels = _gradient(10, 7, 1, 65535, np.uint16)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    tifffile.imwrite(tmp_path / "g.tif", pixels)
    for name in ("g.png", "g.tif"):
        image = read_image(tmp_path / name)
        assert image.is_gray and image.bits == 16 and np.array_equal(from_float(image.pixels, 16), pixels), name


def test_gray_writes_gray(tmp_path):
    write_image(tmp_path / "g.png", np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7), bits=8)
    assert Image.open(tmp_path / "g.png").mode == "L"


def test_rgba_alpha_is_kept_apart_and_written_back_unchanged(tmp_path):
    rgba = _gradient(6, 5, 4, 255, np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.pixels.shape == (6, 5, 3) and np.array_equal(image.alpha, rgba[..., 3])
    write_image(tmp_path / "b.png", image.pixels, bits=8, alpha=image.alpha)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgba)


def test_float_tiff_in_unit_range_is_kept_beyond_it_scaled_by_its_peak_and_negatives_offset(tmp_path):
    tifffile.imwrite(tmp_path / "unit.tif", np.array([[0.0, 0.25], [0.5, 1.0]], np.float32))
    tifffile.imwrite(tmp_path / "counts.tif", np.array([[0.0, 1000.0], [2000.0, 4000.0]], np.float32))
    tifffile.imwrite(tmp_path / "signed.tif", np.array([[-0.5, 0.25], [0.5, 1.0]], np.float32))
    image = read_image(tmp_path / "unit.tif")
    assert image.bits == 16 and np.allclose(image.pixels, [[0, 0.25], [0.5, 1]])
    assert np.allclose(read_image(tmp_path / "counts.tif").pixels, [[0, 0.25], [0.5, 1]])
    assert np.allclose(read_image(tmp_path / "signed.tif").pixels, [[0, 0.5], [2 / 3, 1]])  # offset by -0.5, over 1.5


def test_infinities_in_a_float_tiff_are_no_data_and_a_tiff_of_only_infinities_is_refused(tmp_path):
    stored = np.array([[np.inf, 0.25], [0.5, -np.inf]], np.float32)
    tifffile.imwrite(tmp_path / "inf.tif", stored)
    image = read_image(tmp_path / "inf.tif")
    assert np.array_equal(image.missing, ~np.isfinite(stored)) and set(image.pixels.ravel()) == {0.25, 0.5}
    tifffile.imwrite(tmp_path / "all-inf.tif", np.full((2, 2), np.inf, np.float32))
    with pytest.raises(InputError, match="all-inf.tif: every value is NaN or infinite"):
        read_image(tmp_path / "all-inf.tif")


def test_nan_in_a_float_tiff_is_no_data_filled_from_its_neighbours_and_written_back_as_nan(tmp_path):
    stored = np.array([[np.nan, 0.25], [0.5, 0.5]], np.float32)
    tifffile.imwrite(tmp_path / "holes.tif", stored)
    image = read_image(tmp_path / "holes.tif")
    assert np.array_equal(image.missing, np.isnan(stored)) and image.pixels[0, 0] in (0.25, 0.5)
    write_tiff(tmp_path / "out.tif", np.full((2, 2), 0.75, np.float32), like=image)
    written = tifffile.imread(tmp_path / "out.tif")
    assert np.array_equal(np.isnan(written), np.isnan(stored)) and np.all(written[~np.isnan(stored)] == 0.75)
    tifffile.imwrite(tmp_path / "whole.tif", np.array([[0.1, 0.2]], np.float32))
    assert read_image(tmp_path / "whole.tif").missing is None
    tifffile.imwrite(tmp_path / "empty.tif", np.full((2, 2), np.nan, np.float32))
    with pytest.raises(InputError, match="every value is NaN"):
        read_image(tmp_path / "empty.tif")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation, suffix):
    pixels = _gradient(4, 6, 3, 255, np.uint8)
    picture = Image.fromarray(pixels)
    exif = picture.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{suffix}"
    picture.save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(from_float(read_image(path).pixels, 8), expected)


def test_written_file_appears_only_complete_and_leaves_no_temporary(tmp_path):
    write_image(tmp_path / "out.png", np.zeros((3, 3, 3), np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, not pixels"), "not an image"),
    ],
)
def test_unreadable_inputs_raise_input_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InputError, match=message) as raised:
        read_image(path)
    assert str(path) in str(raised.value)


def test_truncated_png_raises_input_error(tmp_path):
    Image.fromarray(_gradient(64, 64, 3, 255, np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_only_tiffs_of_several_planes_are_stacks_and_read_image_refuses_them(tmp_path):
    Image.fromarray(_gradient(8, 9, 3, 255, np.uint8)).save(tmp_path / "rgb.tif")
    Image.fromarray(_gradient(8, 9, 3, 255, np.uint8)).save(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "one.tif", _gradient(8, 9, 1, 65535, np.uint16)[None])
    tifffile.imwrite(tmp_path / "pages.tif", _gradient(8, 9, 3, 4000, np.uint16).transpose(2, 0, 1), photometric="minisblack")
    assert [tiff_stack_axes(tmp_path / n) for n in ("rgb.tif", "rgb.png", "one.tif")] == [None, None, None]
    assert tiff_stack_axes(tmp_path / "pages.tif") == "QYX"
    with pytest.raises(InputError, match="pages.tif: a TIFF stack"):
        read_image(tmp_path / "pages.tif")


def test_imagej_hyperstack_round_trips_with_its_axes_and_pixel_size(tmp_path):
    planes = _gradient(6, 7, 12, 65535, np.uint16).transpose(2, 0, 1).reshape(3, 2, 2, 6, 7)  # TZCYX
    tifffile.imwrite(tmp_path / "h.tif", planes, imagej=True, resolution=(4.0, 4.0),
                     metadata={"axes": "TZCYX", "spacing": 0.7, "unit": "um", "finterval": 2.5})
    stack = read_stack(tmp_path / "h.tif")
    assert stack.axes == "TZCYX" and stack.channel_axis == 2 and not stack.rgb and np.array_equal(stack.planes, planes)
    write_stack(tmp_path / "copy.tif", stack.planes[::-1].copy(), like=stack)
    with tifffile.TiffFile(tmp_path / "copy.tif") as tiff:
        assert tiff.series[0].axes == "TZCYX" and np.array_equal(tiff.asarray(), planes[::-1])
        assert {k: tiff.imagej_metadata[k] for k in ("spacing", "unit", "finterval")} == {"spacing": 0.7, "unit": "um", "finterval": 2.5}
        assert tiff.pages[0].tags["XResolution"].value == (4, 1)
    assert not list(tmp_path.glob(".*partial*"))


def test_planar_rgb_stack_reads_with_colour_last(tmp_path):
    planes = _gradient(5, 6, 24, 255, np.uint8).transpose(2, 0, 1).reshape(4, 3, 2, 5, 6)[:, :, 0]
    tifffile.imwrite(tmp_path / "p.tif", planes, photometric="rgb", planarconfig="separate")
    stack = read_stack(tmp_path / "p.tif")
    assert stack.rgb and stack.axes.endswith("YXS") and stack.planes.shape == (4, 5, 6, 3)
    assert np.array_equal(stack.planes, planes.transpose(0, 2, 3, 1))


def test_tiffs_pillow_cannot_read_are_read_by_tifffile(tmp_path):
    rgb = np.random.default_rng(1).random((6, 5, 3)).astype(np.float32) * 0.2
    tifffile.imwrite(tmp_path / "float-rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "big.tif", _gradient(6, 5, 1, 65535, np.uint16), bigtiff=True)
    image = read_image(tmp_path / "float-rgb.tif")
    assert image.bits == 16 and np.array_equal(image.pixels, rgb)
    assert np.array_equal(from_float(read_image(tmp_path / "big.tif").pixels, 16), _gradient(6, 5, 1, 65535, np.uint16))


def _pillow_tiff(path, pixels: np.ndarray, mode: str, **save) -> np.ndarray:
    """Save ``pixels`` converted to Pillow ``mode``; return what Pillow shows of the file (RGB or L)."""
    image = Image.fromarray(pixels)
    image = image.quantize(32) if mode == "P" else image.convert(mode)
    image.save(path, **save)
    with Image.open(path) as saved:
        return np.asarray(saved.convert("L" if pixels.ndim == 2 else "RGB"))


@pytest.mark.parametrize("name, mode, save", [
    ("palette", "P", {}),
    ("gray-palette", "P", {}),
    ("cmyk", "CMYK", {}),
    ("jpeg-ycbcr", "RGB", {"compression": "jpeg"}),
    ("lzw", "RGB", {"compression": "tiff_lzw"}),
    ("lzw-gray", "L", {"compression": "tiff_lzw"}),
    ("packbits", "RGB", {"compression": "packbits"}),
    ("fax", "1", {"compression": "group4"}),
])
def test_tiff_colour_spaces_and_compressions_read_as_pillow_shows_them(tmp_path, name, mode, save):
    rgb = _gradient(12, 10, 3, 255, np.uint8)
    pixels = rgb[..., 0] if name in ("gray-palette", "lzw-gray", "fax") else rgb
    if name == "gray-palette":
        pixels = np.repeat(pixels[..., None] // 16 * 16, 3, axis=-1)  # 16 gray levels: a gray colour map
    shown = _pillow_tiff(tmp_path / f"{name}.tif", pixels, mode, **save)
    image = read_image(tmp_path / f"{name}.tif")
    expected = shown[..., 0] if name == "gray-palette" else shown
    assert image.bits == 8 and image.alpha is None and image.pixels.shape == expected.shape
    assert np.array_equal(from_float(image.pixels, 8), expected)


def test_white_is_zero_tiff_is_inverted_unless_imagej_wrote_it(tmp_path):
    values = _gradient(6, 7, 1, 4000, np.uint16)
    tifffile.imwrite(tmp_path / "white-is-zero.tif", values, photometric="miniswhite")
    assert np.array_equal(from_float(read_image(tmp_path / "white-is-zero.tif").pixels, 16), 65535 - values)
    tifffile.imwrite(tmp_path / "imagej.tif", values[None].repeat(2, 0), photometric="miniswhite", imagej=True,
                     metadata={"axes": "ZYX"})  # ImageJ's inverted LUT: a display setting
    assert np.array_equal(read_stack(tmp_path / "imagej.tif").planes, values[None].repeat(2, 0))


def test_palette_stack_reads_as_colour_and_imagej_lut_as_its_values(tmp_path):
    indices = _gradient(5, 6, 3, 255, np.uint8).transpose(2, 0, 1)
    colour_map = np.stack([np.arange(256), 255 - np.arange(256), np.full(256, 40)]).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "palette.tif", indices, photometric="palette", colormap=colour_map)
    stack = read_stack(tmp_path / "palette.tif")
    assert stack.rgb and stack.planes.dtype == np.uint8
    assert np.array_equal(stack.planes, np.moveaxis(colour_map[:, indices] // 257, 0, -1))
    tifffile.imwrite(tmp_path / "lut.tif", indices, imagej=True, colormap=colour_map, metadata={"axes": "ZYX"})
    assert np.array_equal(read_stack(tmp_path / "lut.tif").planes, indices)


def test_lzw_compressed_stack_reads(tmp_path):
    planes = _gradient(9, 8, 4, 65535, np.uint16).transpose(2, 0, 1)
    tifffile.imwrite(tmp_path / "lzw.tif", planes, compression="lzw", photometric="minisblack")
    assert np.array_equal(read_stack(tmp_path / "lzw.tif").planes, planes)


@pytest.mark.parametrize("stack", [False, True])
def test_truncated_compressed_tiff_raises_input_error(tmp_path, stack):
    shape = (3, 64, 64) if stack else (64, 64)
    tifffile.imwrite(tmp_path / "full.tif", _gradient(64, 64, 3, 4000, np.uint16).transpose(2, 0, 1)[: 3 if stack else 1].squeeze(),
                     compression="zlib", photometric="minisblack")
    assert tifffile.imread(tmp_path / "full.tif").shape == shape
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) - 300])
    with pytest.raises(InputError, match="cut.tif: cannot decode TIFF"):
        (read_stack if stack else read_image)(tmp_path / "cut.tif")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def test_16bit_gray_alpha_png_stays_gray_with_its_alpha(tmp_path):
    gray, alpha = _gradient(5, 6, 1, 65535, np.uint16), _gradient(5, 7, 1, 65535, np.uint16)[:, :6]
    rows = b"".join(b"\0" + np.dstack([gray, alpha])[y].astype(">u2").tobytes() for y in range(5))  # filter 0 per row
    header = struct.pack(">IIBBBBB", 6, 5, 16, 4, 0, 0, 0)  # 16-bit, colour type 4: gray + alpha (neither tool writes it)
    (tmp_path / "la.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                                      + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))
    image = read_image(tmp_path / "la.png")
    assert image.is_gray and image.bits == 16
    assert np.array_equal(from_float(image.pixels, 16), gray) and np.array_equal(image.alpha, alpha)


@pytest.mark.parametrize("dtype, samples", [
    (np.uint8, 1), (np.uint16, 3), (np.uint16, 2), (np.uint8, 4), (np.float32, 1), (np.float32, 3), (np.int32, 1),
])
def test_one_plane_tiff_round_trips_through_write_tiff(tmp_path, dtype, samples):
    peak = {np.uint8: 255, np.int32: 200_000}.get(dtype, 60000)  # int32: counts beyond 16 bits
    stored = _gradient(6, 7, samples, peak, dtype)
    stored = stored / np.float32(7) if dtype == np.float32 else stored  # floats above 1: counts
    alpha = samples in (2, 4)
    tifffile.imwrite(tmp_path / "in.tif", stored, photometric="rgb" if samples >= 3 else "minisblack",
                     extrasamples=["unassalpha"] if alpha else None, planarconfig="contig" if samples > 1 else None,
                     resolution=(5.0, 2.5))
    image = read_image(tmp_path / "in.tif")
    if dtype == np.int32:  # divided by its peak, not by 2**31: the image is not crushed to black
        assert image.pixels.max() == 1.0
    write_tiff(tmp_path / "out.tif", image.pixels, like=image)
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        written = tiff.asarray()
        assert (tiff.pages[0].tags["XResolution"].value, tiff.pages[0].tags["YResolution"].value) == ((5, 1), (5, 2))
    assert written.dtype == stored.dtype and np.allclose(written, stored, rtol=1e-6)


def test_rgb_uint16_stack_is_written(tmp_path):
    planes = _gradient(5, 6, 6, 65535, np.uint16).reshape(5, 6, 2, 3).transpose(2, 0, 1, 3)
    tifffile.imwrite(tmp_path / "rgb16.tif", planes, photometric="rgb")
    stack = read_stack(tmp_path / "rgb16.tif")
    write_stack(tmp_path / "copy.tif", stack.planes, like=stack)
    assert np.array_equal(tifffile.imread(tmp_path / "copy.tif"), planes)


def test_cmyk_tiff_read_through_pillow_keeps_its_pixel_size(tmp_path):
    Image.fromarray(_gradient(4, 6, 3, 255, np.uint8)).convert("CMYK").save(tmp_path / "print.tif", dpi=(300, 150))
    image = read_image(tmp_path / "print.tif")
    write_tiff(tmp_path / "out.tif", image.pixels, like=image)
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        tags = tiff.pages[0].tags
        assert (tags["XResolution"].value, tags["YResolution"].value) == ((300, 1), (150, 1))
        assert tags["ResolutionUnit"].value == 2  # inch


def test_pixel_size_follows_an_orientation_that_swaps_the_axes(tmp_path):
    orientation_tag = (274, "H", 1, 6, False)  # EXIF/TIFF orientation 6: rotated a quarter turn
    tifffile.imwrite(tmp_path / "turned.tif", _gradient(4, 6, 1, 255, np.uint8), resolution=(5.0, 2.5), extratags=[orientation_tag])
    image = read_image(tmp_path / "turned.tif")
    assert image.pixels.shape == (6, 4)
    assert [tuple(value) for value in image.tiff_metadata["resolution"]] == [(5, 2), (5, 1)]


def _ome_pixels(path) -> dict:
    with tifffile.TiffFile(path) as tiff:
        assert tiff.is_ome
        return tifffile.xml2dict(tiff.ome_metadata)["OME"]["Image"]["Pixels"]


def test_ome_tiff_pixel_sizes_and_channel_names_are_copied(tmp_path):
    planes = _gradient(8, 9, 12, 4000, np.uint16).transpose(2, 0, 1).reshape(3, 2, 2, 8, 9)[:, :, 0]  # ZCYX
    sizes = {"PhysicalSizeX": 0.65, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.65, "PhysicalSizeZ": 2.0}
    tifffile.imwrite(tmp_path / "cells.ome.tif", planes, ome=True,
                     metadata={"axes": "ZCYX", **sizes, "Channel": {"Name": ["DAPI", "GFP"]}})
    stack = read_stack(tmp_path / "cells.ome.tif")
    write_stack(tmp_path / "copy.ome.tif", stack.planes, like=stack)
    copied = _ome_pixels(tmp_path / "copy.ome.tif")
    assert {key: copied.get(key) for key in sizes} == sizes
    assert [channel["Name"] for channel in copied["Channel"]] == ["DAPI", "GFP"]
    assert np.array_equal(tifffile.imread(tmp_path / "copy.ome.tif"), planes)
    tifffile.imwrite(tmp_path / "plane.ome.tif", planes[0, 0], ome=True, metadata={"axes": "YX", **sizes})
    image = read_image(tmp_path / "plane.ome.tif")
    write_tiff(tmp_path / "plane-copy.ome.tif", image.pixels, like=image)
    assert {key: _ome_pixels(tmp_path / "plane-copy.ome.tif").get(key) for key in sizes} == sizes


def test_a_layout_the_tiff_writer_refuses_is_an_output_error_and_leaves_nothing(tmp_path):
    from zeroig_plugin import LoadedStack, OutputError

    generic_pages = LoadedStack(np.zeros((2, 4, 5), np.uint16), "IYX", {"ome": {"PhysicalSizeX": 0.5}}, tmp_path / "x.tif")
    with pytest.raises(OutputError, match="out.tif: cannot write this TIFF layout"):  # OME has no 'I' axis
        write_stack(tmp_path / "out.tif", generic_pages.planes, like=generic_pages)
    assert list(tmp_path.iterdir()) == []


def _profile(colour_space: bytes) -> bytes:
    """An ICC profile (littleCMS's sRGB) whose header names ``colour_space``; readers copy it as bytes."""
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[16:20] = colour_space
    return bytes(profile)


@pytest.mark.parametrize(("suffix", "bits"), [(".png", 8), (".png", 16), (".jpg", 8)])
def test_icc_profile_is_read_and_embedded_in_the_png_written(tmp_path, suffix, bits):
    profile = _profile(b"RGB ")
    source = tmp_path / f"p3{suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(source, icc_profile=profile)
    image = read_image(source)
    assert image.icc_profile == profile
    out = write_image(tmp_path / "out.png", image.pixels, bits=bits, icc_profile=image.icc_profile)
    written = read_image(out)
    assert written.icc_profile == profile
    assert written.bits == bits
    np.testing.assert_allclose(written.pixels, image.pixels, atol=0.5 / 255)


def test_gray_png_keeps_a_gray_profile_and_an_rgb_output_drops_it(tmp_path):
    profile = _profile(b"GRAY")
    source = tmp_path / "gray.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(source, icc_profile=profile)
    image = read_image(source)
    assert image.icc_profile == profile
    assert read_image(write_image(tmp_path / "gray_out.png", image.pixels, icc_profile=profile)).icc_profile == profile
    colour = np.repeat(image.pixels[..., None], 3, axis=2)
    with Image.open(write_image(tmp_path / "rgb_out.png", colour, icc_profile=profile)) as written:
        assert "icc_profile" not in written.info
    alpha = np.full(image.pixels.shape, 255, np.uint8)
    with Image.open(write_image(tmp_path / "ga_out.png", image.pixels, alpha=alpha, icc_profile=profile)) as written:
        assert written.mode == "LA" and written.info["icc_profile"] == profile  # gray + alpha stays gray


def test_cmyk_profile_is_not_given_to_the_rgb_it_is_decoded_to(tmp_path):
    source = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (10, 20, 30, 40)).save(source, icc_profile=_profile(b"CMYK"))
    assert read_image(source).icc_profile is None


@pytest.mark.parametrize("stack", [False, True])
def test_tiff_icc_profile_is_copied_to_tiff_outputs(tmp_path, stack):
    profile = _profile(b"RGB ")
    source = tmp_path / "colour.tif"
    shape = (2, 6, 8, 3) if stack else (6, 8, 3)
    tifffile.imwrite(source, np.full(shape, 1000, np.uint16), photometric="rgb", iccprofile=profile)
    out = tmp_path / "out.tif"
    if stack:
        loaded = read_stack(source)
        write_stack(out, loaded.planes, like=loaded)
    else:
        loaded = read_image(source)
        assert loaded.icc_profile == profile
        write_tiff(out, loaded.pixels, like=loaded)
    with tifffile.TiffFile(out) as written:
        assert written.pages[0].tags["InterColorProfile"].value == profile


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_is_written_with_the_outputs_upright_and_without_the_turned_dimensions(tmp_path, suffix):
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0132] = 6, "Acme", "2026:12:04 21:30:00"  # orientation, make, date
    exif.get_ifd(0x8769).update({0x829A: (1, 4), 0xA002: 30, 0xA003: 20})  # exposure 1/4 s, pixel size
    exif.get_ifd(0x8825)[1] = "N"  # GPS latitude reference
    source = tmp_path / f"night{suffix}"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(source, exif=exif)
    image = read_image(source)
    assert image.pixels.shape == (30, 20, 3)  # turned upright
    with Image.open(write_image(tmp_path / "out.png", image.pixels, exif=image.exif)) as written:
        kept = written.getexif()
        assert kept[0x0112] == 1 and kept[0x010F] == "Acme" and kept[0x0132] == "2026:12:04 21:30:00"
        assert dict(kept.get_ifd(0x8769)) == {0x829A: (1, 4)}
        assert dict(kept.get_ifd(0x8825)) == {1: "N"}


def test_no_data_is_filled_by_the_nearest_data_inside_the_data_s_box_and_by_the_fill_value_outside():
    flat = np.full((9, 9), 0.1)
    flat[4, 4] = np.nan  # one masked pixel of a flat image leaves it flat, not a dark spot framed by flat borders
    assert np.array_equal(fill_no_data(flat), np.full((9, 9), 0.1))
    ramp = np.tile(np.linspace(0.1, 0.9, 8), (8, 1))
    field = np.full((12, 12, 2), np.nan)
    field[2:10, 3:11, 0] = ramp
    field[2:10, 3:11, 1] = ramp.T
    field[2:10, 3:11][np.triu_indices(8, 4)] = np.nan  # a corner outside a rotated field
    filled = fill_no_data(field, outside=-1.0)
    inside = filled[2:10, 3:11]
    assert np.all(np.isfinite(filled)) and np.all(np.delete(filled, np.s_[2:10], axis=0) == -1.0)
    assert np.all(np.delete(filled, np.s_[3:11], axis=1) == -1.0)  # whole flat bands: borders to the engine
    assert np.array_equal(inside[np.isfinite(field[2:10, 3:11])], field[2:10, 3:11][np.isfinite(field[2:10, 3:11])])
    assert np.all((inside >= 0.1) & (inside <= 0.9))  # each channel from its own data, no cliff to a fill value
    assert np.all(np.abs(np.diff(inside[..., 1], axis=0)) <= 0.9 / 7 + 1e-9)  # continuous where the data was cut off
    whole = np.ones((3, 3))
    assert fill_no_data(whole) is whole


def test_malformed_or_missing_exif_is_no_exif(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "plain.png")
    assert read_image(tmp_path / "plain.png").exif is None
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "broken.jpg", exif=b"Exif\0\0not a tiff header")
    broken = read_image(tmp_path / "broken.jpg")
    assert broken.exif is None and broken.pixels.shape == (4, 4, 3)


def test_every_kind_of_tiff_carries_the_provenance_where_its_readers_look(tmp_path):
    import json

    record = {"software": "zeroig test", "mode": "improved", "steps": 7}
    pixels = np.random.default_rng(4).integers(0, 60000, (10, 12, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", pixels, photometric="rgb")  # no ImageJ form for 16-bit RGB
    tifffile.imwrite(tmp_path / "gray.ome.tif", pixels[..., 0], ome=True, metadata={"PhysicalSizeX": 0.2})
    tifffile.imwrite(tmp_path / "gray.tif", pixels[..., 0], imagej=True)
    described = {}
    for name in ("rgb16.tif", "gray.ome.tif", "gray.tif"):
        image = read_image(tmp_path / name)
        write_tiff(tmp_path / f"out_{name}", image.pixels, like=image, provenance=record)
        with tifffile.TiffFile(tmp_path / f"out_{name}") as tiff:
            assert tiff.pages[0].tags["Software"].value.startswith("zeroig ")
            if tiff.is_ome:
                described[name] = json.loads(tifffile.xml2dict(tiff.ome_metadata)["OME"]["Image"]["Description"])
            elif tiff.is_imagej:
                described[name] = json.loads(tiff.imagej_metadata["Info"])
            else:
                described[name] = tiff.shaped_metadata[0]["zeroig"]
            np.testing.assert_array_equal(tiff.asarray(), tifffile.imread(tmp_path / name))
    assert described == {name: record for name in described} and len(described) == 3


def test_unreadable_exif_is_kept_as_it_is_when_the_software_cannot_be_set(tmp_path):
    garbage = b"XX*\0\x08\0\0\0"  # not a TIFF byte order: Pillow cannot parse it
    write_image(tmp_path / "x.png", np.full((4, 4, 3), 0.5, np.float32), exif=garbage, provenance={"software": "zeroig"})
    with Image.open(tmp_path / "x.png") as written:
        written.load()
        assert written.info["exif"].removeprefix(b"Exif\0\0") == garbage and written.text["Software"].startswith("zeroig ")


def test_webp_is_read_with_its_alpha_and_exif_and_an_animated_one_is_refused(tmp_path):
    pixels = np.random.default_rng(8).integers(0, 60, (12, 14, 4)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0110] = "Pixel 9"
    Image.fromarray(pixels).save(tmp_path / "shot.webp", lossless=True, exact=True, exif=exif)
    image = read_image(tmp_path / "shot.webp")
    np.testing.assert_array_equal(from_float(image.pixels, 8), pixels[..., :3])
    np.testing.assert_array_equal(image.alpha, pixels[..., 3])
    assert image.exif is not None and b"Pixel 9" in image.exif
    frames = [Image.fromarray(pixels[..., :3] + shift) for shift in (0, 40)]
    frames[0].save(tmp_path / "clip.webp", save_all=True, append_images=frames[1:], lossless=True)
    with pytest.raises(InputError, match="animated WebP .2 frames.*zeroig video"):
        read_image(tmp_path / "clip.webp")


def test_a_png_too_large_for_pillow_is_an_input_error(tmp_path):
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 400 megapixels: over Pillow's bomb limit
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                                        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 20001)) + _png_chunk(b"IEND", b""))
    with pytest.raises(InputError, match="huge.png: too large for Pillow to decode safely"):
        read_image(tmp_path / "huge.png")


@pytest.mark.parametrize("name, stored", [
    ("non-negative int16", np.array([[0, 1000], [3000, 2999]], np.int16)),
    ("CT in int16", np.array([[-995, -1], [0, 996]], np.int16)),
    ("int16, its whole range", np.array([[-32768, 0], [1, 32767]], np.int16)),
    ("int8 with negatives", np.array([[-128, -5], [0, 127]], np.int8)),
    ("int32 with negatives", np.array([[-1000, 0], [5, 200_000]], np.int32)),
    ("float with negatives", np.array([[-3.5, 0.0], [0.25, 700.0]], np.float32)),
])
def test_signed_and_negative_data_is_read_unclipped_and_written_back_exactly(tmp_path, name, stored):
    tifffile.imwrite(tmp_path / "in.tif", stored)
    image = read_image(tmp_path / "in.tif")
    assert image.pixels.min() >= 0 and image.pixels.max() <= 1
    assert np.array_equal(np.argsort(image.pixels, axis=None), np.argsort(stored, axis=None)), "order kept: nothing clipped"
    if stored.min() < 0:
        assert image.pixels.min() == 0
    write_tiff(tmp_path / "same.tif", image.pixels, like=image)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "same.tif"), stored, rtol=1e-6, atol=1e-6 * np.ptp(stored))
    ramp = np.linspace(0, 1, stored.size, dtype=np.float32).reshape(stored.shape)
    write_tiff(tmp_path / "ramp.tif", ramp, like=image)  # brightened outputs up to 1.0
    written = tifffile.imread(tmp_path / "ramp.tif").ravel()
    assert written.dtype == stored.dtype and np.all(np.diff(written) > 0), "the top of the scale is not clipped"
    assert written[0] == stored.min() or stored.min() >= 0


def test_non_negative_int16_is_scaled_by_its_dtype_maximum(tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", np.array([[0, 32767]], np.int16))
    np.testing.assert_array_equal(read_image(tmp_path / "in.tif").pixels, [[0, 1]])


def test_a_negative_stack_maps_to_unit_range_and_back_exactly_by_one_scale():
    from zeroig_plugin.imageio import stored_form, to_float, to_stored, value_scale

    planes = np.array([[[-500, 10]], [[20, 3000]]], np.int16)  # the second plane has no negative value
    scale = value_scale(planes)
    dtype, stored_scale = stored_form(planes, scale)
    unit = [to_float(plane, scale)[0] for plane in planes]
    assert unit[0].min() == 0 and unit[1].min() > 0  # one offset for the stack, not one per plane
    np.testing.assert_array_equal([to_stored(u, stored_scale, dtype) for u in unit], planes)


def test_a_tiff_of_pages_of_different_sizes_is_refused_naming_them_and_a_thumbnail_is_no_page(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tiff:
        for shape, dtype in (((16, 24), np.uint16), ((8, 12), np.uint16), ((16, 24), np.uint8)):
            tiff.write(np.zeros(shape, dtype))
    with pytest.raises(InputError, match=r"mixed.tif: holds 3 images of different sizes or kinds "
                                         r"\(16x24 uint16, 8x12 uint16, 16x24 uint8\)"):
        read_image(tmp_path / "mixed.tif")
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tiff:
        tiff.write(_gradient(16, 24, 1, 60000, np.uint16))
        tiff.write(np.zeros((4, 6), np.uint16), subfiletype=1)  # a reduced-resolution copy
    assert np.array_equal(from_float(read_image(tmp_path / "thumb.tif").pixels, 16), _gradient(16, 24, 1, 60000, np.uint16))


def test_a_stack_followed_by_an_image_of_another_size_is_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tiff:
        tiff.write(np.zeros((3, 16, 24), np.uint16), photometric="minisblack")
        tiff.write(np.zeros((8, 12), np.uint16))
    with pytest.raises(InputError, match="mixed.tif: holds 2 images"):
        read_stack(tmp_path / "mixed.tif")


@pytest.mark.parametrize("width", [3, 4, 5])
def test_planar_rgb_tiff_reads_with_colour_last_whatever_its_width(tmp_path, width):
    planes = _gradient(3, 16, width, 255, np.uint8).reshape(3, 16, width)
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    image = read_image(tmp_path / "planar.tif")
    assert image.alpha is None and np.array_equal(from_float(image.pixels, 8), planes.transpose(1, 2, 0))


@pytest.mark.parametrize("bits", [8, 16])
def test_gray_alpha_png_is_written_gray_with_its_alpha_and_gray_profile(tmp_path, bits):
    from zeroig_plugin.imageio import _png_header

    dtype = np.uint8 if bits == 8 else np.uint16
    gray, alpha = _gradient(5, 6, 1, 2**bits - 1, dtype), _gradient(5, 7, 1, 2**bits - 1, dtype)[:, :6]
    pixels = gray.astype(np.float32) / (2**bits - 1)
    out = write_image(tmp_path / "la.png", pixels, bits=bits, alpha=alpha, icc_profile=_profile(b"GRAY"))
    assert _png_header(out) == (bits, 4)  # gray + alpha
    written = read_image(out)
    assert written.is_gray and written.icc_profile == _profile(b"GRAY") and written.bits == bits
    assert np.array_equal(from_float(written.pixels, bits), gray) and np.array_equal(written.alpha, alpha)


def _exif_with_orientation(entry_type: int, count: int, value: bytes) -> bytes:
    """An EXIF block whose one tag is an Orientation of ``entry_type`` (TIFF field type)."""
    inline = len(value) <= 4
    field = value.ljust(4, b"\0") if inline else struct.pack("<I", 26)  # 26: after the header and the IFD
    ifd = struct.pack("<HHHI", 1, 0x0112, entry_type, count) + field + struct.pack("<I", 0)
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd + (b"" if inline else value)


@pytest.mark.parametrize("entry_type, count, value", [
    (2, 4, b"six\0"),  # ASCII
    (5, 1, struct.pack("<II", 6, 0)),  # RATIONAL 6/0
    (3, 2, struct.pack("<HH", 6, 6)),  # SHORT, two of them
])
def test_a_malformed_exif_orientation_is_ignored_without_warnings(tmp_path, entry_type, count, value):
    import warnings

    Image.fromarray(_gradient(4, 6, 3, 255, np.uint8)).save(tmp_path / "x.jpg", exif=_exif_with_orientation(entry_type, count, value))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "x.jpg")
    assert image.pixels.shape in ((4, 6, 3), (6, 4, 3))


def test_an_animated_png_is_refused_as_an_animated_webp_is(tmp_path):
    frames = [Image.fromarray(_gradient(8, 9, 3, 200, np.uint8) + shift) for shift in (0, 40)]
    frames[0].save(tmp_path / "clip.png", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="clip.png: an animated PNG .2 frames.*zeroig video"):
        read_image(tmp_path / "clip.png")


def test_a_transparent_colour_of_a_gray_or_rgb_png_is_read_as_alpha(tmp_path):
    gray = np.array([[0, 90], [200, 0]], np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png", transparency=0)
    Image.fromarray(np.dstack([gray] * 3)).save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    rows = b"".join(b"\0" + (gray[y].astype(np.uint16) * 257).astype(">u2").tobytes() for y in range(2))
    (tmp_path / "gray16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 16, 0, 0, 0, 0))
                                          + _png_chunk(b"tRNS", struct.pack(">H", 0)) + _png_chunk(b"IDAT", zlib.compress(rows))
                                          + _png_chunk(b"IEND", b""))
    opaque = np.where(gray == 0, 0, 1)
    for name, gray_out in (("gray.png", True), ("rgb.png", False), ("gray16.png", True)):
        image = read_image(tmp_path / name)
        assert image.is_gray == gray_out and np.array_equal(image.alpha > 0, opaque), name


def test_a_palette_png_of_grays_reads_as_gray(tmp_path):
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255])
    image.save(tmp_path / "gray-palette.png")
    loaded = read_image(tmp_path / "gray-palette.png")
    assert loaded.is_gray and np.array_equal(from_float(loaded.pixels, 8), [[0, 128], [255, 128]])


def test_a_tiff_with_no_pages_is_one_error_and_no_tifffile_log(tmp_path, caplog):
    (tmp_path / "empty.tif").write_bytes(b"II*\0\0\0\0\0")  # a header pointing to no page
    assert tiff_stack_axes(tmp_path / "empty.tif") is None
    with pytest.raises(InputError, match="empty.tif"):
        read_image(tmp_path / "empty.tif")
    assert [record.getMessage() for record in caplog.records if record.name == "tifffile"] == []


def test_writers_refuse_an_unsupported_depth_and_outputs_of_another_shape(tmp_path):
    with pytest.raises(ValueError, match="8 or 16 bits, not 12"):
        write_image(tmp_path / "x.png", np.zeros((2, 2), np.float32), bits=12)
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((4, 5), np.uint16))
    with pytest.raises(ValueError, match=r"outputs of shape \(5, 4\) do not fit .*in.tif, read as \(4, 5\)"):
        write_tiff(tmp_path / "out.tif", np.zeros((5, 4), np.float32), like=read_image(tmp_path / "in.tif"))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 4, 5), np.uint16), photometric="minisblack")
    stack = read_stack(tmp_path / "stack.tif")
    with pytest.raises(ValueError, match="do not fit"):
        write_stack(tmp_path / "out.tif", np.zeros((3, 4, 5), np.uint16), like=stack)
    assert not (tmp_path / "out.tif").exists()
