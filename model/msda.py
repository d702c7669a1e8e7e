"""Multi-scale deformable attention in float: forward and backward, MMCV semantics.

Shapes (MMCV ``multi_scale_deformable_attn``):

* ``value``: ``(N, S, M, D)``, ``S = sum_l H_l * W_l``, levels flattened row-major.
* ``spatial_shapes``: ``(L, 2)`` integer ``(H_l, W_l)``.
* ``sampling_locations``: ``(N, Lq, M, L, P, 2)`` normalized ``(x, y)``; ``(0, 0)`` is the
  top-left corner of the map, ``(1, 1)`` the bottom-right one.
* ``attention_weights``: ``(N, Lq, M, L, P)``.
* output: ``(N, Lq, M * D)``.

A location maps to pixel ``(x * W - 0.5, y * H - 0.5)`` and is sampled bilinearly with
zero padding: the same as ``torch.nn.functional.grid_sample(..., mode='bilinear',
padding_mode='zeros', align_corners=False)`` on the grid ``2 * loc - 1``.

The bilinear sampling of all points of a query and head is a sparse row of weights over
the value pixels; the forward pass is one sparse-times-dense product per chunk of queries
(no Python loop over queries or points) and the backward pass reuses its transpose.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from defslice.errors import InputError
from defslice.model.sampling import (
    Corners,
    LevelTable,
    chunks,
    corner_valid,
    flat_pixel_index,
)

__all__ = ["check_inputs", "forward_pixels", "msda_backward", "msda_forward"]


def check_inputs(value: ArrayLike, spatial_shapes: ArrayLike, sampling_locations: ArrayLike,
                 attention_weights: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
    """Validate shapes and contents; returns the arrays (float arrays keep their dtype).

    Raises :class:`~defslice.errors.InputError` naming the argument and what was expected.
    """
    value = np.asarray(value)
    shapes = np.asarray(spatial_shapes)
    loc = np.asarray(sampling_locations)
    attn = np.asarray(attention_weights)
    if value.ndim != 4:
        raise InputError(f"value must be (N, S, M, D), got shape {value.shape}")
    if value.dtype not in (np.float32, np.float64):
        raise InputError(f"value must be float32 or float64, got {value.dtype}")
    if shapes.ndim != 2 or shapes.shape[1] != 2 or not np.issubdtype(shapes.dtype, np.integer):
        raise InputError(f"spatial_shapes must be integer (L, 2), got {shapes.shape} "
                         f"{shapes.dtype}")
    if (shapes < 1).any():
        raise InputError(f"spatial_shapes must be >= 1, got {shapes.tolist()}")
    n, s, m, _ = value.shape
    levels = shapes.shape[0]
    if int((shapes[:, 0] * shapes[:, 1]).sum()) != s:
        raise InputError(f"value has S = {s} pixels but spatial_shapes {shapes.tolist()} "
                         f"sum to {int((shapes[:, 0] * shapes[:, 1]).sum())}")
    if loc.ndim != 6 or loc.shape[0] != n or loc.shape[2] != m or loc.shape[3] != levels \
            or loc.shape[5] != 2:
        raise InputError(f"sampling_locations must be (N={n}, Lq, M={m}, L={levels}, P, 2), "
                         f"got {loc.shape}")
    if attn.shape != loc.shape[:5]:
        raise InputError(f"attention_weights must be {loc.shape[:5]} (N, Lq, M, L, P), "
                         f"got {attn.shape}")
    if np.isnan(loc).any():
        raise InputError("sampling_locations contains NaN")
    if not np.isfinite(attn).all():
        raise InputError("attention_weights must be finite")
    return value, shapes.astype(np.int64), loc, attn


def _pixel_coords(loc: np.ndarray, levels: LevelTable,
                  dtype: type[np.floating]) -> tuple[np.ndarray, np.ndarray]:
    """Normalized (x, y) -> pixel coordinates, in the value's dtype like PyTorch."""
    px = loc[..., 0].astype(dtype) * levels.W.astype(dtype) - dtype(0.5)
    py = loc[..., 1].astype(dtype) * levels.H.astype(dtype) - dtype(0.5)
    return px, py


