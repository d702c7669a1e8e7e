"""The baseline: sampling and aggregation (attention) as separate layers."""

from __future__ import annotations

from defslice.model.layout import PAGE
from defslice.model.traffic.base import Dataflow, TrafficContext
from defslice.model.traffic.counter import TrafficCount
from defslice.model.traffic.fetch import count_corner_fetches

__all__ = ["LayerByLayer"]


class LayerByLayer(Dataflow):
    """Layer-by-layer processing, no on-chip reuse (the paper's baseline).

    Datapath scope, two layers:

    1. *sampling layer*: stream the point records; for every point fetch each in-map
       corner (one head's ``D`` channels, its own burst: no reuse between points or
       queries); write the per-point samples (``M L P D`` elements per query) to DRAM;
    2. *aggregation layer*: stream the point records again (for the attention weights they
       carry) and the per-point samples; write the outputs.

    Layer scope (DAT), two layers as the slicing paper names them:

    1. *offset/sampling layer*: stream ``x``, Wq and the offset network; ``q = x Wq`` and
       the offsets stay on chip inside the layer; fetch the four corners of every sampled
       key as above; write ``q`` and the sampled keys;
    2. *attention layer*: stream ``q``, the sampled keys, Wk, Wv, Wo and the bias table;
       write ``y``.
    """

    name = "layer_by_layer"
    label = "layer-by-layer"

    def datapath(self, ctx: TrafficContext, c: TrafficCount) -> None:
        lq, ex = ctx.trace.num_queries, ctx.extra
        sampled = lq * ex.sampled_stride
        ctx.stream_queries(c)
        count_corner_fetches(ctx, c)
        ctx.stream(c, "intermediate", True, ex.sampled_base, sampled)
        ctx.stream_queries(c)
        ctx.stream(c, "intermediate", False, ex.sampled_base, sampled)
        ctx.stream_outputs(c)

    def layer(self, ctx: TrafficContext, c: TrafficCount) -> None:
        lay, ex, dat = ctx.layout, ctx.extra, ctx.extra.dat
        qmap = dat.map_pixels * lay.pixel_stride
        keys = ctx.trace.num_queries * ex.sampled_stride
        ctx.stream_value(c)
        ctx.stream(c, "weights", False, ex.weights_base, dat.stage1_weight_bytes)
        count_corner_fetches(ctx, c)
        ctx.stream(c, "intermediate", True, ex.qmap_base, qmap)
        ctx.stream(c, "intermediate", True, ex.sampled_base, keys)
        ctx.stream(c, "intermediate", False, ex.qmap_base, qmap)
        ctx.stream(c, "intermediate", False, ex.sampled_base, keys)
        ctx.stream(c, "weights", False, ex.weights_base + dat.stage1_weight_bytes,
                   dat.stage2_weight_bytes)
        ctx.stream(c, "output", True, ex.y_base, dat.map_pixels * lay.out_stride)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class LayerByLayerPerOperator(LayerByLayer):
    """A heavier baseline: every operator of the DAT layer is its own layer.

    Same as :class:`LayerByLayer` in the datapath scope. In the layer scope each operator
    reads its inputs from DRAM and writes its result back: ``q = x Wq``; the offset network
    (writes the point records); sampling (reads them, fetches corners, writes the keys);
    ``k`` and ``v`` projections; logits ``q k^T + bias`` (``H W x Hk Wk`` elements, rows
    padded to whole beats); softmax; ``probs v``; ``y = a Wo``. Shown because the slicing
    paper does not say how fine its "layer by layer" baseline is; the normalization to it
    is reported beside the main one.
    """

    name = "layer_by_layer_ops"
    label = "layer-by-layer, per operator"

    def layer(self, ctx: TrafficContext, c: TrafficCount) -> None:
        lay, ex, dat = ctx.layout, ctx.extra, ctx.extra.dat
        bus, eb = lay.bus_bytes, ctx.cfg.dram.element_bytes
        lq, px = ctx.trace.num_queries, dat.map_pixels
        qmap = px * lay.pixel_stride
        keys = lq * ex.sampled_stride
        logits = px * _round_up(lq * ctx.cfg.workload.heads * eb, bus)
        k_base = ex.end
        v_base = _round_up(k_base + keys, PAGE)
        logit_base = _round_up(v_base + keys, PAGE)
        prob_base = _round_up(logit_base + logits, PAGE)
        a_base = _round_up(prob_base + logits, PAGE)
        wq, woff = ex.weights_base, ex.weights_base + dat.proj_weight_bytes
        wk = ex.weights_base + dat.stage1_weight_bytes
        wv, wo = wk + dat.proj_weight_bytes, wk + 2 * dat.proj_weight_bytes
        rpb = wk + 3 * dat.proj_weight_bytes
        records = lq * lay.query_stride

        def rd(tensor: str, base: int, n: int) -> None:
            ctx.stream(c, tensor, False, base, n)

        def wr(tensor: str, base: int, n: int) -> None:
            ctx.stream(c, tensor, True, base, n)

        ctx.stream_value(c)                                     # q = x Wq
        rd("weights", wq, dat.proj_weight_bytes)
        wr("intermediate", ex.qmap_base, qmap)
        rd("intermediate", ex.qmap_base, qmap)                  # offset network
        rd("weights", woff, dat.offset_net_bytes)
        wr("intermediate", lay.query_base, records)
        rd("intermediate", lay.query_base, records)             # sampling
        count_corner_fetches(ctx, c)
        wr("intermediate", ex.sampled_base, keys)
        for base, w in ((k_base, wk), (v_base, wv)):            # k and v projections
            rd("intermediate", ex.sampled_base, keys)
            rd("weights", w, dat.proj_weight_bytes)
            wr("intermediate", base, keys)
        rd("intermediate", ex.qmap_base, qmap)                  # logits = q k^T + bias
        rd("intermediate", k_base, keys)
        rd("weights", rpb, dat.rpb_bytes)
        wr("intermediate", logit_base, logits)
        rd("intermediate", logit_base, logits)                  # softmax
        wr("intermediate", prob_base, logits)
        rd("intermediate", prob_base, logits)                   # a = probs v
        rd("intermediate", v_base, keys)
        wr("intermediate", a_base, qmap)
        rd("intermediate", a_base, qmap)                        # y = a Wo
        rd("weights", wo, dat.proj_weight_bytes)
        wr("output", ex.y_base, px * lay.out_stride)
