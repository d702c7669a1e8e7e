"""DAT's sampling conventions in pixels: reference points, offset modes, MSDA locations.

One convention for every model of the project, DAT's own (``docs/numerics.md``, "DAT
conventions"): DAT samples with ``grid_sample(..., align_corners=True)``, so a normalized
coordinate ``g`` in [-1, 1] is pixel ``(g + 1) / 2 * (S - 1)`` on a side of ``S``
pixels, pixel ``i``'s centre being at coordinate ``i``.

* Reference point of key ``i`` of ``Sk``: ``(i + 0.5) / (Sk - 1) * (S - 1)`` pixels
  (DAT's ``linspace(0.5, Sk - 0.5, Sk) / (Sk - 1) * 2 - 1``; the last one lies beyond
  the map, as in DAT).
* Offsets from the offset network's output ``raw`` (per axis):
  ``offset_range_factor < 0`` (DAT++): ``pos = clamp(ref + raw * (S - 1) / 2, 0, S - 1)``;
  ``>= 0``: ``pos = ref + tanh(raw) * factor * (S - 1) / (2 (Sk - 1))``, not clamped
  (sampling reads zero outside the map).

The sampling engine sees DAT's keys as MSDA with one level, one point and weight 1; its
normalized locations are ``(p + 0.5) / S`` (:func:`pixels_to_locations`), which puts the
same pixel coordinate ``p`` under MSDA's ``align_corners=False`` rule.
"""

from __future__ import annotations

import numpy as np

from defslice.errors import InputError

__all__ = [
    "dat_grid_to_locations",
    "dat_inputs",
    "offset_scale_px",
    "pixels_to_locations",
    "positions_from_offsets",
    "reference_points_px",
]


def reference_points_px(H: int, W: int, Hk: int, Wk: int) -> np.ndarray:
    """DAT's reference points in pixels, float64 (Hk, Wk, 2) as (y, x)."""
    if Hk < 2 or Wk < 2:
        raise InputError(f"DAT's key grid needs at least 2 x 2 keys, got {Hk} x {Wk}")
    ys = (np.arange(Hk) + 0.5) / (Hk - 1) * (H - 1)
    xs = (np.arange(Wk) + 0.5) / (Wk - 1) * (W - 1)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy, xx], axis=-1)


def offset_scale_px(H: int, W: int, Hk: int, Wk: int, factor: float) -> np.ndarray:
    """Pixels per unit of the offset network's output, float64 (2,) as (y, x).

    ``factor < 0``: the output is a normalized offset, ``(S - 1) / 2`` pixels per unit;
    ``factor >= 0``: ``tanh`` of it is scaled by ``factor * (S - 1) / (2 (Sk - 1))``.
    """
    if factor < 0:
        return np.array([(H - 1) / 2, (W - 1) / 2])
    return np.array([factor * (H - 1) / (2 * (Hk - 1)), factor * (W - 1) / (2 * (Wk - 1))])


def positions_from_offsets(raw: np.ndarray, H: int, W: int, factor: float,
                           clamp: bool = True) -> np.ndarray:
    """Key positions in pixels from the offset network's output.

    Arguments
    ---------
    raw : float array (..., Hk, Wk, 2)
        ``conv_offset`` output as (dy, dx), in the array's dtype.
    H, W : int
        Map size in pixels.
    factor : float
        ``offset_range_factor``.
    clamp : bool
        Apply the clamp of a negative factor (``False``: where the key would have gone).

    Returns
    -------
    float array (..., Hk, Wk, 2), (y, x) pixels, the dtype of ``raw``.
    """
    raw = np.asarray(raw)
    hk, wk = raw.shape[-3:-1]
    dt = raw.dtype.type
    ref = reference_points_px(H, W, hk, wk).astype(dt)
    scale = offset_scale_px(H, W, hk, wk, factor).astype(dt)
    if factor >= 0:
        return ref + np.tanh(raw) * scale
    pos = ref + raw * scale
    if not clamp:
        return pos
    return np.clip(pos, dt(0), np.array([H - 1, W - 1], dtype=dt))


def pixels_to_locations(pos_yx: np.ndarray, H: int, W: int) -> np.ndarray:
    """Pixel positions (..., 2) as (y, x) to MSDA's normalized locations (..., 2) (x, y)."""
    p = np.asarray(pos_yx, dtype=np.float64)
    return np.stack([(p[..., 1] + 0.5) / W, (p[..., 0] + 0.5) / H], axis=-1)


def dat_grid_to_locations(grid: np.ndarray, H: int, W: int) -> np.ndarray:
    """DAT's ``align_corners=True`` grid in [-1, 1] (..., 2) as (x, y) to MSDA locations.

    ``align_corners=True`` puts -1 and +1 on the centres of the outer pixels, pixel
    ``(g + 1) / 2 * (W - 1)``; that pixel is the MSDA location ``(px + 0.5) / W``.
    """
    g = np.asarray(grid, dtype=np.float64)
    size = np.array([W, H], dtype=np.float64)
    px = (g + 1) / 2 * (size - 1)
    return (px + 0.5) / size


def dat_inputs(features: np.ndarray, locations: np.ndarray) -> tuple:
    """Features (N, H, W, G, D) and locations (N, Lq, G, 1, 1, 2) to the MSDA arguments
    ``(value, spatial_shapes, sampling_locations, attention_weights)``."""
    f = np.asarray(features)
    if f.ndim != 5:
        raise InputError(f"features must be (N, H, W, G, D), got {f.shape}")
    n, H, W, g, d = f.shape
    value = f.reshape(n, H * W, g, d)
    weights = np.ones(locations.shape[:5], dtype=f.dtype)
    return value, np.array([[H, W]]), locations.astype(f.dtype), weights
