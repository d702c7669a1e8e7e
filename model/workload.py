"""Random but reproducible workloads drawn from a :class:`~defslice.config.Config`.

Used by tests, benches, the traffic counter and the simulator. Distributions (stated in
``docs/traffic.md`` because DRAM traffic depends on them):

* values: standard normal, clipped to 90 % of the fixed-point range;
* MSDA reference points: the centre of every pixel of every level (encoder queries) when
  ``workload.queries`` is ``None``, else uniform in [0, 1]^2; offsets per level are
  Gaussian with ``offset_std_px`` pixels of that level; attention weights are a softmax
  over the ``L * P`` points of a head of standard-normal logits;
* DAT: the key grid's cell centres moved by ``tanh(N(0, 1)) * range_factor`` cells,
  attention weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defslice.config import Config
from defslice.model.dat import dat_offsets_to_locations, reference_grid

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
    def args(self):
        """The four positional arguments of ``msda_forward``."""
        return self.value, self.spatial_shapes, self.sampling_locations, \
            self.attention_weights


def _encoder_reference_points(levels) -> np.ndarray:
    pts = []
    for h, w in levels:
        yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w,
                             indexing="ij")
        pts.append(np.stack([xx.reshape(-1), yy.reshape(-1)], axis=-1))
    return np.concatenate(pts)


def make_workload(cfg: Config, seed: int = 0, dtype=np.float64) -> Workload:
    """Draw a workload for ``cfg`` (reproducible from ``seed``)."""
    rng = np.random.default_rng(seed)
    w, num = cfg.workload, cfg.numerics
    n, m, d, p = w.batch, w.heads, w.channels, w.points
    shapes = np.array(w.levels, dtype=np.int64)
    vmax = 0.9 * 2.0 ** (num.value_bits - 1 - num.value_frac)
    value = np.clip(rng.standard_normal((n, w.value_pixels, m, d)), -vmax, vmax)
    if w.kind == "dat":
        (H, W), (hk, wk) = w.levels[0], w.key_grid
        raw = rng.standard_normal((n, m, hk, wk, 2))
        loc = dat_offsets_to_locations(raw, H, W, hk, wk, w.offset_range_factor)
        ref_px = reference_grid(H, W, hk, wk)
        ref = np.broadcast_to((ref_px + 0.5) / np.array([W, H]), (n, hk * wk, 2)).copy()
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
