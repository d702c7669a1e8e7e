"""DAT-style deformable sampling expressed in the pixel space of this project.

Convention chosen here (``docs/numerics.md``, "DAT conventions"): pixel coordinates are
those of ``grid_sample(..., align_corners=False)``, i.e. pixel ``i`` has its centre at
coordinate ``i`` and a normalized location ``x`` in [0, 1] sits at ``x * W - 0.5``.

* Reference points: the centres of an ``Hk x Wk`` grid of cells over the ``H x W`` map,
  ``y_i = (i + 0.5) * H / Hk - 0.5`` (pixels), ``x_j`` alike.
* Offsets (CVPR'22 DAT): ``tanh(raw) * range_factor`` key-grid cells, i.e.
  ``tanh(raw_y) * range_factor * H / Hk`` pixels (reach of ``range_factor`` cells).
* DAT's public code samples with ``align_corners=True`` on a normalized [-1, 1] grid;
  :func:`dat_grid_to_locations` converts such a grid to the locations used here so the
  same pixel is sampled.

DAT sampling is MSDA with one level, one point and attention weight 1: the sampled keys
of group ``g`` are the output channels ``g * D .. (g+1) * D - 1`` of :func:`msda_forward`
with ``Lq = Hk * Wk`` queries.
"""

from __future__ import annotations

import numpy as np

from defslice.errors import InputError

__all__ = [
    "dat_grid_to_locations",
    "dat_inputs",
    "dat_offsets_to_locations",
    "reference_grid",
]


def reference_grid(H: int, W: int, Hk: int, Wk: int) -> np.ndarray:
    """Cell-centre reference points, pixels, shape (Hk * Wk, 2) as (x, y), row-major."""
    ys = (np.arange(Hk) + 0.5) * H / Hk - 0.5
    xs = (np.arange(Wk) + 0.5) * W / Wk - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=-1)


def dat_offsets_to_locations(raw_offsets: np.ndarray, H: int, W: int, Hk: int, Wk: int,
                             range_factor: float) -> np.ndarray:
    """Raw offset-network outputs to normalized sampling locations.

    ``raw_offsets``: (N, G, Hk, Wk, 2) as (dx, dy) before ``tanh``. Returns normalized
    (x, y) locations of shape (N, Hk*Wk, G, 1, 1, 2), ready for ``msda_forward``.
    """
    raw = np.asarray(raw_offsets, dtype=np.float64)
    if raw.ndim != 5 or raw.shape[2:] != (Hk, Wk, 2):
        raise InputError(f"raw_offsets must be (N, G, {Hk}, {Wk}, 2), got {raw.shape}")
    cell = np.array([W / Wk, H / Hk])
    px = reference_grid(H, W, Hk, Wk)[None, None] \
        + np.tanh(raw.reshape(raw.shape[0], raw.shape[1], Hk * Wk, 2)) * range_factor * cell
    norm = (px + 0.5) / np.array([W, H])
    return norm.transpose(0, 2, 1, 3)[:, :, :, None, None, :]


def dat_grid_to_locations(grid: np.ndarray, H: int, W: int) -> np.ndarray:
    """DAT's ``align_corners=True`` grid in [-1, 1] (..., 2) to normalized locations.

    ``align_corners=True`` puts -1 and +1 on the centres of the outer pixels, pixel
    ``(g + 1) / 2 * (W - 1)``; here that pixel is the location ``(px + 0.5) / W``.
    """
    g = np.asarray(grid, dtype=np.float64)
    size = np.array([W, H], dtype=np.float64)
    px = (g + 1) / 2 * (size - 1)
    return (px + 0.5) / size


def dat_inputs(features: np.ndarray, locations: np.ndarray):
    """Features (N, H, W, G, D) and locations from :func:`dat_offsets_to_locations` to
    MSDA arguments ``(value, spatial_shapes, sampling_locations, attention_weights)``."""
    f = np.asarray(features)
    if f.ndim != 5:
        raise InputError(f"features must be (N, H, W, G, D), got {f.shape}")
    n, H, W, g, d = f.shape
    value = f.reshape(n, H * W, g, d)
    weights = np.ones(locations.shape[:5], dtype=f.dtype)
    return value, np.array([[H, W]]), locations.astype(f.dtype), weights
