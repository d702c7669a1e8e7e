"""The sliced forward pass, float and fixed point (semantics in :mod:`.slicing`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from defslice.config import Config
from defslice.errors import InputError
from defslice.model.fixed import FixedInputs, fixed_forward, quantize_inputs
from defslice.model.msda import _pixel_coords, check_inputs, forward_pixels
from defslice.model.sampling import LevelTable
from defslice.model.slicing import SliceGrid

__all__ = ["SliceStats", "query_windows", "sliced_fixed_forward", "sliced_forward"]


@dataclass(frozen=True)
class SliceStats:
    """What slicing did to the sampling points.

    ``clamped_fraction``: share of sampling points moved by an interior window bound (a
    point beyond a map edge is not counted: zero padding already makes it zero there);
    ``points``: total sampling points; ``queries_per_slice``: (num_slices,) counts.
    """

    clamped_fraction: float
    points: int
    queries_per_slice: np.ndarray


def _reference_xy(reference_points: np.ndarray, n: int, lq: int) -> np.ndarray:
    ref = np.asarray(reference_points, dtype=np.float64)
    if ref.ndim == 4:  # MMCV passes per-level reference points; level 0 decides.
        ref = ref[:, :, 0]
    if ref.shape != (n, lq, 2):
        raise InputError(f"reference_points must be (N, Lq, 2) or (N, Lq, L, 2) with "
                         f"N={n}, Lq={lq}, got {np.shape(reference_points)}")
    return ref


def query_windows(grid: SliceGrid, reference_points: np.ndarray) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Slice of each query (N, Lq) and its windows (N, Lq, L, 8) (see ``windows_array``)."""
    slice_idx = grid.slice_of(reference_points)
    return slice_idx, grid.windows_array()[slice_idx]


def _clamp_stats(px: np.ndarray, py: np.ndarray, win: np.ndarray, grid: SliceGrid,
                 slice_idx: np.ndarray) -> SliceStats:
    """Points outside an *interior* bound (one not on the map edge)."""
    levels = LevelTable.from_shapes(np.array(grid.levels))
    y_lo, y_hi, x_lo, x_hi = (win[..., k][:, :, None, :, None] for k in (4, 5, 6, 7))
    H, W = levels.H[:, 0][:, None], levels.W[:, 0][:, None]
    moved = ((y_lo >= 0) & (py < y_lo)) | ((y_hi < H) & (py > y_hi)) \
        | ((x_lo >= 0) & (px < x_lo)) | ((x_hi < W) & (px > x_hi))
    counts = np.bincount(slice_idx.reshape(-1), minlength=grid.num_slices)
    return SliceStats(float(moved.mean()) if moved.size else 0.0, int(moved.size), counts)


def sliced_forward(value: ArrayLike, spatial_shapes: ArrayLike, sampling_locations: ArrayLike,
                   attention_weights: ArrayLike, reference_points: ArrayLike,
                   grid: SliceGrid) -> tuple[np.ndarray, SliceStats]:
    """Float forward with every query confined to its slice's window.

    ``reference_points``: (N, Lq, 2) normalized (x, y) on level 0 (or MMCV's
    (N, Lq, L, 2)). Returns the output (N, Lq, M*D) and :class:`SliceStats`.
    """
    value, shapes, loc, attn = check_inputs(value, spatial_shapes, sampling_locations,
                                            attention_weights)
    if tuple(map(tuple, shapes.tolist())) != grid.levels:
        raise InputError(f"spatial_shapes {shapes.tolist()} differ from the slice grid's "
                         f"levels {list(grid.levels)}")
    n, lq = loc.shape[:2]
    slice_idx, win = query_windows(grid, _reference_xy(reference_points, n, lq))
    levels = LevelTable.from_shapes(shapes)
    px, py = _pixel_coords(loc, levels, value.dtype.type)
    stats = _clamp_stats(px, py, win, grid, slice_idx)
    w = win[:, :, None, :, None, :]
    if grid.clamp == "clamp":
        px = np.clip(px, w[..., 6], w[..., 7]).astype(px.dtype)
        py = np.clip(py, w[..., 4], w[..., 5]).astype(py.dtype)
    bounds = (w[..., 0], w[..., 0] + w[..., 2], w[..., 1], w[..., 1] + w[..., 3])
    return forward_pixels(value, levels, px, py, attn, window=bounds), stats


def sliced_fixed_forward(cfg: Config, inputs: FixedInputs | None = None, *,
                         value: ArrayLike | None = None,
                         spatial_shapes: ArrayLike | None = None,
                         sampling_locations: ArrayLike | None = None,
                         attention_weights: ArrayLike | None = None,
                         reference_points: ArrayLike,
                         grid: SliceGrid | None = None) -> np.ndarray:
    """Fixed-point forward of the sliced datapath, bit-exact with the RTL.

    Give either quantized ``inputs`` or the float MSDA arrays (quantized here with
    ``cfg.numerics``). ``grid`` defaults to ``SliceGrid.from_config(cfg)``.
    Returns int64 (N, Lq, M*D) in Q(out_frac).
    """
    if inputs is None:
        inputs = quantize_inputs(cfg.numerics, value, spatial_shapes, sampling_locations,
                                 attention_weights)
    grid = grid or SliceGrid.from_config(cfg)
    n, lq = inputs.x.shape[:2]
    _, win = query_windows(grid, _reference_xy(reference_points, n, lq))
    return fixed_forward(cfg.numerics, inputs, win, grid.clamp)
