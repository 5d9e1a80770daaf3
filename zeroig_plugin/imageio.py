"""Reading and writing still images: PNG, JPEG, TIFF and BMP, 8- and 16-bit, gray, RGB and RGBA.

Pixels come back as float32 in ``[0, 1]`` (``(H, W)`` for gray, ``(H, W, 3)`` for colour) with the
alpha channel kept apart, untouched, and the bit depth to write back with. EXIF orientation is
applied. Writes go to a temporary name and are renamed into place when complete.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_path
from .errors import InputError, OutputError

__all__ = ["LoadedImage", "read_image", "write_image", "to_float", "from_float", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP"}


@dataclass
class LoadedImage:
    """An image ready for the engine.

    Attributes:
        pixels: float32 ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB) in ``[0, 1]``.
        alpha: the alpha channel as stored (``(H, W)``, input dtype), or ``None``.
        bits: 8 or 16, the depth outputs are written with.
        path: where it came from.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bits: int
    path: Path

    @property
    def is_gray(self) -> bool:
        return self.pixels.ndim == 2


def to_float(array: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer or float pixels -> float32 in ``[0, 1]`` and the bit depth (8 or 16) to write back."""
    if array.dtype == np.uint8 or array.dtype == np.bool_:
        return array.astype(np.float32) / (1 if array.dtype == np.bool_ else 255), 8
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535, 16
    if np.issubdtype(array.dtype, np.integer):
        peak = 65535 if array.max(initial=0) <= 65535 else float(np.iinfo(array.dtype).max)
        return np.clip(array.astype(np.float64) / peak, 0, 1).astype(np.float32), 16
    if np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(finite, 0, 1), 16
    raise InputError(f"unsupported pixel type {array.dtype}")


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


def _read_pixels(path: Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` to an ``(H, W)`` or ``(H, W, C)`` array in its stored dtype, plus its EXIF orientation."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image_format = image.format
                orientation = int(image.getexif().get(0x0112, 1) or 1)
                image.load()  # decodes everything: truncated files fail here
                if image_format not in _FORMATS:
                    raise InputError(f"{path}: unsupported image format {image_format} (use PNG, JPEG, TIFF or BMP)")
                if image_format == "TIFF":
                    import tifffile

                    array = tifffile.imread(path, key=0)
                    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
                        array = np.moveaxis(array, 0, -1)
                elif image_format == "PNG" and (image.mode.startswith("I") or _png_bit_depth(path) == 16):
                    array = _read_png_with_opencv(path)
                else:
                    array = np.asarray(_to_standard_mode(image))
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (PNG, JPEG, TIFF or BMP expected)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: cannot decode image ({error})") from None
    return array, orientation


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as handle:
        header = handle.read(25)
    return header[24] if len(header) == 25 else 8


def _read_png_with_opencv(path: Path) -> np.ndarray:
    import cv2

    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InputError(f"{path}: cannot decode PNG")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return array


def _to_standard_mode(image):
    """Pillow image in any 8-bit mode -> L, LA, RGB or RGBA."""
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
    if image.mode == "F":
        return image
    return image.convert("RGB")


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
    array, orientation = _read_pixels(path)
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
    pixels, bits = to_float(array)
    return LoadedImage(pixels, alpha, bits, path)


def write_image(path: str | os.PathLike, pixels: np.ndarray, bits: int = 8, alpha: np.ndarray | None = None) -> Path:
    """Write float pixels (``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]``) as a PNG of ``bits`` depth.

    ``alpha`` (stored values, any integer dtype) is appended unchanged (rescaled only if its depth
    differs from ``bits``). The file appears at ``path`` only once fully written.

    Raises:
        OutputError: the file cannot be written.
    """
    import cv2

    path = Path(path)
    array = from_float(pixels, bits)
    if alpha is not None:
        if alpha.dtype != array.dtype:
            alpha = from_float(to_float(alpha)[0], bits)
        array = np.dstack([array, alpha]) if array.ndim == 3 else np.dstack([array, array, array, alpha])
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    temporary = atomic_write_path(path)
    try:
        ok, encoded = cv2.imencode(".png", array)
        if not ok:
            raise OutputError(f"{path}: PNG encoding failed")
        encoded.tofile(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path
