"""This design's dataflow, and the same with halo reuse between neighbouring slices."""

from __future__ import annotations

from dataclasses import replace

from defslice.model.layer_layout import SliceTask, layer_transfers
from defslice.model.layout import Burst, SlicedProgram, split_bursts
from defslice.model.slicing import SliceGrid
from defslice.model.traffic.base import Dataflow, TrafficContext
from defslice.model.traffic.counter import TrafficCount

__all__ = ["HaloReuse", "Sliced", "halo_reuse_tasks", "halo_reuse_transfers"]


class Sliced(Dataflow):
    """The sliced dataflow exactly as the hardware issues it.

    Datapath scope: the sampling engine's bursts, :meth:`SlicedProgram.transfers` (layout
    contract: one descriptor, the window with its halo row by row, the slice's query
    records, its outputs, per non-empty slice), counted as they are.

    Layer scope (DAT): the layer engine's bursts (``docs/hw_layer.md``),
    :func:`defslice.model.layer_layout.layer_transfers`: the parameters once, then per
    slice its descriptor, its window row by row when it holds keys, and its own pixels
    of ``y`` row by row. Everything else (``q`` over the window, the offset network, the
    keys, the attention of the slice's pixels) stays on chip.

    Either count equals the engine's AXI traffic by construction.
    """

    name = "sliced"
    label = "sliced (this design)"

    def bursts(self, ctx: TrafficContext) -> list[Burst]:
        """The sampling engine's transfers."""
        return ctx.program.transfers()

    def layer_bursts(self, ctx: TrafficContext) -> list[Burst]:
        """The layer engine's transfers."""
        layout, tasks = ctx.layer_engine
        return layer_transfers(layout, tasks)

    def datapath(self, ctx: TrafficContext, c: TrafficCount) -> None:
        c.add_bursts(self.bursts(ctx))

    def layer(self, ctx: TrafficContext, c: TrafficCount) -> None:
        c.add_bursts(self.layer_bursts(ctx))


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

    Datapath scope: :func:`halo_reuse_transfers`; layer scope: the layer engine's
    transfers of :func:`halo_reuse_tasks`. Not what either engine does today. It would
    need: a window buffer addressed column-modulo its width (a circular buffer, so
    retained columns need no copy), at least ``max window cols + Ws`` columns wide so the
    next slice's new columns load while this one computes (this replaces the two
    separate double buffers), a descriptor field with the first new column per level,
    and slices visited row by row (the descriptor order already is). Rows shared with the
    slice row above are not kept: that would need a buffer of whole map rows.
    """

    name = "halo_reuse"
    label = "sliced + halo reuse"

    def bursts(self, ctx: TrafficContext) -> list[Burst]:
        return halo_reuse_transfers(ctx.program)

    def layer_bursts(self, ctx: TrafficContext) -> list[Burst]:
        layout, tasks = ctx.layer_engine
        return layer_transfers(layout, halo_reuse_tasks(tasks, SliceGrid.from_config(ctx.cfg)))


def halo_reuse_tasks(tasks: list[SliceTask], grid: SliceGrid) -> list[SliceTask]:
    """The layer engine's slice tasks with the window columns already on chip left out.

    When the previous slice that loaded a window (one holding keys) is the left
    neighbour in the same slice row, the columns both windows share are not read again:
    the window starts after the neighbour's last column.
    """
    out, prev = [], None
    for t in tasks:
        w = t.window
        if t.num_keys and prev is not None and prev.index == t.index - 1 \
                and t.index % grid.n_cols:
            first = max(w.col0, prev.window.col0 + prev.window.cols)
            t = replace(t, window=replace(w, col0=first, cols=w.col0 + w.cols - first))
        out.append(t)
        if t.num_keys:
            prev = tasks[t.index]
    return out
