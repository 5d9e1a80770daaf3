"""Reading and writing still images: PNG, JPEG, TIFF and BMP, 8- and 16-bit, gray, RGB and RGBA,
and TIFF stacks (several planes: z, time, channels).

Pixels come back as float32 in ``[0, 1]`` (``(H, W)`` for gray, ``(H, W, 3)`` for colour) with the
alpha channel kept apart, untouched, and the bit depth to write back with. EXIF orientation is
applied. An embedded ICC colour profile is kept and written with the outputs: their values are in
the input's encoding, so a Display P3 or Adobe RGB photo without its profile would be shown as
sRGB, its colours wrong. So is a photo's EXIF (camera, exposure, date, place), its orientation
reset to upright since the pixels are turned. A TIFF of several planes is read whole by
:func:`read_stack` (never one plane of it silently) and written back by :func:`write_stack` with
its axes and pixel size. Writes go to a temporary name and are renamed into place when complete.
"""
from __future__ import annotations

import logging
import os
import struct
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

from .checkpoint import atomic_write_path
from .errors import InputError, OutputError
from .provenance import SOFTWARE, record_text

__all__ = [
    "LoadedImage", "LoadedStack", "ValueScale", "read_image", "read_stack", "is_tiff", "tiff_stack_axes", "write_image", "write_tiff",
    "write_stack",
    "to_float", "from_float", "to_stored", "stored_form", "value_scale", "missing_values", "fill_no_data", "IMAGE_SUFFIXES",
    "FORMAT_NAMES",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP"}  # read by Pillow; TIFFs by tifffile unless CMYK, Lab, ...
FORMAT_NAMES = "PNG, JPEG, TIFF, BMP or WebP"
_ANIMATED_FORMATS = {"PNG": "PNG", "WEBP": "WebP"}  # refused when animated, by their names
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, either byte order
_IMAGEJ_METADATA = ("spacing", "unit", "finterval", "fps", "xorigin", "yorigin", "zorigin")
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap the image's axes
_OME_PIXEL_METADATA = tuple(f"{key}{unit}" for key in ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "TimeIncrement")
                            for unit in ("", "Unit"))


@dataclass(frozen=True)
class ValueScale:
    """How stored values map to pixels in ``[0, 1]``: ``(stored - offset) / scale``, and back
    (:func:`to_stored`) ``offset + pixel * scale``. ``offset`` is 0 unless the data holds negative
    values, whose minimum it then is."""

    scale: float
    offset: float = 0.0


