"""What every dataflow shares: the workload context, scopes, and the dataflow interface.

Scopes
------
``datapath``
    The computation the RTL implements: for every query, bilinear samples of every
    (head, level, point), weighted by the attention weights and summed. Inputs: the value
    map and the query parameters (point records); output: ``M * D`` samples per query.
``layer``
    ``dat`` workloads only: the whole DAT++ deformable-attention layer
    (:mod:`defslice.model.dat_layer`; its operators and tensors:
    :class:`~defslice.model.traffic.layer_graph.LayerGraph`), so that a dataflow which
    fuses the sampling with the rest of the layer is credited for it. Every dataflow
    counts the same work in a scope.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from defslice.config import Config
from defslice.errors import InputError
from defslice.model.layer_layout import LayerDims, LayerLayout, SliceTask, slice_tasks
from defslice.model.layout import DramLayout, SlicedProgram
from defslice.model.slicing import SliceGrid
from defslice.model.traffic.counter import TrafficCount
from defslice.model.traffic.tensors import ExtraTensors
from defslice.model.traffic.trace import SamplingTrace

__all__ = ["SCOPES", "Dataflow", "TrafficContext"]

SCOPES = ("datapath", "layer")


class TrafficContext:
    """A configuration and the trace every dataflow walks.

    Parameters
    ----------
    cfg : Config
    trace : SamplingTrace
    """

    def __init__(self, cfg: Config, trace: SamplingTrace) -> None:
        self.cfg = cfg
        self.trace = trace
        self.layout = DramLayout(cfg, trace.num_queries)
        self.extra = ExtraTensors(cfg, self.layout)

    @property
    def scopes(self) -> tuple[str, ...]:
        """Scopes this workload supports (``layer`` needs a ``dat`` workload)."""
        return SCOPES if self.cfg.workload.kind == "dat" else SCOPES[:1]

    @property
    def headline_scope(self) -> str:
        """The scope compared with the paper: the whole layer for DAT."""
        return self.scopes[-1]

    @cached_property
    def program(self) -> SlicedProgram:
        """The host program of the RTL for this workload (layout contract)."""
        return SlicedProgram(self.cfg, self.trace.inputs, self.trace.reference_points)

    @cached_property
    def layer_engine(self) -> tuple[LayerLayout, list[SliceTask]]:
        """DRAM layout and slice tasks of the layer engine for this configuration
        (``docs/hw_layer.md``; its transfers are
        :func:`defslice.model.layer_layout.layer_transfers` of these)."""
        cfg, hw, d = self.cfg, self.cfg.hw, self.cfg.dram
        dims = LayerDims.from_config(cfg)
        grid = SliceGrid.from_config(cfg)
        layout = LayerLayout(dims, grid.num_slices, hw.lanes, hw.array_cols, hw.bus_bytes,
                             hw.max_burst_beats, d.element_bytes, d.out_element_bytes,
                             hw.addr_bits)
        return layout, slice_tasks(dims, grid)

    def new_count(self, record: bool = False) -> TrafficCount:
        """An empty count on this bus."""
        return TrafficCount(self.layout.bus_bytes, self.layout.max_beats, record)

    def head_chunk_bytes(self) -> int:
        """Bytes of one head's ``D`` channels of a pixel: a sampling fetch."""
        w = self.cfg.workload
        return w.sample_channels * self.cfg.dram.element_bytes

    def chunk_addr(self, pixel: np.ndarray, head: np.ndarray) -> np.ndarray:
        """Byte address of head ``head`` of flat value pixel ``pixel`` (layout contract:
        levels back to back, channels head-major inside a pixel)."""
        return self.layout.value_base + pixel * self.layout.pixel_stride \
            + head * self.head_chunk_bytes()

    # -- whole-tensor streams ---------------------------------------------------------
    def stream(self, count: TrafficCount, tensor: str, write: bool, base: int,
               nbytes: int) -> None:
        """One contiguous tensor read or written front to back in maximal bursts."""
        count.add_regions(tensor, write, np.array([base]), np.array([nbytes]))

    def stream_value(self, count: TrafficCount) -> None:
        """The whole value tensor (``x`` of a DAT layer), read once."""
        self.stream(count, "value", False, self.layout.value_base, self.layout.value_bytes)

    def stream_queries(self, count: TrafficCount) -> None:
        """Every query record, read once."""
        lay = self.layout
        self.stream(count, "query", False, lay.query_base, lay.num_queries * lay.query_stride)

    def stream_outputs(self, count: TrafficCount) -> None:
        """Every sampling output, written once."""
        lay = self.layout
        self.stream(count, "output", True, lay.out_base, lay.num_queries * lay.out_stride)


class Dataflow:
    """A dataflow: a documented schedule whose DRAM traffic is counted on a trace.

    Subclasses set :attr:`name` (JSON key), :attr:`label` (tables, plots), the
    :attr:`scopes` they are defined in, and implement :meth:`datapath` and/or
    :meth:`layer`; their docstrings list the assumptions.
    """

    name = "dataflow"
    label = "dataflow"
    scopes: tuple[str, ...] = SCOPES

    def count(self, ctx: TrafficContext, scope: str = "datapath",
              record: bool = False) -> TrafficCount:
        """Traffic of this dataflow on ``ctx`` in ``scope`` (``datapath`` or ``layer``)."""
        if scope not in ctx.scopes:
            raise InputError(f"scope {scope!r} is not available for a "
                             f"{ctx.cfg.workload.kind!r} workload; one of {ctx.scopes}")
        if scope not in self.scopes:
            raise InputError(f"the {self.label} dataflow is defined in the "
                             f"{', '.join(self.scopes)} scope only, not {scope!r}")
        c = ctx.new_count(record)
        (self.datapath if scope == "datapath" else self.layer)(ctx, c)
        return c

    def datapath(self, ctx: TrafficContext, c: TrafficCount) -> None:
        """Count the sampling datapath's traffic into ``c``."""
        raise NotImplementedError

    def layer(self, ctx: TrafficContext, c: TrafficCount) -> None:
        """Count the whole layer's traffic into ``c``."""
        raise NotImplementedError