def _bilinear(px: np.ndarray, py: np.ndarray, levels: LevelTable,
              window: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, ...]:
    """Corner indices, bilinear weights and the pieces of their derivatives.

    ``window``: optional int ``(row_lo, row_hi, col_lo, col_hi)`` arrays broadcastable to
    the point shape, restricting valid corners to a slice's window; default the map.

    Returns ``idx`` (..., 4) flat pixel indices, ``w`` (..., 4) weights (zero where the
    corner is invalid or the point is inactive), ``valid`` (..., 4), ``lx``, ``ly``
    (fractions) and ``active`` (the MMCV kernel's ``-1 < h < H and -1 < w < W``).
    """
    dtype = px.dtype.type
    # Far-away points: every corner is invalid beyond [-2, size + 1], so clipping there
    # changes nothing and keeps the integer conversion in range (inf included).
    px = np.clip(px, -2, levels.W + 1).astype(px.dtype)
    py = np.clip(py, -2, levels.H + 1).astype(py.dtype)
    x0f, y0f = np.floor(px), np.floor(py)
    lx, ly = px - x0f, py - y0f
    hx, hy = dtype(1) - lx, dtype(1) - ly
    corners = Corners.from_floor(y0f.astype(np.int64), x0f.astype(np.int64))
    if window is None:
        valid = corner_valid(corners, 0, levels.H, 0, levels.W)
    else:
        valid = corner_valid(corners, *window)
    active = (py > -1) & (py < levels.H) & (px > -1) & (px < levels.W)
    valid &= active[..., None]
    w = np.stack([hy * hx, hy * lx, ly * hx, ly * lx], axis=-1)
    w = np.where(valid, w, dtype(0))
    idx = flat_pixel_index(corners, levels, valid)
    return idx, w, valid, lx, ly, active


def _operator(idx: np.ndarray, w: np.ndarray, attn: np.ndarray,
              s_pixels: int) -> sp.csr_matrix:
    """CSR matrix mapping value rows ``(n, s, m)`` to output rows ``(n, q, m)``.

    ``idx``/``w``: (N, Qc, M, L, P, 4) corner indices and weights; ``attn``:
    (N, Qc, M, L, P). Each output row holds ``L * P * 4`` entries (duplicates add up).
    """
    nb, qc, m = idx.shape[:3]
    heads = np.arange(m, dtype=np.int64)[None, None, :, None, None, None]
    batch = np.arange(nb, dtype=np.int64)[:, None, None, None, None, None]
    cols = (batch * s_pixels + idx) * m + heads
    data = (w * attn[..., None]).reshape(-1)
    k = int(np.prod(idx.shape[3:]))
    rows = nb * qc * m
    indptr = np.arange(0, rows * k + 1, k, dtype=np.int64)
    return sp.csr_matrix((data, cols.reshape(-1), indptr), shape=(rows, nb * s_pixels * m))


