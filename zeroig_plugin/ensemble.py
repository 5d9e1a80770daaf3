"""Geometric self-ensemble: outputs averaged over flips and transposes of the input.

The fitted networks are not equivariant to flips or quarter turns, so each view of the image
gets its own estimate, with partly independent errors; mapped back and averaged, part of those
errors cancel (measured in docs/quality.md). The views are the symmetries of the square, in an
order where the first 2 and the first 4 are useful ensembles too: 2 = identity and left-right
flip, 4 = adds the up-down flip and both (rows stay rows: safe for sensors with row noise),
8 = adds the four with rows and columns transposed.
"""
from __future__ import annotations

import torch

from .errors import ZeroIGError
from .objective import Outputs

__all__ = ["ENSEMBLE_SIZES", "dihedral", "undo_dihedral", "check_ensemble_size", "EnsembleMean"]

ENSEMBLE_SIZES = (1, 2, 4, 8)


def dihedral(x: torch.Tensor, view: int) -> torch.Tensor:
    """``x`` ``(..., H, W)`` under symmetry ``view`` in ``[0, 8)``: bit 2 transposes the last two
    axes (first), bit 0 flips left-right, bit 1 flips up-down. ``(..., H, W)`` or ``(..., W, H)``."""
    if view & 4:
        x = x.transpose(-2, -1)
    flipped = [axis for bit, axis in ((1, -1), (2, -2)) if view & bit]
    return x.flip(flipped) if flipped else x


def undo_dihedral(x: torch.Tensor, view: int) -> torch.Tensor:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(x, v), v)`` equals ``x``."""
    flipped = [axis for bit, axis in ((1, -1), (2, -2)) if view & bit]
    if flipped:
        x = x.flip(flipped)
    return x.transpose(-2, -1) if view & 4 else x


def check_ensemble_size(size: int) -> int:
    if size not in ENSEMBLE_SIZES:
        raise ZeroIGError(f"ensemble size must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, got {size}")
    return size


class EnsembleMean:
    """The running mean of outputs inferred under several views, each mapped back by
    :func:`undo_dihedral` first.

    Example:
        >>> mean = EnsembleMean()
        >>> for view in range(size):
        ...     mean.add(infer(net, dihedral(image, view)), view)
        >>> averaged = mean.result()
    """

    def __init__(self) -> None:
        self._sums: list[torch.Tensor | float] = [0.0] * len(Outputs._fields)
        self._views = 0

    def add(self, outputs: Outputs, view: int) -> None:
        """Add ``outputs`` ``(..., H', W')`` inferred under :func:`dihedral` ``view``."""
        self._sums = [total + undo_dihedral(output, view) for total, output in zip(self._sums, outputs)]
        self._views += 1

    def result(self) -> Outputs:
        """The mean of the outputs added, ``(..., H, W)``."""
        if not self._views:
            raise ValueError("no outputs added")
        return Outputs(*(total / self._views for total in self._sums))
