"""Count every dataflow on one workload, in every scope, and normalize to the baseline."""

from __future__ import annotations

import time

from defslice.model.layout import burst_summary
from defslice.model.traffic.base import Dataflow, TrafficContext
from defslice.model.traffic.compulsory import Compulsory
from defslice.model.traffic.defa import DefaStyle
from defslice.model.traffic.layer_by_layer import LayerByLayer, LayerByLayerPerOperator
from defslice.model.traffic.sliced import HaloReuse, Sliced

__all__ = ["ALT_BASELINE", "BASELINE", "DATAFLOWS", "UNITS", "normalize",
           "run_study"]

#: Report order; the first is the baseline every figure is normalized to.
DATAFLOWS: tuple[Dataflow, ...] = (LayerByLayer(), DefaStyle(), Sliced(), HaloReuse(),
                                   Compulsory())
BASELINE = DATAFLOWS[0].name
#: The per-operator baseline, counted in the layer scope only (in the datapath scope it
#: is the baseline itself); every dataflow is also normalized to it there.
ALT_BASELINE = LayerByLayerPerOperator()

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


def run_study(ctx: TrafficContext, scopes: tuple[str, ...] | None = None) -> dict:
    """Traffic of every dataflow in :data:`DATAFLOWS` on ``ctx``.

    Returns
    -------
    dict
        ``scopes[scope]["dataflows"][name]`` holds ``read``, ``write``, ``total`` (each
        bursts / beats / bytes), ``per_tensor`` and ``normalized`` (to layer-by-layer, in
        all three units), plus ``seconds``; in the layer scope also the per-operator
        baseline and ``normalized_to_layer_by_layer_ops``.
    """
    scopes = ctx.scopes if scopes is None else scopes
    out: dict = {"scopes": {}}
    for scope in scopes:
        flows: dict = {}
        extra = (ALT_BASELINE,) if scope == "layer" else ()
        for flow in DATAFLOWS + extra:
            t0 = time.perf_counter()
            res = flow.count(ctx, scope).as_dict()
            res["seconds"] = time.perf_counter() - t0
            res["label"] = flow.label
            flows[flow.name] = res
        base = flows[BASELINE]["total"]
        for res in flows.values():
            res["normalized"] = normalize(res["total"], base)
            res["normalized"]["accesses"] = res["normalized"]["beats"]
            if extra:
                res[f"normalized_to_{ALT_BASELINE.name}"] = normalize(
                    res["total"], flows[ALT_BASELINE.name]["total"])
        out["scopes"][scope] = {"dataflows": flows}
    out["headline_scope"] = ctx.headline_scope
    out["rtl_transfers"] = burst_summary(ctx.program.transfers())
    return out
