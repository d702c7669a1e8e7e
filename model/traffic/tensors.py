"""Where the tensors outside the layout contract live.

The value, query-record, descriptor and output tensors follow the layout contract
(:class:`defslice.model.layout.DramLayout`). Tensors the sampling engine never touches
(the per-point sampled values of the layer-by-layer datapath baseline and, for a DAT
layer, every tensor of :class:`~defslice.model.traffic.layer_graph.LayerGraph` but ``x``)
are placed after it, page-aligned; the weights share one region, each operator's
parameters starting on a bus beat. Addresses only matter for 4 KiB splitting and
address traces.
"""

from __future__ import annotations

from defslice.config import Config
from defslice.model.layout import PAGE, DramLayout
from defslice.model.traffic.layer_graph import LayerGraph

__all__ = ["ExtraTensors"]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class ExtraTensors:
    """Base addresses and strides of the tensors outside the layout contract.

    Parameters
    ----------
    cfg : Config
    layout : DramLayout
        The contract's layout for the same number of queries.

    Members
    -------
    sampled_stride : int
        Bytes per query of the per-point sampled values (``M L P D`` elements).
    sampled_base : int
        Page-aligned base address of those values.
    graph : LayerGraph or None
        The DAT layer (``None`` for MSDA).
    base : dict of str to int
        Byte address of every layer tensor (``x`` is the contract's value tensor).
    weights_base : dict of str to int
        Byte address of each operator's parameters.
    weight_bytes : int
        All parameters of the layer.
    end : int
        First byte after everything placed.
    """

    def __init__(self, cfg: Config, layout: DramLayout) -> None:
        w, d, bus = cfg.workload, cfg.dram, layout.bus_bytes
        lq = layout.num_queries
        self.sampled_stride = _round_up(
            w.sample_heads * w.num_levels * w.points * w.sample_channels * d.element_bytes, bus)
        self.sampled_base = layout.total_bytes
        base = _round_up(self.sampled_base + lq * self.sampled_stride, PAGE)
        self.graph: LayerGraph | None = None
        self.base: dict[str, int] = {}
        self.weights_base: dict[str, int] = {}
        self.weight_bytes = 0
        if w.kind == "dat":
            self.graph = LayerGraph(cfg, layout)
            off = 0
            for op, n in self.graph.weight_bytes.items():
                self.weights_base[op] = base + off
                off += _round_up(n, bus)
            self.weight_bytes = sum(self.graph.weight_bytes.values())
            base = _round_up(base + off, PAGE)
            for t in self.graph.tensors.values():
                if t.name == "x":
                    self.base["x"] = layout.value_base
                    continue
                self.base[t.name] = base
                base = _round_up(base + t.nbytes, PAGE)
        self.end = base