@dataclass
class LoadedImage:
    """An image ready for the engine.

    Attributes:
        pixels: float32 ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB) in ``[0, 1]``.
        alpha: the alpha channel as stored (``(H, W)``, input dtype), or ``None``.
        bits: 8 or 16, the depth PNG outputs are written with.
        path: where it came from.
        stored_dtype, stored_scale: the input's dtype (uint8 for 1-bit) and how its values were
            mapped to ``pixels`` (:func:`value_scale`), so that :func:`write_tiff` writes outputs as
            stored (by default the unsigned integers of ``bits``).
        tiff_metadata: for TIFF input, the pixel size and ICC profile that :func:`write_tiff`
            copies (as :attr:`LoadedStack.metadata`; empty where the file has none); else ``None``.
        icc_profile: the ICC colour profile embedded in the input, or ``None``; pass it to
            :func:`write_image`.
        exif: the input's EXIF block (PNG, JPEG), its orientation set to upright and its pixel
            dimensions left out (the pixels are turned), or ``None``; pass it to :func:`write_image`.
        missing: where a float image stored NaN or an infinity (no data), shaped like ``pixels``,
            or ``None`` where it stored none: ``pixels`` hold 0 there, and :func:`write_tiff`
            writes NaN back.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bits: int
    path: Path
    stored_dtype: np.dtype | None = None
    stored_scale: ValueScale | None = None
    tiff_metadata: dict | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    missing: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.stored_dtype is None:  # made by hand: stored as its bit depth says
            self.stored_dtype = np.dtype(np.uint8 if self.bits == 8 else np.uint16)
            self.stored_scale = ValueScale(255.0 if self.bits == 8 else 65535.0)

    @property
    def is_gray(self) -> bool:
        return self.pixels.ndim == 2


def value_scale(array: np.ndarray) -> ValueScale:
    """How :func:`to_float` maps ``array`` to ``[0, 1]``: uint8 divided by 255, uint16 by 65535,
    bool by 1; other integers by 65535 or their maximum where it is above that, but by no more
    than their dtype's maximum (int16: 32767); floats by 1, or by their largest finite value where
    it is above 1 (a camera's counts stored as float). Data with negative values is first offset
    by its minimum, so that nothing is clipped; integers are then divided by no more than the
    room above that minimum, so that :func:`to_stored` writes every pixel back within the dtype."""
    fixed = {np.dtype(np.bool_): 1.0, np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
    if array.dtype in fixed:
        return ValueScale(fixed[array.dtype])
    if np.issubdtype(array.dtype, np.integer):
        offset = min(0, int(array.min(initial=0)))
        span = max(65535, int(array.max(initial=0)) - offset)
        return ValueScale(float(min(span, np.iinfo(array.dtype).max - offset)), float(offset))
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        offset = min(0.0, float(finite.min(initial=0.0)))
        return ValueScale(max(1.0, float(finite.max(initial=0.0)) - offset), offset)
    raise InputError(f"unsupported pixel type {array.dtype}")


def fill_no_data(values: np.ndarray, outside: float = 0.0) -> np.ndarray:
    """``values`` ``(H, W)`` or ``(H, W, C)`` with its NaN and infinities (no data) filled so that a
    fit sees no edge where the data ends: inside the box that bounds the data, each by the nearest
    finite value of its channel; outside it, by ``outside`` (whole rows and columns of one value,
    which the improved modes leave out as flat borders). A copy; ``values`` itself where all is finite.

    A zero fill would put a cliff beside the data's edge (the denoisers smooth across it, and the
    dark fill pulls the exposure rule's mean luminance down) and would frame a flat image around
    one missing pixel as its only picture.
    """
    finite = np.isfinite(values)
    if finite.all():
        return values
    filled = np.where(finite, values, outside)
    with_data = finite if values.ndim == 2 else finite.any(axis=2)
    rows, columns = np.flatnonzero(with_data.any(axis=1)), np.flatnonzero(with_data.any(axis=0))
    if not rows.size:
        return filled
    box = np.s_[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    boxed, boxed_finite = filled[box], finite[box]
    for channel in range(1 if values.ndim == 2 else values.shape[2]):
        plane = boxed if values.ndim == 2 else boxed[..., channel]
        has = boxed_finite if values.ndim == 2 else boxed_finite[..., channel]
        if has.any() and not has.all():
            nearest = distance_transform_edt(~has, return_distances=False, return_indices=True)
            plane[...] = plane[tuple(nearest)]
    return filled


def to_float(array: np.ndarray, scale: ValueScale | None = None) -> tuple[np.ndarray, int]:
    """Integer or float pixels -> float32 in ``[0, 1]`` (mapped by ``scale``, by default
    :func:`value_scale`; NaN and infinities, no data, filled by :func:`fill_no_data`) and the bit
    depth (8 or 16) to write a PNG back with."""
    scale = value_scale(array) if scale is None else scale
    bits = 8 if array.dtype in (np.uint8, np.bool_) else 16
    if array.dtype in (np.uint8, np.uint16, np.bool_):
        return array.astype(np.float32) / np.float32(scale.scale), bits
    values = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating):
        values = fill_no_data(values, outside=scale.offset)
    return np.clip((values - scale.offset) / scale.scale, 0, 1).astype(np.float32), bits


def stored_form(array: np.ndarray, scale: ValueScale | None = None) -> tuple[np.dtype, ValueScale]:
    """The dtype and scale :func:`to_stored` writes ``array``'s outputs with (1-bit as uint8);
    ``scale``: ``array``'s :func:`value_scale`, where it is already known."""
    if array.dtype == np.bool_:
        return np.dtype(np.uint8), ValueScale(255.0)
    return array.dtype, value_scale(array) if scale is None else scale


def to_stored(pixels: np.ndarray, scale: ValueScale, dtype) -> np.ndarray:
    """Float pixels in ``[0, 1]`` back on the scale :func:`to_float` read them from (the exact
    inverse): ``scale.offset + pixels * scale.scale`` in ``dtype``, rounded for integers, float32
    for floats."""
    values = scale.offset + np.clip(pixels, 0, 1).astype(np.float64) * scale.scale
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(np.float32)


def from_float(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Float pixels in ``[0, 1]`` -> rounded ``uint8`` or ``uint16``."""
    peak, dtype = (255, np.uint8) if bits == 8 else (65535, np.uint16)
    return np.rint(np.clip(pixels, 0, 1) * peak).astype(dtype)


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an ``(H, W, ...)`` array, as Pillow's exif_transpose does."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(transforms[orientation](array)) if orientation in transforms else array


def _read_pixels(path: Path) -> tuple[np.ndarray, int, dict | None, bytes | None, bytes | None]:
    """Decode ``path`` to an ``(H, W)`` or ``(H, W, C)`` array in its stored dtype, plus its EXIF
    orientation, for a TIFF its pixel size and ICC profile (``None`` for other formats), its
    embedded ICC profile (``None`` where it has none) and the EXIF to write with its outputs
    (:func:`_exif_for_outputs`; ``None`` for TIFFs, whose tags are the file's own)."""
    from PIL import Image, UnidentifiedImageError

    tiff_metadata = None
    if _is_tiff(path):
        array, orientation, tiff_metadata = _read_tiff_page(path)
        if array is not None:
            return array, orientation, tiff_metadata, tiff_metadata.get("iccprofile"), None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image_format = image.format
                orientation = _exif_orientation(image)
                image.load()  # decodes everything: truncated files fail here
                if image_format not in _FORMATS:
                    raise InputError(f"{path}: unsupported image format {image_format} (use {FORMAT_NAMES})")
                if image_format in _ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1:
                    raise InputError(f"{path}: an animated {_ANIMATED_FORMATS[image_format]} ({image.n_frames} frames); "
                                     "`zeroig video` takes moving pictures")
                icc_profile = image.info.get("icc_profile") or None
                exif = None if image_format == "TIFF" else _exif_for_outputs(image)
                if image_format == "PNG" and (image.mode.startswith("I") or _png_header(path)[0] == 16):
                    array = _read_png_with_opencv(path, image.info.get("transparency"))
                else:
                    array = np.asarray(_to_standard_mode(image))
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read ({FORMAT_NAMES} expected)") from None
    except Image.DecompressionBombError as error:
        raise InputError(f"{path}: too large for Pillow to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: cannot decode image ({error})") from None
    return array, orientation, tiff_metadata, icc_profile, exif


def _orientation(value) -> int:
    """An EXIF or TIFF orientation (1-8); 1, upright, for a malformed one (text, a fraction, out
    of range, several values), which Pillow ignores too: metadata never fails a read."""
    return value if isinstance(value, int) and value in range(1, 9) else 1


def _exif_orientation(image) -> int:
    """Pillow ``image``'s EXIF orientation (:func:`_orientation`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of each malformed tag it skips
            return _orientation(image.getexif().get(0x0112, 1))
    except Exception:  # Pillow raises many types on malformed EXIF
        return 1


def _exif_for_outputs(image) -> bytes | None:
    """The EXIF of Pillow ``image`` as a PNG eXIf chunk holds it (the TIFF-structured block), with
    the orientation upright and the pixel dimensions left out, since the pixels are turned upright
    when read; ``None`` where it has none or it cannot be parsed (metadata never fails a read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of each malformed tag it skips
            exif = image.getexif()
            if not exif:
                return None
            exif[0x0112] = 1  # Orientation
            details = exif.get_ifd(0x8769)  # the Exif IFD
            for dimension in (0xA002, 0xA003):  # PixelXDimension, PixelYDimension
                details.pop(dimension, None)
            block = exif.tobytes()
    except Exception:  # Pillow raises many types on malformed EXIF
        return None
    return block.removeprefix(b"Exif\0\0")


def _profile_fits(profile: bytes | None, colours: int) -> bool:
    """Whether ICC ``profile`` describes pixels of ``colours`` channels (1: gray, 3: RGB), by the
    data colour space in its header: a CMYK or Lab profile does not describe the RGB a CMYK or Lab
    image is decoded to."""
    if not profile or len(profile) < 128:
        return False
    return profile[16:20] == (b"GRAY" if colours == 1 else b"RGB ")


def _exif_with_software(exif: bytes) -> bytes:
    """``exif`` (an eXIf block) naming zeroig as the software that made the pixels; as it is
    where it cannot be parsed."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of each corrupt tag it skips
            parsed = Image.Exif()
            parsed.load(b"Exif\0\0" + exif)
            parsed[0x0131] = SOFTWARE
            return parsed.tobytes().removeprefix(b"Exif\0\0")
    except Exception:  # Pillow raises many types on malformed EXIF
        return exif


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_png_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """``png`` with a chunk of ``kind`` inserted right after its header chunk (IHDR: 8 bytes of
    signature, then 25 of chunk), where ancillary chunks such as iCCP must precede the image data."""
    return png[:33] + _png_chunk(kind, data) + png[33:]


def _gray_alpha_png(array: np.ndarray) -> bytes:
    """Gray + alpha, ``(H, W, 2)`` uint8 or uint16, as a PNG of that colour type, which OpenCV
    does not write."""
    height, width = array.shape[:2]
    samples = array.astype(array.dtype.newbyteorder(">")).view(np.uint8).reshape(height, -1)
    rows = np.hstack([np.zeros((height, 1), np.uint8), samples])  # each row led by filter type 0: none
    header = struct.pack(">IIBBBBB", width, height, 8 * array.dtype.itemsize, _PNG_GRAY_ALPHA, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes()))
            + _png_chunk(b"IEND", b""))


def _read_tiff_page(path: Path) -> tuple[np.ndarray | None, int, dict]:
    """A one-plane TIFF by tifffile (any sample type Pillow lacks: float RGB, 32-bit integers, BigTIFF):
    its pixels, orientation and pixel size; the pixels are ``None`` for the colour spaces that
    Pillow converts to RGB (CMYK, Lab, uncompressed YCbCr)."""
    try:
        with _open_tiff_quietly(path) as tiff:
            if not len(tiff.pages):
                raise InputError(f"{path}: the TIFF holds no image")
            _refuse_several_images(tiff, path)
            axes = _stack_axes(tiff)
            if axes is not None:
                raise InputError(f"{path}: a TIFF stack ({axes}); read it with read_stack")
            page = tiff.pages[0]
            metadata = _tiff_metadata(tiff)
            if not _tifffile_reads_colours_of(page):
                return None, 1, metadata
            array = page.asarray()
            if "S" in page.axes:  # colour samples last, also where stored as separate planes
                array = np.moveaxis(array, page.axes.index("S"), -1)
            array = _as_stored_colours(array, page, tiff.is_imagej, path)
            orientation = page.tags.get("Orientation")
            orientation = _orientation(orientation.value) if orientation is not None else 1
    except InputError:
        raise
    except Exception as error:  # tifffile and its codecs raise many types (zlib.error, ...) on a broken file
        raise InputError(f"{path}: cannot decode TIFF ({error})") from None
    return array, orientation, metadata


@contextmanager
def _open_tiff_quietly(path: Path):
    """``tifffile.TiffFile(path)``, with tifffile's log of what it finds wrong silenced: the
    caller reports a file it cannot use in one line, and a bad tag does not matter."""
    import tifffile

    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with tifffile.TiffFile(path) as tiff:
            yield tiff
    finally:
        logger.setLevel(level)


def _refuse_several_images(tiff, path: Path) -> None:
    """Refuse a TIFF whose pages are images of different sizes or kinds (tifffile's series
    beyond the first), rather than enhance its first only; thumbnails and pyramid levels are
    levels of their series, not series, and an OME-TIFF's first image is the one read."""
    if len(tiff.series) > 1 and not tiff.is_ome:
        shapes = ", ".join(f"{'x'.join(map(str, series.shape))} {series.dtype}" for series in tiff.series)
        raise InputError(f"{path}: holds {len(tiff.series)} images of different sizes or kinds ({shapes}), "
                         "not one image or a stack of equal planes: save each as its own file")


def _tifffile_reads_colours_of(page) -> bool:
    """Whether tifffile's pixels of ``page`` are gray, RGB or palette indices (JPEG decodes YCbCr to RGB)."""
    from tifffile import COMPRESSION, PHOTOMETRIC

    readable = (PHOTOMETRIC.MINISWHITE, PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.RGB, PHOTOMETRIC.PALETTE)
    return page.photometric in readable or (page.photometric == PHOTOMETRIC.YCBCR and page.compression == COMPRESSION.JPEG)


def _as_stored_colours(array: np.ndarray, page, imagej: bool, path: Path) -> np.ndarray:
    """Palette indices through the colour map (gray when the map is), white-is-zero inverted.

    ImageJ writes its display lookup table (a colour LUT, an inverted gray) into these two tags;
    its values are the measurement and stay as they are.
    """
    from tifffile import PHOTOMETRIC

    if imagej:
        return array
    if page.photometric == PHOTOMETRIC.MINISWHITE:
        if array.dtype == np.bool_:
            return ~array
        if not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"{path}: unsupported white-is-zero TIFF of {array.dtype} pixels")
        return (np.asarray(2 ** page.bitspersample - 1, array.dtype) - array).astype(array.dtype)
    if page.photometric == PHOTOMETRIC.PALETTE and page.colormap is not None:
        colour_map = page.colormap  # (3, 2**bits) uint16
        colours = np.moveaxis(colour_map[:, array], 0, -1)
        for scale in (256, 257):  # 8-bit colours, as most writers store them (v << 8 or v * 257)
            if not np.any(colour_map % scale):
                colours = (colours // scale).astype(np.uint8)
                break
        gray = np.array_equal(colour_map[0], colour_map[1]) and np.array_equal(colour_map[0], colour_map[2])
        return colours[..., 0] if gray else colours
    return array


_PNG_GRAY_ALPHA = 4  # the IHDR colour type of gray + alpha


def _png_header(path: Path) -> tuple[int, int]:
    """The PNG's bit depth and colour type, from its IHDR chunk."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return (header[24], header[25]) if len(header) == 26 else (8, 0)


def _read_png_with_opencv(path: Path, transparency) -> np.ndarray:
    """A 16-bit PNG, its ``transparency`` (Pillow's ``info["transparency"]``) as alpha."""
    import cv2

    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InputError(f"{path}: cannot decode PNG")
    if array.ndim == 2 and isinstance(transparency, int):  # a gray made transparent (tRNS): OpenCV drops it
        alpha = np.where(array == transparency, 0, np.iinfo(array.dtype).max).astype(array.dtype)
        return np.dstack([array, alpha])
    if array.ndim == 3 and array.shape[2] == 4 and _png_header(path)[1] == _PNG_GRAY_ALPHA:
        return array[..., [0, 3]]  # OpenCV spreads gray + alpha over BGRA; gray stays gray
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return array


def _to_standard_mode(image):
    """Pillow image in any 8-bit mode -> L, LA, RGB or RGBA: a palette of grays as gray, a
    transparent colour (tRNS) or palette entry as alpha."""
    if image.mode == "F":
        return image
    transparent = "transparency" in image.info or image.mode in ("LA", "PA", "RGBA")
    gray = image.mode in ("1", "L", "LA") or (image.mode in ("P", "PA") and _has_gray_palette(image))
    mode = ("LA" if transparent else "L") if gray else ("RGBA" if transparent else "RGB")
    return image if image.mode == mode else image.convert(mode)


def _has_gray_palette(image) -> bool:
    palette = np.asarray(image.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
    return bool(np.all(palette == palette[:, :1]))


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image file for enhancement.

    Raises:
        InputError: missing, empty, truncated, not an image, or of an unusable shape.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    array, orientation, tiff_metadata, icc_profile, exif = _read_pixels(path)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise InputError(f"{path}: unsupported image shape {array.shape} (gray, gray+alpha, RGB or RGBA expected)")
    if array.size == 0:
        raise InputError(f"{path}: image has no pixels")
    array = _orient(array, orientation)
    alpha = None
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array, alpha = array[..., :-1], array[..., -1].copy()
        if array.shape[2] == 1:
            array = array[..., 0]
    if not _profile_fits(icc_profile, 1 if array.ndim == 2 else 3):
        icc_profile = None  # e.g. a CMYK or Lab profile: the pixels were decoded to RGB
    missing = missing_values(array, path)
    scale = value_scale(array)
    pixels, bits = to_float(array, scale)
    stored_dtype, stored_scale = stored_form(array, scale)
    if tiff_metadata and orientation in _TRANSPOSING_ORIENTATIONS and "resolution" in tiff_metadata:
        tiff_metadata = {**tiff_metadata, "resolution": tiff_metadata["resolution"][::-1]}
    return LoadedImage(pixels, alpha, bits, path, stored_dtype, stored_scale, tiff_metadata, icc_profile, exif, missing)


def missing_values(array: np.ndarray, path: str | os.PathLike = "image") -> np.ndarray | None:
    """Where ``array`` (stored values) holds NaN, the float images' mark for no data (outside a
    registered or stitched field, masked pixels), or an infinity (no measurement either), or
    ``None`` where it holds neither.

    Raises:
        InputError: every value is NaN or infinite.
    """
    if not np.issubdtype(array.dtype, np.floating):
        return None
    missing = ~np.isfinite(array)
    if missing.all():
        raise InputError(f"{path}: every value is {'NaN' if np.isnan(array).all() else 'NaN or infinite'} (no data)")
    return missing if missing.any() else None


def write_image(
    path: str | os.PathLike, pixels: np.ndarray, bits: int = 8, alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None, exif: bytes | None = None, provenance: dict | None = None,
) -> Path:
    """Write float pixels (``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]``) as a PNG of ``bits`` depth.

    ``alpha`` (stored values, any integer dtype) is appended unchanged (rescaled only if its depth
    differs from ``bits``): gray + alpha stays gray. ``icc_profile`` (:attr:`LoadedImage.icc_profile`)
    is embedded where it describes the pixels written (an RGB profile for colour, a gray one for
    gray), else left out; ``exif`` (:attr:`LoadedImage.exif`) is embedded as
    it is. ``provenance`` (:func:`~zeroig_plugin.provenance.processing_record`) is written as the
    text chunks ``Software`` and ``Description`` (JSON), and as the EXIF's Software. The file
    appears at ``path`` only once fully written.

    Raises:
        ValueError: ``bits`` is neither 8 nor 16.
        OutputError: the file cannot be written.
    """
    if bits not in (8, 16):
        raise ValueError(f"a PNG is written with 8 or 16 bits, not {bits}")
    path = Path(path)
    array = from_float(pixels, bits)
    if alpha is not None:
        if alpha.dtype != array.dtype:
            alpha = from_float(to_float(alpha)[0], bits)
        array = np.dstack([array, alpha])
    png = _gray_alpha_png(array) if array.ndim == 3 and array.shape[2] == 2 else _png_by_opencv(array, path)
    if _profile_fits(icc_profile, 1 if pixels.ndim == 2 else 3):
        png = _with_png_chunk(png, b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))
    if exif:
        png = _with_png_chunk(png, b"eXIf", exif if provenance is None else _exif_with_software(exif))
    if provenance is not None:
        png = _with_png_chunk(png, b"tEXt", b"Description\0" + record_text(provenance).encode("ascii"))
        png = _with_png_chunk(png, b"tEXt", b"Software\0" + SOFTWARE.encode("ascii"))
    return _write_atomically(path, lambda temporary: temporary.write_bytes(png))


def _png_by_opencv(array: np.ndarray, path: Path) -> bytes:
    """Gray, RGB or RGBA ``array`` (uint8 or uint16) encoded as PNG."""
    import cv2

    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise OutputError(f"{path}: PNG encoding failed")
    return encoded.tobytes()


def _write_atomically(path: Path, write) -> Path:
    """``write(temporary)``, then rename the temporary file to ``path``; nothing is left on failure."""
    temporary = atomic_write_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


@dataclass
class LoadedStack:
    """A TIFF of several planes, as stored.

    Attributes:
        planes: the stored array, ``(..., H, W)`` or ``(..., H, W, 3 | 4)`` (colour last), in its dtype.
        axes: one letter per axis of ``planes`` as tifffile names them (``"ZCYX"``, ``"TYXS"``,
            ``"IYX"``...): ``C`` holds channels, ``S`` colour samples, ``Y`` and ``X`` the plane.
        metadata: what :func:`write_stack` copies to outputs: the pixel size, ImageJ's spacing,
            unit and frame interval, OME-XML's physical sizes, time increment and channel
            names, and the ICC colour profile, where the file has them.
        path: where it came from.
        missing: where a float stack's colour values are NaN (no data), shaped like ``planes``
            without alpha, or ``None`` where there is none (:func:`missing_values`).
    """

    planes: np.ndarray
    axes: str
    metadata: dict
    path: Path
    missing: np.ndarray | None = None

    @property
    def rgb(self) -> bool:
        return self.axes.endswith("S")

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("C") if "C" in self.axes else None

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(H, W)`` of each plane."""
        return self.planes.shape[-3:-1] if self.rgb else self.planes.shape[-2:]


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) in _TIFF_MAGIC


def is_tiff(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable file that starts as a TIFF does (classic or BigTIFF)."""
    try:
        return _is_tiff(Path(path))
    except OSError:
        return False


def tiff_stack_axes(path: str | os.PathLike) -> str | None:
    """The axes of the TIFF at ``path`` if it holds more than one plane, else ``None`` (also for
    files that are not TIFF or cannot be parsed: :func:`read_image` reports those). Reads the header only."""
    path = Path(path)
    try:
        if not _is_tiff(path):
            return None
        with _open_tiff_quietly(path) as tiff:
            return _stack_axes(tiff)
    except Exception:  # an unparsable header: read_image reports it
        return None


def _stack_axes(tiff) -> str | None:
    """The first series' axes if it has more than one plane (an axis other than Y, X and S above 1)."""
    series = tiff.series[0]
    outer = [size for size, axis in zip(series.shape, series.axes) if axis not in "YXS"]
    return series.axes if any(size > 1 for size in outer) else None


def read_stack(path: str | os.PathLike) -> LoadedStack:
    """Read every plane of a TIFF stack (colour samples moved last, axes of size 1 dropped).

    Raises:
        InputError: not a TIFF stack, unreadable, or with colour samples other than RGB or RGBA.
    """
    path = Path(path)
    if not path.is_file() or not _is_tiff(path):
        raise InputError(f"{path}: not a TIFF of several planes")
    try:
        with _open_tiff_quietly(path) as tiff:
            if _stack_axes(tiff) is None:
                raise InputError(f"{path}: not a TIFF of several planes")
            _refuse_several_images(tiff, path)
            series, page = tiff.series[0], tiff.pages[0]
            if not _tifffile_reads_colours_of(page):
                raise InputError(f"{path}: unsupported colour space {page.photometric.name} in a TIFF stack (gray, RGB or palette expected)")
            planes, axes = _as_stored_colours(series.asarray(), page, tiff.is_imagej, path), series.axes
            if planes.ndim == len(axes) + 1:  # palette colours
                axes += "S"
            metadata = _tiff_metadata(tiff)
    except InputError:
        raise
    except Exception as error:  # as in _read_tiff_page
        raise InputError(f"{path}: cannot decode TIFF stack ({error})") from None
    if "S" in axes:
        planes, axes = np.moveaxis(planes, axes.index("S"), -1), axes.replace("S", "") + "S"
    keep = [i for i, (size, axis) in enumerate(zip(planes.shape, axes)) if size > 1 or axis in "YXS"]
    planes, axes = planes.reshape([planes.shape[i] for i in keep]), "".join(axes[i] for i in keep)
    if not axes.endswith(("YX", "YXS")) or (axes.endswith("S") and planes.shape[-1] not in (3, 4)):
        raise InputError(f"{path}: unsupported TIFF stack layout {axes} {planes.shape} (gray or RGB(A) planes expected)")
    if planes.size == 0:
        raise InputError(f"{path}: image has no pixels")
    if not (np.issubdtype(planes.dtype, np.integer) or np.issubdtype(planes.dtype, np.floating)):
        raise InputError(f"{path}: unsupported pixel type {planes.dtype}")
    missing = missing_values(planes[..., :3] if axes.endswith("S") else planes, path)
    return LoadedStack(planes, axes, metadata, path, missing)


def _tiff_metadata(tiff) -> dict:
    page = tiff.pages[0]
    metadata: dict = {}
    x_resolution, y_resolution = page.tags.get("XResolution"), page.tags.get("YResolution")
    if x_resolution is not None and y_resolution is not None:
        metadata["resolution"] = (x_resolution.value, y_resolution.value)
        unit = page.tags.get("ResolutionUnit")
        metadata["resolutionunit"] = int(unit.value) if unit is not None else 2
    if tiff.is_imagej and tiff.imagej_metadata:
        metadata["imagej"] = {k: v for k, v in tiff.imagej_metadata.items() if k in _IMAGEJ_METADATA}
    if tiff.is_ome and (ome := _ome_pixel_metadata(tiff)):
        metadata["ome"] = ome
    profile = page.tags.get("InterColorProfile")
    if profile is not None and isinstance(profile.value, bytes):
        metadata["iccprofile"] = profile.value
    return metadata


def _ome_pixel_metadata(tiff) -> dict:
    """The first image's physical pixel sizes, time increment and channel names in OME-XML."""
    import tifffile

    try:
        image = tifffile.xml2dict(tiff.ome_metadata)["OME"]["Image"]
        pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
    except Exception:  # no or malformed OME-XML: the resolution tags still carry the pixel size
        return {}
    ome = {key: value for key, value in pixels.items() if key in _OME_PIXEL_METADATA}
    channels = pixels.get("Channel", [])
    channels = channels if isinstance(channels, list) else [channels]
    names = [channel.get("Name") for channel in channels if isinstance(channel, dict)]
    if names and all(isinstance(name, str) for name in names):
        ome["Channel"] = {"Name": names}
    return ome


def write_stack(
    path: str | os.PathLike, planes: np.ndarray, like: LoadedStack, provenance: dict | None = None,
) -> Path:
    """Write ``planes`` (integer or float, shaped like ``like.planes``) as a TIFF with ``like``'s axes
    and pixel size (an ImageJ hyperstack where the axes allow it), and ``provenance`` (see
    :func:`write_tiff`). The file appears at ``path`` only once fully written.

    Raises:
        ValueError: ``planes`` is not shaped like ``like.planes``.
        OutputError: the file cannot be written.
    """
    _check_shape(planes, like.planes, like.path)
    return _write_tiff(Path(path), planes, like.axes, like.metadata, like.rgb, provenance)


def write_tiff(
    path: str | os.PathLike, pixels: np.ndarray, like: LoadedImage, provenance: dict | None = None,
) -> Path:
    """Write float pixels (``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]``) as a one-plane TIFF stored as
    ``like`` was read (:func:`to_stored`: its dtype and scale, float32 for floats), NaN where
    ``like`` had no data (:attr:`LoadedImage.missing`); its alpha appended unchanged; its pixel size. ``provenance``
    (:func:`~zeroig_plugin.provenance.processing_record`) is written as the Software tag and, as
    JSON, where each flavour of TIFF keeps a description: ImageJ's Info (Image > Show Info), the
    OME image's Description, or the ``zeroig`` item of tifffile's JSON description. The file
    appears at ``path`` only once fully written.

    Raises:
        ValueError: ``pixels`` is not shaped like ``like.pixels``.
        OutputError: the file cannot be written.
    """
    _check_shape(pixels, like.pixels, like.path)
    stored = to_stored(pixels, like.stored_scale, like.stored_dtype)
    if like.missing is not None and np.issubdtype(stored.dtype, np.floating):
        stored[like.missing] = np.nan
    if like.alpha is not None:
        stored = np.dstack([stored, like.alpha.astype(stored.dtype)])
    axes = "YX" if stored.ndim == 2 else "YXS"
    return _write_tiff(Path(path), stored, axes, like.tiff_metadata or {}, pixels.ndim == 3, provenance)


def _check_shape(outputs: np.ndarray, read: np.ndarray, path: Path) -> None:
    if outputs.shape != read.shape:
        raise ValueError(f"outputs of shape {outputs.shape} do not fit {path}, read as {read.shape}")


def _write_tiff(path: Path, planes: np.ndarray, axes: str, metadata: dict, rgb: bool, provenance: dict | None) -> Path:
    import tifffile

    samples = planes.shape[-1] if axes.endswith("S") else 1
    extra = samples - (3 if rgb else 1)  # alpha
    options = {key: metadata[key] for key in ("resolution", "resolutionunit") if key in metadata}
    ome = metadata.get("ome")
    imagej = (ome is None and planes.dtype in ((np.uint8,) if rgb else (np.uint8, np.uint16, np.float32))
              and _imagej_order(axes) and not extra)
    if ome is not None:  # OME in, OME out: channel names only where the channel count still matches
        names = ome.get("Channel", {}).get("Name", [])
        keep_names = "C" in axes and len(names) == planes.shape[axes.index("C")]
        tags = {**{k: v for k, v in ome.items() if k != "Channel" or keep_names}, "axes": axes}
        options["ome"] = True
    else:
        tags = {**metadata.get("imagej", {}), "axes": axes} if imagej else {"axes": axes}
    if provenance is not None:
        options["software"] = SOFTWARE
        description = "Description" if ome is not None else "Info" if imagej else "zeroig"
        tags[description] = provenance if description == "zeroig" else record_text(provenance)
    if extra:
        options["extrasamples"] = ["unassalpha"] * extra
    if _profile_fits(metadata.get("iccprofile"), 3 if rgb else 1):
        options["iccprofile"] = metadata["iccprofile"]
    photometric = "rgb" if rgb else "minisblack"

    def write(temporary: Path) -> None:
        try:
            tifffile.imwrite(temporary, planes, imagej=imagej, metadata=tags, photometric=photometric,
                             planarconfig="contig" if samples > 1 else None, **options)
        except (ValueError, tifffile.OmeXmlError) as error:  # a layout or metadata the TIFF writer refuses
            raise OutputError(f"{path}: cannot write this TIFF layout ({error})") from None

    return _write_atomically(path, write)


def _imagej_order(axes: str) -> bool:
    """Whether ``axes`` is a subsequence of ImageJ's TZCYXS (the only layouts an ImageJ hyperstack holds)."""
    rest = iter("TZCYXS")
    return all(axis in rest for axis in axes)
