"""Count every dataflow on one workload, in every scope, and normalize to the baseline."""

from __future__ import annotations

import time

from defslice.model.dat_layer import DatLayerSpec, required_overlap
from defslice.model.layout import burst_summary
from defslice.model.traffic.base import Dataflow, TrafficContext
from defslice.model.traffic.compulsory import Compulsory
from defslice.model.traffic.dcn import DeformableConvStyle
from defslice.model.traffic.defa import DefaStyle
from defslice.model.traffic.layer_by_layer import LayerByLayer, LayerByLayerPerOperator
from defslice.model.traffic.schedule import Q_POLICIES, ScheduledDataflow
from defslice.model.traffic.sliced import HaloReuse, Sliced

__all__ = ["ALT_BASELINE", "BASELINE", "DATAFLOWS", "UNITS", "layer_study", "normalize",
           "run_study"]

#: The per-operator baseline (layer scope only); every dataflow is also normalized to it
#: there.
ALT_BASELINE = LayerByLayerPerOperator()
#: Report order; the first is the baseline every figure is normalized to. Each dataflow
#: is counted in the scopes it defines (``Dataflow.scopes``).
DATAFLOWS: tuple[Dataflow, ...] = (LayerByLayer(), ALT_BASELINE, DefaStyle(),
                                   DeformableConvStyle(), Sliced(), HaloReuse(),
                                   Compulsory())
BASELINE = DATAFLOWS[0].name

UNITS = {
    "bursts": "AXI transactions (address handshakes); <= max_burst_beats beats, "
              "never across 4 KiB",
    "beats": "data transfers of one bus width (hw.axi_data_bits); the 'accesses' of "
             "this study",
    "bytes": "payload bytes asked for, before widening to whole beats",
    "accesses": "beats",
}


def normalize(totals: dict[str, int], base: dict[str, int]) -> dict[str, float]:
    """``totals / base`` per unit (bytes, beats, bursts)."""
    return {k: (totals[k] / base[k] if base[k] else float("nan"))
            for k in ("bytes", "beats", "bursts")}


def _count(flow: Dataflow, ctx: TrafficContext, scope: str) -> dict:
    t0 = time.perf_counter()
    res = flow.count(ctx, scope).as_dict()
    res["seconds"] = time.perf_counter() - t0
    res["label"] = flow.label
    return res


def run_study(ctx: TrafficContext, scopes: tuple[str, ...] | None = None) -> dict:
    """Traffic of every dataflow in :data:`DATAFLOWS` on ``ctx``.

    Returns
    -------
    dict
        ``scopes[scope]["dataflows"][name]`` holds ``read``, ``write``, ``total`` (each
        bursts / beats / bytes), ``per_tensor`` and ``normalized`` (to layer-by-layer, in
        all three units), plus ``seconds``; in the layer scope also
        ``normalized_to_layer_by_layer_ops``. ``rtl_transfers``: the sampling engine's
        transfers; with the layer scope also :func:`layer_study`'s keys.
    """
    scopes = ctx.scopes if scopes is None else scopes
    out: dict = {"scopes": {}}
    for scope in scopes:
        flows = {f.name: _count(f, ctx, scope) for f in DATAFLOWS if scope in f.scopes}
        base = flows[BASELINE]["total"]
        alt = flows.get(ALT_BASELINE.name)
        for res in flows.values():
            res["normalized"] = normalize(res["total"], base)
            res["normalized"]["accesses"] = res["normalized"]["beats"]
            if alt is not None:
                res[f"normalized_to_{ALT_BASELINE.name}"] = normalize(res["total"],
                                                                      alt["total"])
        out["scopes"][scope] = {"dataflows": flows}
    out["headline_scope"] = ctx.headline_scope
    out["rtl_transfers"] = burst_summary(ctx.program.transfers())
    if "layer" in scopes:
        out.update(layer_study(ctx))
    return out


def layer_study(ctx: TrafficContext) -> dict:
    """What the layer scope rests on, for the report.

    Returns
    -------
    dict
        ``layer_graph``: the layer's tensors (axes, shape, bytes), parameters and
        operators; ``schedules[name]``: per scheduled dataflow its ``q`` policy,
        ``on_chip`` tensors, ``weights_once``, ``layers`` (operators and beats per tensor
        read and written) and ``q_variants`` (totals with ``q`` stored and recomputed,
        normalized to the default baseline); ``layer_engine_transfers``: the layer
        engine's bursts and beats per tensor; ``exact_overlap``: the sliced layer's
        totals with the overlap that makes the offset network exact on this slicing.
    """
    base = DATAFLOWS[0].count(ctx, "layer").total().as_dict()
    schedules = {}
    for f in DATAFLOWS:
        if not isinstance(f, ScheduledDataflow):
            continue
        variants = {}
        for q in Q_POLICIES:
            tot = f.with_q(q).count(ctx, "layer").total().as_dict()
            variants[q] = {**tot, "normalized": normalize(tot, base)}
        s = f.schedule
        schedules[f.name] = {"label": f.label, "q": s.q, "on_chip": sorted(s.on_chip),
                             "weights_once": s.weights_once, "layers": f.breakdown(ctx),
                             "q_variants": variants}
    return {"layer_graph": ctx.extra.graph.as_dict(), "schedules": schedules,
            "layer_engine_transfers": burst_summary(Sliced().layer_bursts(ctx)),
            "exact_overlap": _exact_overlap(ctx, base)}


def _exact_overlap(ctx: TrafficContext, base: dict[str, int]) -> dict:
    """The sliced layer with the overlap that makes its offset network exact
    (:func:`defslice.model.dat_layer.required_overlap`, the larger of rows and columns)."""
    cfg = ctx.cfg
    (h, w), s = cfg.workload.levels[0], cfg.slicing
    need = required_overlap(DatLayerSpec.from_config(cfg), h, w, s.slice_h, s.slice_w)
    sub = TrafficContext(cfg.replace(slicing={"overlap": max(need)}), ctx.trace)
    tot = Sliced().count(sub, "layer").total().as_dict()
    return {"required_rows_cols": list(need), "overlap": max(need), **tot,
            "normalized": normalize(tot, base)}
