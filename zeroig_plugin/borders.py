"""Flat borders: letterbox and pillarbox bars, the zero fill around a registered or stitched image.

They are not part of the picture, yet the published fit treats them as picture: its exposure rule
aims the mean luminance of the whole frame at mid-grey, so a picture filling a fifth of a
letterboxed phone video is brightened as if four fifths of it were black scene, and the
denoisers turn the black bars into a tinted grey. The improved modes find the bars, fit and infer
on what they enclose, and give the bars back as they came in (:class:`ZeroIG`'s ``keep_borders``).

A border is a band of whole rows at the top or bottom, then of whole columns at the left or right
(within the rows that are left), at least :data:`MIN_BORDER` pixels thick, whose values all lie
within ``tolerance`` of each other: every channel of every pixel, across the band. Images use
exact equality (``tolerance=0``): the background of a dim fluorescence image can span less than
one 8-bit level, yet it is picture, and a digital bar or zero fill is exactly flat. Video
(:mod:`video.enhancer`) allows the few levels a codec leaves on its bars.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["ContentBox", "MIN_BORDER", "find_content", "paste_content"]

MIN_BORDER = 2
"""Thinner flat bands are left to the picture: one clipped row is no frame."""


class ContentBox(NamedTuple):
    """Rows ``top:bottom`` and columns ``left:right`` (half-open) of an image: what its flat
    borders enclose."""

    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def whole(cls, height: int, width: int) -> "ContentBox":
        return cls(0, height, 0, width)

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def covers(self, height: int, width: int) -> bool:
        """Whether this box is the whole of a ``height x width`` image (no border)."""
        return self == ContentBox.whole(height, width)

    def union(self, other: "ContentBox") -> "ContentBox":
        """The smallest box holding both."""
        return ContentBox(
            min(self.top, other.top), max(self.bottom, other.bottom), min(self.left, other.left), max(self.right, other.right)
        )

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        """``image[..., top:bottom, left:right]`` of ``(..., H, W)`` (a view)."""
        return image[..., self.top : self.bottom, self.left : self.right]


def _flat_run(lowest: torch.Tensor, highest: torch.Tensor, tolerance: float) -> int:
    """How many of the lines (given by each line's lowest and highest value), from the first on,
    hold values within ``tolerance`` of each other, all together."""
    span = highest.cummax(0).values - lowest.cummin(0).values
    return int((span <= tolerance).long().cumprod(0).sum())


def _band_ends(image: torch.Tensor, dim: int, tolerance: float) -> tuple[int, int]:
    """``(start, end)`` of the lines along ``dim`` (2: rows, 3: columns) of ``(N, C, H, W)`` left
    after flat bands at either end."""
    lines = image.shape[dim]
    edges = image.index_select(dim, torch.tensor([0, lines - 1], device=image.device))
    reduce = tuple(d for d in range(4) if d != dim)
    if bool((edges.amax(dim=reduce) - edges.amin(dim=reduce) > tolerance).all()):
        return 0, lines  # neither outermost line is flat: no border (most images), without a full scan
    lowest, highest = image.amin(dim=reduce), image.amax(dim=reduce)
    leading = _flat_run(lowest, highest, tolerance)
    trailing = _flat_run(lowest.flip(0), highest.flip(0), tolerance)
    start = leading if leading >= MIN_BORDER else 0
    end = lines - trailing if trailing >= MIN_BORDER else lines
    if start >= end:  # flat, or two flat halves: all picture
        return 0, lines
    return start, end


def find_content(image: torch.Tensor, tolerance: float = 0.0) -> ContentBox:
    """The box that ``image``'s flat borders enclose (the whole image when it has none).

    Args:
        image: ``(N, C, H, W)`` or ``(C, H, W)``; every image and channel must be flat in a band
            for it to count.
        tolerance: the most a band's values may differ, in the image's units (0: exactly equal).

    Example:
        >>> frame = torch.zeros(1, 3, 120, 160); frame[..., 20:100, :] = torch.rand(1, 3, 80, 160)
        >>> find_content(frame)
        ContentBox(top=20, bottom=100, left=0, right=160)
    """
    batched = image if image.ndim == 4 else image.unsqueeze(0)
    top, bottom = _band_ends(batched, 2, tolerance)
    left, right = _band_ends(batched[..., top:bottom, :], 3, tolerance)
    return ContentBox(top, bottom, left, right)


def paste_content(around: torch.Tensor, box: ContentBox, content: torch.Tensor) -> torch.Tensor:
    """A copy of ``around`` ``(..., H, W)`` with ``content`` ``(..., box.height, box.width)`` in
    ``box``: a result for the content, framed by the input's own borders."""
    framed = around.to(content.dtype, copy=True)
    box.crop(framed).copy_(content)
    return framed
