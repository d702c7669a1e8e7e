"""The compulsory bound: every needed input byte read once, every output byte once."""

from __future__ import annotations

import numpy as np

from defslice.model.traffic.base import Dataflow, TrafficContext
from defslice.model.traffic.counter import TrafficCount

__all__ = ["Compulsory", "touched_value_regions"]


def touched_value_regions(ctx: TrafficContext) -> tuple[np.ndarray, np.ndarray]:
    """Maximal contiguous byte runs of the value units any in-map corner touches.

    Returns
    -------
    addr, nbytes : int64 arrays (R,)
    """
    m = ctx.cfg.workload.sample_heads
    touched = np.zeros(ctx.cfg.workload.value_pixels * m, dtype=bool)
    for ch in ctx.trace.corner_chunks():
        touched[(ch.pixel * m + ch.head)[ch.valid]] = True
    ids = np.flatnonzero(touched)
    start = ctx.chunk_addr(ids // m, ids % m)
    end = start + ctx.head_chunk_bytes()
    brk = np.ones(ids.size, dtype=bool)
    brk[1:] = start[1:] != end[:-1]
    first = np.flatnonzero(brk)
    last = np.append(first[1:], ids.size) - 1
    return start[first], end[last] - start[first]


class Compulsory(Dataflow):
    """Lower bound of any dataflow on this workload and layout.

    Datapath scope: the point records once, every value unit (one head's channels of a
    pixel) that an in-map corner touches once, in maximal contiguous runs, the outputs
    once. Layer scope (DAT): ``x`` once (``q`` needs every pixel), every operator's
    parameters once, ``y`` once; everything else stays on chip. (A sliced layer may read
    less ``x``: a slice holding no key needs none.)
    """

    name = "compulsory"
    label = "compulsory bound"

    def datapath(self, ctx: TrafficContext, c: TrafficCount) -> None:
        ctx.stream_queries(c)
        addr, nbytes = touched_value_regions(ctx)
        c.add_regions("value", False, addr, nbytes)
        ctx.stream_outputs(c)

    def layer(self, ctx: TrafficContext, c: TrafficCount) -> None:
        ex, graph = ctx.extra, ctx.extra.graph
        ctx.stream_value(c)
        for op, nbytes in graph.weight_bytes.items():
            ctx.stream(c, "weights", False, ex.weights_base[op], nbytes)
        ctx.stream(c, "output", True, ex.base["y"], graph.tensors["y"].nbytes)
