"""The baselines: the layer processed layer by layer, as two layers or one operator each."""

from __future__ import annotations

from defslice.model.traffic.base import TrafficContext
from defslice.model.traffic.counter import TrafficCount
from defslice.model.traffic.fetch import count_corner_fetches
from defslice.model.traffic.layer_graph import OPERATORS
from defslice.model.traffic.schedule import Schedule, ScheduledDataflow

__all__ = ["PER_OPERATOR", "TWO_LAYERS", "LayerByLayer", "LayerByLayerPerOperator"]

#: The slicing paper's reading: "the sampling layer and the attention layer".
TWO_LAYERS = Schedule((
    ("q", "offset_conv", "layernorm", "gelu", "offset_proj", "sample"),
    ("k", "v", "logits", "bias", "softmax", "pv", "proj_out"),
))

#: Every operator of the layer its own layer.
PER_OPERATOR = Schedule(tuple((op.name,) for op in OPERATORS))


class LayerByLayer(ScheduledDataflow):
    """Layer-by-layer processing, no on-chip reuse (the paper's baseline).

    Datapath scope, two layers:

    1. *sampling layer*: stream the point records; for every point fetch each in-map
       corner (one head's ``D`` channels, its own burst: no reuse between points or
       queries); write the per-point samples (``M L P D`` elements per query) to DRAM;
    2. *aggregation layer*: stream the point records again (for the attention weights they
       carry) and the per-point samples; write the outputs.

    Layer scope (DAT), :data:`TWO_LAYERS`, the two layers the slicing paper names:

    1. *sampling layer*: ``q``, the offset network and the sampling: streams ``x`` and the
       weights of ``q`` and the offset network, fetches the corners of every sampled key
       as above, writes ``q``, the key positions and the sampled keys;
    2. *attention layer*: ``k``, ``v``, logits, position bias, softmax, ``probs v``,
       ``proj_out``: reads ``q``, the positions, the sampled keys, ``Wk``, ``Wv``, the
       bias table and ``Wo``; writes ``y``.

    ``q`` stored by default (:meth:`with_q` for the recomputing variant).
    """

    name = "layer_by_layer"
    label = "layer-by-layer"
    schedule = TWO_LAYERS

    def datapath(self, ctx: TrafficContext, c: TrafficCount) -> None:
        lq, ex = ctx.trace.num_queries, ctx.extra
        sampled = lq * ex.sampled_stride
        ctx.stream_queries(c)
        count_corner_fetches(ctx, c)
        ctx.stream(c, "intermediate", True, ex.sampled_base, sampled)
        ctx.stream_queries(c)
        ctx.stream(c, "intermediate", False, ex.sampled_base, sampled)
        ctx.stream_outputs(c)


class LayerByLayerPerOperator(ScheduledDataflow):
    """A heavier baseline: every operator of the DAT layer is its own layer
    (:data:`PER_OPERATOR`, layer scope only).

    Each of ``q``, the offset convolution, LayerNorm, GELU, the offset projection (with
    the reference points and clamp: the key positions), sampling, ``k``, ``v``, the
    logits, the position-bias gather, softmax (adding the bias), ``probs v`` and
    ``proj_out`` reads its inputs and parameters from DRAM and writes its result. Shown
    because the slicing paper does not say how fine its "layer by layer" baseline is;
    every dataflow is also normalized to this one. ``q`` stored by default.
    """

    name = "layer_by_layer_ops"
    label = "layer-by-layer, per operator"
    scopes = ("layer",)
    schedule = PER_OPERATOR
