"""Bilinear corner arithmetic shared by the float and fixed-point models.

Corners are always listed in the order ``(y0, x0), (y0, x1), (y1, x0), (y1, x1)`` with
``x1 = x0 + 1``, ``y1 = y0 + 1``. A corner is *valid* when it lies inside the readable
region (the whole map, or a slice's window, which is always inside the map); invalid
corners contribute zero, which is exactly ``grid_sample``'s ``padding_mode='zeros'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Corners", "LevelTable", "chunks", "corner_valid", "flat_pixel_index"]

#: Corner offsets (dy, dx) in the documented order.
CORNER_DY = np.array([0, 0, 1, 1], dtype=np.int64)
CORNER_DX = np.array([0, 1, 0, 1], dtype=np.int64)


@dataclass(frozen=True)
class LevelTable:
    """Per-level sizes laid out for broadcasting against ``(..., L, P)`` arrays.

    ``H``, ``W``, ``start``: int64 arrays of shape ``(L, 1)``; ``start[l]`` is the index of
    level ``l``'s first pixel in the flattened value (``S = sum H*W``).
    """

    H: np.ndarray
    W: np.ndarray
    start: np.ndarray
    total: int

    @classmethod
    def from_shapes(cls, spatial_shapes: np.ndarray) -> LevelTable:
        shapes = np.asarray(spatial_shapes, dtype=np.int64).reshape(-1, 2)
        sizes = shapes[:, 0] * shapes[:, 1]
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return cls(H=shapes[:, :1].copy(), W=shapes[:, 1:].copy(),
                   start=start[:, None].copy(), total=int(sizes.sum()))


@dataclass(frozen=True)
class Corners:
    """Integer corner positions of sampling points, shape ``(..., 4)`` each."""

    y: np.ndarray
    x: np.ndarray

    @classmethod
    def from_floor(cls, y0: np.ndarray, x0: np.ndarray) -> Corners:
        return cls(y=y0[..., None] + CORNER_DY, x=x0[..., None] + CORNER_DX)


def corner_valid(c: Corners, row_lo: ArrayLike, row_hi: ArrayLike, col_lo: ArrayLike,
                 col_hi: ArrayLike) -> np.ndarray:
    """Corners inside rows ``[row_lo, row_hi)`` and columns ``[col_lo, col_hi)``.

    Bounds broadcast against the point shape (one trailing corner axis is added).
    """
    def e(a: ArrayLike) -> np.ndarray:
        return np.asarray(a)[..., None]

    return (c.y >= e(row_lo)) & (c.y < e(row_hi)) & (c.x >= e(col_lo)) & (c.x < e(col_hi))


def flat_pixel_index(c: Corners, levels: LevelTable, valid: np.ndarray) -> np.ndarray:
    """Index into the flattened ``S`` axis of each corner; invalid corners point at 0."""
    idx = levels.start[..., None] + c.y * levels.W[..., None] + c.x
    return np.where(valid, idx, 0)


def chunks(total: int, per_item: int, budget: int = 1 << 22) -> Iterator[slice]:
    """Slices of ``range(total)`` so that ``len(chunk) * per_item`` stays near ``budget``.

    Bounds the memory of the vectorized model: intermediate arrays are sized by the chunk.
    """
    step = max(1, budget // max(per_item, 1))
    for lo in range(0, total, step):
        yield slice(lo, min(lo + step, total))
