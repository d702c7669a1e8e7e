"""This design's dataflow, and the same with halo reuse between neighbouring slices."""

from __future__ import annotations

import numpy as np

from defslice.model.layout import Burst, SlicedProgram, split_bursts
from defslice.model.traffic.base import Dataflow, TrafficContext
from defslice.model.traffic.counter import TrafficCount

__all__ = ["HaloReuse", "Sliced", "halo_reuse_transfers"]

#: In the layer scope the RTL's query records are the offset network's output and its
#: outputs are the sampled keys: both intermediates of the layer.
_LAYER_NAMES = {"query": "intermediate", "output": "intermediate"}


def _layer_extras(ctx: TrafficContext, c: TrafficCount) -> None:
    """What the rest of the DAT layer adds around the RTL when fused slice by slice.

    The window on chip already holds the slice's pixels, so ``q``, the offset network and
    the slice's attention run on it (the paper: no attention across patches). Added: the
    offset network hands its point records to the datapath through DRAM (the RTL reads
    them there), the sampled keys come back, weights are read once and stay on chip, and
    ``y`` is written as the slice's row segments of a row-major map. A slice without
    sampled keys (the RTL skips it) still has queries: its pixels of ``x`` are read.
    """
    lay, ex, dat = ctx.layout, ctx.extra, ctx.extra.dat
    lq = ctx.trace.num_queries
    ctx.stream(c, "intermediate", True, lay.query_base, lq * lay.query_stride)
    ctx.stream(c, "intermediate", False, lay.out_base, lq * lay.out_stride)
    ctx.stream(c, "weights", False, ex.weights_base, dat.weight_bytes)
    grid = ctx.program.grid
    h0, w0 = ctx.cfg.workload.levels[0]
    loaded = {d.slice_index for d in ctx.program.descriptors}
    addr, nbytes, x_addr, x_bytes = [], [], [], []
    for s in range(grid.num_slices):
        i, j = divmod(s, grid.n_cols)
        r0, c0 = i * grid.slice_h, j * grid.slice_w
        r = np.arange(r0, min(r0 + grid.slice_h, h0))
        cols = min(grid.slice_w, w0 - c0)
        addr.append(ex.y_base + (r * w0 + c0) * lay.out_stride)
        nbytes.append(np.full(r.size, cols * lay.out_stride))
        if s not in loaded:
            # A slice without sampled keys is skipped by the RTL, but its pixels are
            # still queries of the layer: their x must be read for q.
            x_addr.append(lay.value_base + (r * w0 + c0) * lay.pixel_stride)
            x_bytes.append(np.full(r.size, cols * lay.pixel_stride))
    if x_addr:
        c.add_regions("value", False, np.concatenate(x_addr), np.concatenate(x_bytes))
    c.add_regions("output", True, np.concatenate(addr), np.concatenate(nbytes))

class Sliced(Dataflow):
    """The sliced dataflow exactly as the RTL issues it.

    Datapath scope: the bursts of :meth:`SlicedProgram.transfers` (layout contract, one
    descriptor, the window with its halo row by row, the slice's query records, its
    outputs, per non-empty slice), counted as they are. The count therefore equals the
    RTL's AXI traffic by construction.

    Layer scope (DAT): the same bursts, plus the rest of the layer fused around the window
    buffer (:func:`_layer_extras`).
    """

    name = "sliced"
    label = "sliced (this design)"

    def bursts(self, ctx: TrafficContext) -> list[Burst]:
        return ctx.program.transfers()

    def datapath(self, ctx: TrafficContext, c: TrafficCount) -> None:
        c.add_bursts(self.bursts(ctx))

    def layer(self, ctx: TrafficContext, c: TrafficCount) -> None:
        c.add_bursts(self.bursts(ctx), rename=_LAYER_NAMES)
        _layer_extras(ctx, c)


def halo_reuse_transfers(program: SlicedProgram) -> list[Burst]:
    """:meth:`SlicedProgram.transfers` with the columns already on chip left out.

    When the previous non-empty slice is the left neighbour in the same slice row, its
    window rows cover the same rows of every level; the columns they share (the halo and
    the level mapping's rounding) are not read again.
    """
    lay, grid = program.layout, program.grid
    out: list[Burst] = []

    def region(addr: int, nbytes: int, write: bool, tensor: str) -> None:
        for a, beats in split_bursts(addr, nbytes, lay.bus_bytes, lay.max_beats):
            out.append(Burst(a, beats, write, tensor))

    prev = None
    for i, dsc in enumerate(program.descriptors):
        region(lay.desc_base + i * lay.desc_stride, lay.desc_stride, False, "descriptor")
        left = prev is not None and prev.slice_index == dsc.slice_index - 1 \
            and dsc.slice_index % grid.n_cols != 0
        for level, win in enumerate(dsc.windows):
            row0, col0, rows, cols = win[:4]
            first = col0
            if left:
                first = max(col0, prev.windows[level][1] + prev.windows[level][3])
            for r in range(rows):
                if col0 + cols > first:
                    region(lay.pixel_addr(level, row0 + r, first),
                           (col0 + cols - first) * lay.pixel_stride, False, "value")
        region(lay.query_base + dsc.query_start * lay.query_stride,
               dsc.query_count * lay.query_stride, False, "query")
        region(lay.out_base + dsc.query_start * lay.out_stride,
               dsc.query_count * lay.out_stride, True, "output")
        prev = dsc
    return out


class HaloReuse(Sliced):
    """Sliced, keeping the overlap with the left neighbour's window on chip.

    Not what the RTL does today. It would need: a window buffer addressed column-modulo
    its width (a circular buffer, so retained columns need no copy), at least
    ``max window cols + Ws`` columns wide so the next slice's new columns load while this
    one computes (this replaces the two separate double buffers), a descriptor field with
    the first new column per level, and slices visited row by row (the descriptor order
    already is). Rows shared with the slice row above are not kept: that would need a
    buffer of whole map rows.
    """

    name = "halo_reuse"
    label = "sliced + halo reuse"

    def bursts(self, ctx: TrafficContext) -> list[Burst]:
        return halo_reuse_transfers(ctx.program)
