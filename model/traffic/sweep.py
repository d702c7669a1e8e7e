"""Sliced traffic over the slicing space (the paper's Hs, Ws in 8..28, overlap 0..2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from defslice.errors import ConfigError
from defslice.model.traffic.base import TrafficContext
from defslice.model.traffic.layer_by_layer import LayerByLayer
from defslice.model.traffic.sliced import HaloReuse, Sliced
from defslice.model.traffic.study import normalize

__all__ = ["sweep"]


def sweep(ctx: TrafficContext, slice_h: Sequence[int], slice_w: Sequence[int],
          overlaps: Sequence[int], scope: str | None = None, progress: bool = True) -> dict:
    """Normalized sliced and halo-reuse traffic for every (overlap, Hs, Ws).

    Parameters
    ----------
    ctx : TrafficContext
        The workload; its trace is reused for every point (only the slicing changes).
    slice_h, slice_w, overlaps : sequences of int
        Values to sweep (pixels of level 0).
    scope : str or None
        Counting scope (default: the workload's headline scope).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    dict
        ``slice_h``, ``slice_w``, ``overlaps`` (axes) and, per dataflow and unit, nested
        lists indexed ``[overlap][Hs][Ws]`` of the traffic normalized to layer-by-layer,
        plus the raw ``beats``.
    """
    scope = scope or ctx.headline_scope
    h0, w0 = ctx.cfg.workload.levels[0]
    for name, vals, lim in (("slice_h", slice_h, h0), ("slice_w", slice_w, w0)):
        bad = [v for v in vals if not 1 <= v <= lim]
        if bad or not vals:
            raise ConfigError(f"sweep.{name}", bad or list(vals), f"values in [1, {lim}]")
    if not overlaps or min(overlaps) < 0:
        raise ConfigError("sweep.overlaps", list(overlaps), "values >= 0")
    base = LayerByLayer().count(ctx, scope).total().as_dict()
    flows = (Sliced(), HaloReuse())
    shape = (len(overlaps), len(slice_h), len(slice_w))
    res = {f.name: {u: np.zeros(shape) for u in ("bytes", "beats", "bursts")}
           for f in flows}
    raw = {f.name: np.zeros(shape, dtype=np.int64) for f in flows}
    points = [(a, b, c) for a in range(shape[0]) for b in range(shape[1])
              for c in range(shape[2])]
    for io, ih, iw in tqdm(points, desc="traffic sweep", disable=not progress,
                           unit="cfg"):
        cfg = ctx.cfg.replace(slicing={"slice_h": int(slice_h[ih]),
                                       "slice_w": int(slice_w[iw]),
                                       "overlap": int(overlaps[io])})
        sub = TrafficContext(cfg, ctx.trace)
        for f in flows:
            tot = f.count(sub, scope).total().as_dict()
            for u, v in normalize(tot, base).items():
                res[f.name][u][io, ih, iw] = v
            raw[f.name][io, ih, iw] = tot["beats"]
    return {
        "scope": scope,
        "slice_h": list(map(int, slice_h)), "slice_w": list(map(int, slice_w)),
        "overlaps": list(map(int, overlaps)),
        "baseline_total": base,
        "normalized": {f: {u: a.tolist() for u, a in d.items()} for f, d in res.items()},
        "beats": {f: a.tolist() for f, a in raw.items()},
    }
