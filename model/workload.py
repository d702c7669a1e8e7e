"""Random but reproducible workloads drawn from a :class:`~defslice.config.Config`.

Used by tests, benches, the traffic counter and the simulator. Distributions (stated in
``docs/traffic.md`` because DRAM traffic depends on them):

* values: standard normal, clipped to 90 % of the fixed-point range;
* MSDA reference points: the centre of every pixel of every level (encoder queries) when
  ``workload.queries`` is ``None``, else uniform in [0, 1]^2; offsets per level are
  Gaussian with ``offset_std_px`` pixels of that level; attention weights are a softmax
  over the ``L * P`` points of a head of standard-normal logits;
* DAT (the sampling engine's view: ``sample_heads`` groups of ``sample_channels``
  channels, one point of weight 1 per key): DAT's reference points (``defslice.model.dat``)
  moved per group by offsets drawn in DAT's convention: ``offset_range_factor < 0``:
  ``N(0, offset_std_px)`` pixels per axis, the position clamped to the map;
  ``>= 0``: ``tanh(N(0, 1))`` times the factor's pixel scale, not clamped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defslice.config import Config, WorkloadConfig
from defslice.model.dat import (
    offset_scale_px,
    pixels_to_locations,
    positions_from_offsets,
    reference_points_px,
)

__all__ = ["Workload", "make_workload"]


@dataclass(frozen=True)
class Workload:
    """MSDA-shaped inputs plus each query's reference point (normalized (x, y))."""

    value: np.ndarray               # (N, S, M, D)
    spatial_shapes: np.ndarray      # (L, 2)
    sampling_locations: np.ndarray  # (N, Lq, M, L, P, 2)
    attention_weights: np.ndarray   # (N, Lq, M, L, P)
    reference_points: np.ndarray    # (N, Lq, 2)

    @property
    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The four positional arguments of ``msda_forward``."""
        return self.value, self.spatial_shapes, self.sampling_locations, \
            self.attention_weights


def _encoder_reference_points(levels: tuple[tuple[int, int], ...]) -> np.ndarray:
    pts = []
    for h, w in levels:
        yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w,
                             indexing="ij")
        pts.append(np.stack([xx.reshape(-1), yy.reshape(-1)], axis=-1))
    return np.concatenate(pts)


def _dat_locations(w: WorkloadConfig, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                        np.ndarray]:
    """Sampling locations (N, Hk*Wk, G, 1, 1, 2) and reference points (N, Hk*Wk, 2) of
    a ``dat`` workload, normalized (x, y) for the sampling engine."""
    (H, W), (hk, wk) = w.levels[0], w.key_grid
    n, g, factor = w.batch, w.groups, w.offset_range_factor
    raw = rng.standard_normal((n, g, hk, wk, 2))
    if factor < 0:  # raw offsets of offset_std_px pixels, in the network's units
        raw = raw * w.offset_std_px / offset_scale_px(H, W, hk, wk, factor)
    pos = positions_from_offsets(raw, H, W, factor)             # (N, G, Hk, Wk, 2)
    loc = pixels_to_locations(pos.reshape(n, g, hk * wk, 2), H, W)
    ref = pixels_to_locations(reference_points_px(H, W, hk, wk).reshape(-1, 2), H, W)
    return (loc.transpose(0, 2, 1, 3)[:, :, :, None, None, :],
            np.broadcast_to(ref, (n, hk * wk, 2)).copy())


def make_workload(cfg: Config, seed: int = 0, dtype: type = np.float64) -> Workload:
    """Draw a workload for ``cfg`` (reproducible from ``seed``)."""
    rng = np.random.default_rng(seed)
    w, num = cfg.workload, cfg.numerics
    n, m, d, p = w.batch, w.sample_heads, w.sample_channels, w.points
    shapes = np.array(w.levels, dtype=np.int64)
    vmax = 0.9 * 2.0 ** (num.value_bits - 1 - num.value_frac)
    value = np.clip(rng.standard_normal((n, w.value_pixels, m, d)), -vmax, vmax)
    if w.kind == "dat":
        loc, ref = _dat_locations(w, rng)
        attn = np.ones(loc.shape[:5])
    else:
        lq = w.num_queries
        if w.queries is None:
            ref = np.broadcast_to(_encoder_reference_points(w.levels), (n, lq, 2)).copy()
        else:
            ref = rng.uniform(0, 1, size=(n, lq, 2))
        size = shapes[:, ::-1].astype(np.float64)           # (L, 2) as (W, H)
        off = rng.standard_normal((n, lq, m, len(w.levels), p, 2)) * w.offset_std_px
        loc = ref[:, :, None, None, None, :] + off / size[None, None, None, :, None, :]
        logits = rng.standard_normal((n, lq, m, len(w.levels) * p))
        e = np.exp(logits - logits.max(-1, keepdims=True))
        attn = (e / e.sum(-1, keepdims=True)).reshape(n, lq, m, len(w.levels), p)
    return Workload(value.astype(dtype), shapes, loc.astype(dtype), attn.astype(dtype),
                    ref)
