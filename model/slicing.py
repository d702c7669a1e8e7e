"""The training-free slicing strategy: slices, their windows on every level, clamp bounds.

Semantics (``docs/slicing.md``):

* Level 0 (the largest) is cut into ``n_rows = ceil(H0 / Hs)`` by ``n_cols = ceil(W0 / Ws)``
  slices, row-major; slice ``(i, j)`` covers rows ``[i*Hs, min((i+1)*Hs, H0))`` and the
  matching columns. The last row/column may be smaller.
* On level ``l`` the slice's region maps to rows ``[floor(r0*H_l/H0), ceil(r1*H_l/H0))``
  (columns alike), then grows by the overlap ``O`` on every side and is clipped to the map:
  that is the *window*, the only part of the level ever read for this slice.
* A query belongs to the slice holding its reference point on level 0.
* Clamp bounds per axis, in pixel coordinates of the level: ``lo`` is the window's first
  pixel when the window starts inside the map, else ``-1``; ``hi`` is the window's last
  pixel when it ends inside the map, else the map size. Clamping a coordinate into
  ``[lo, hi]`` keeps every corner with a non-zero bilinear weight inside the window; at a
  map edge the bound ``-1`` / ``H`` is where zero padding already gives zero, so clamping
  there changes nothing. With ``O`` covering every offset the sliced result equals the
  unsliced one exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from defslice.errors import ConfigError, InputError
from defslice.model.intmath import ceil_div

if TYPE_CHECKING:
    from defslice.config import Config

__all__ = ["SliceGrid", "Window"]


@dataclass(frozen=True)
class Window:
    """One slice's window on one level (all in pixels of that level).

    ``row0, col0, rows, cols``: the region read from DRAM, clipped to the map.
    ``y_lo, y_hi, x_lo, x_hi``: clamp bounds of sampling coordinates (inclusive).
    """

    row0: int
    col0: int
    rows: int
    cols: int
    y_lo: int
    y_hi: int
    x_lo: int
    x_hi: int

    @property
    def pixels(self) -> int:
        return self.rows * self.cols


class SliceGrid:
    """Slices of level 0 and their windows on every level.

    Arguments
    ---------
    levels : sequence of (H, W)
        Map sizes, level 0 the largest.
    slice_h, slice_w : int
        Slice size in level-0 pixels.
    overlap : int
        Halo in pixels on every side, on every level.
    clamp : ``"clamp"`` or ``"drop"``
        Policy for points outside the window (see :class:`defslice.config.SlicingConfig`).
    """

    def __init__(self, levels: Sequence[tuple[int, int]], slice_h: int, slice_w: int,
                 overlap: int, clamp: str = "clamp") -> None:
        self.levels = tuple((int(h), int(w)) for h, w in levels)
        h0, w0 = self.levels[0]
        if not 1 <= slice_h <= h0:
            raise ConfigError("slicing.slice_h", slice_h, f"in [1, {h0}]")
        if not 1 <= slice_w <= w0:
            raise ConfigError("slicing.slice_w", slice_w, f"in [1, {w0}]")
        if overlap < 0:
            raise ConfigError("slicing.overlap", overlap, ">= 0")
        if clamp not in ("clamp", "drop"):
            raise ConfigError("slicing.clamp", clamp, "'clamp' or 'drop'")
        self.slice_h, self.slice_w, self.overlap, self.clamp = slice_h, slice_w, overlap, clamp
        self.n_rows = ceil_div(h0, slice_h)
        self.n_cols = ceil_div(w0, slice_w)
        self._windows = [
            [self._make_window(s, lvl) for lvl in range(len(self.levels))]
            for s in range(self.num_slices)
        ]

    @classmethod
    def from_config(cls, cfg: Config) -> SliceGrid:
        s = cfg.slicing
        return cls(cfg.workload.levels, s.slice_h, s.slice_w, s.overlap, s.clamp)

    @classmethod
    def unsliced(cls, levels: Sequence[tuple[int, int]]) -> SliceGrid:
        """One slice covering every map: the unsliced computation."""
        h0, w0 = levels[0]
        return cls(levels, h0, w0, 0)

    @property
    def num_slices(self) -> int:
        return self.n_rows * self.n_cols

    def _make_window(self, s: int, level: int) -> Window:
        h0, w0 = self.levels[0]
        hl, wl = self.levels[level]
        i, j = divmod(s, self.n_cols)
        r0, r1 = i * self.slice_h, min((i + 1) * self.slice_h, h0)
        c0, c1 = j * self.slice_w, min((j + 1) * self.slice_w, w0)
        # Exact integer scaling of the region to this level, then the halo, then the map.
        lr0 = max(r0 * hl // h0 - self.overlap, 0)
        lr1 = min(ceil_div(r1 * hl, h0) + self.overlap, hl)
        lc0 = max(c0 * wl // w0 - self.overlap, 0)
        lc1 = min(ceil_div(c1 * wl, w0) + self.overlap, wl)
        return Window(
            row0=lr0, col0=lc0, rows=lr1 - lr0, cols=lc1 - lc0,
            y_lo=lr0 if lr0 > 0 else -1, y_hi=lr1 - 1 if lr1 < hl else hl,
            x_lo=lc0 if lc0 > 0 else -1, x_hi=lc1 - 1 if lc1 < wl else wl,
        )

    def window(self, s: int, level: int) -> Window:
        """Window of slice ``s`` (row-major index) on ``level``."""
        return self._windows[s][level]

    def max_window(self, level: int) -> tuple[int, int]:
        """Largest (rows, cols) of any window on ``level``: the on-chip buffer it needs."""
        ws = [self._windows[s][level] for s in range(self.num_slices)]
        return max(w.rows for w in ws), max(w.cols for w in ws)

    def windows_array(self) -> np.ndarray:
        """All windows as int64 ``(num_slices, L, 8)``: row0, col0, rows, cols, y_lo, y_hi,
        x_lo, x_hi."""
        return np.array(
            [[[w.row0, w.col0, w.rows, w.cols, w.y_lo, w.y_hi, w.x_lo, w.x_hi]
              for w in per_slice] for per_slice in self._windows],
            dtype=np.int64,
        )

    def bounds_array(self) -> np.ndarray:
        """Clamp bounds as int64 ``(num_slices, L, 4)``: y_lo, y_hi, x_lo, x_hi."""
        return self.windows_array()[..., 4:8]

    def slice_of(self, reference_points: np.ndarray) -> np.ndarray:
        """Slice index of each reference point.

        Arguments
        ---------
        reference_points : float array (..., 2)
            Normalized (x, y) in [0, 1] on level 0; values outside are clipped to the
            nearest slice.

        Returns
        -------
        int64 array (...)
        """
        ref = np.asarray(reference_points, dtype=np.float64)
        if ref.shape[-1:] != (2,):
            raise InputError(f"reference_points must end in (x, y), got shape {ref.shape}")
        if not np.isfinite(ref).all():
            raise InputError("reference_points must be finite")
        h0, w0 = self.levels[0]
        row = np.clip(np.floor(ref[..., 1] * h0), 0, h0 - 1).astype(np.int64) // self.slice_h
        col = np.clip(np.floor(ref[..., 0] * w0), 0, w0 - 1).astype(np.int64) // self.slice_w
        return row * self.n_cols + col