def forward_pixels(value: np.ndarray, levels: LevelTable, px: np.ndarray, py: np.ndarray,
                   attn: np.ndarray,
                   window: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """Forward pass on pixel coordinates ``px``, ``py`` of shape (N, Lq, M, L, P).

    ``window``: optional (row_lo, row_hi, col_lo, col_hi) int arrays broadcastable to
    (N, Lq, M, L, P): corners outside it contribute zero (slices, ``drop`` policy).
    """
    n, s, m, d = value.shape
    lq = px.shape[1]
    v2 = value.reshape(n * s * m, d)
    out = np.empty((n, lq, m, d), dtype=value.dtype)
    per_query = n * m * px.shape[3] * px.shape[4] * 4
    for qs in chunks(lq, per_query):
        win = None if window is None else tuple(
            np.broadcast_to(b, px.shape)[:, qs] for b in window)
        idx, w, *_ = _bilinear(px[:, qs], py[:, qs], levels, win)
        op = _operator(idx, w, attn[:, qs].astype(value.dtype), s)
        out[:, qs] = (op @ v2).reshape(n, -1, m, d)
    return out.reshape(n, lq, m * d)


def msda_forward(value: ArrayLike, spatial_shapes: ArrayLike, sampling_locations: ArrayLike,
                 attention_weights: ArrayLike) -> np.ndarray:
    """MMCV ``multi_scale_deformable_attn`` forward; see the module docstring for shapes.

    Computes in the dtype of ``value`` (float32 or float64). Locations far outside the
    map (even infinite) give zero contributions, never NaN.
    """
    value, shapes, loc, attn = check_inputs(value, spatial_shapes, sampling_locations,
                                            attention_weights)
    levels = LevelTable.from_shapes(shapes)
    px, py = _pixel_coords(loc, levels, value.dtype.type)
    return forward_pixels(value, levels, px, py, attn)


def msda_backward(value: ArrayLike, spatial_shapes: ArrayLike, sampling_locations: ArrayLike,
                  attention_weights: ArrayLike,
                  grad_output: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`msda_forward`, as the MMCV CUDA kernel defines them.

    Returns ``(grad_value, grad_sampling_locations, grad_attention_weights)`` with the
    shapes of the corresponding inputs.

    * ``grad_value``: scatter-add of ``attn * corner_weight * grad_output`` (the
      transposed sampling operator).
    * ``grad_attention_weights``: the sampled value dotted with ``grad_output``.
    * ``grad_sampling_locations``: ``W * attn * sum_c dweight_c/dx * (v_c . grad_output)``
      for x, ``H * ...`` for y.
    * A point contributes nothing, and gets zero gradient, unless
      ``-1 < y*H - 0.5 < H`` and ``-1 < x*W - 0.5 < W`` (strict, as the kernel's guard).
      Exactly on ``-1`` or ``H`` this differs from autograd through ``grid_sample``, which
      there returns a one-sided derivative; see ``docs/numerics.md``.
    """
    value, shapes, loc, attn = check_inputs(value, spatial_shapes, sampling_locations,
                                            attention_weights)
    n, s, m, d = value.shape
    lq = loc.shape[1]
    grad_output = np.asarray(grad_output, dtype=value.dtype)
    if grad_output.shape != (n, lq, m * d):
        raise InputError(f"grad_output must be (N, Lq, M*D) = {(n, lq, m * d)}, got "
                         f"{grad_output.shape}")
    dt = value.dtype.type
    levels = LevelTable.from_shapes(shapes)
    px, py = _pixel_coords(loc, levels, dt)
    v2 = value.reshape(n * s * m, d)
    g = grad_output.reshape(n, lq, m, d)
    grad_value = np.zeros((n * s * m, d), dtype=value.dtype)
    grad_loc = np.zeros(loc.shape, dtype=value.dtype)
    grad_attn = np.zeros(attn.shape, dtype=value.dtype)
    heads = np.arange(m, dtype=np.int64)[None, None, :, None, None, None]
    batch = np.arange(n, dtype=np.int64)[:, None, None, None, None, None]
    per_query = n * m * loc.shape[3] * loc.shape[4] * 4 * d
    for qs in chunks(lq, per_query):
        idx, w, valid, lx, ly, _ = _bilinear(px[:, qs], py[:, qs], levels)
        a = attn[:, qs].astype(value.dtype)
        gq = g[:, qs]
        op = _operator(idx, w, a, s)
        grad_value += op.T @ gq.reshape(-1, d)
        # v_c . g for every corner: the gather the forward pass avoided.
        rows = (batch * s + idx) * m + heads
        dots = np.einsum("...kd,...d->...k", v2[rows], gq[:, :, :, None, None, :])
        dots = np.where(valid, dots, dt(0))
        grad_attn[:, qs] = (w * dots).sum(-1)
        hx, hy = dt(1) - lx, dt(1) - ly
        dwdx = np.stack([-hy, hy, -ly, ly], axis=-1)
        dwdy = np.stack([-hx, -lx, hx, lx], axis=-1)
        grad_loc[:, qs, ..., 0] = levels.W * a * (dwdx * dots).sum(-1)
        grad_loc[:, qs, ..., 1] = levels.H * a * (dwdy * dots).sum(-1)
    return grad_value.reshape(n, s, m, d), grad_loc, grad_attn
