"""A memory cut into chunks of the deepest 9-bit block-RAM shape, one write and one read port."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, ShapeLike, Signal, Value
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.bram import DEEP_WORDS, deep_chunk_depths
from defslice.hw.params import index_bits

__all__ = ["DeepMemory"]


class DeepMemory(wiring.Component):
    """``depth`` words of ``shape``, built as separate memories of :data:`DEEP_WORDS`
    words and the rest (:func:`~defslice.hw.bram.deep_chunk_depths`), read like one.

    A chunk of 2048 words maps to 2048 x 9 block RAMs side by side, so a wide, deep
    memory drives a third or less of the read wires and multiplexer inputs it would as
    512 x 36 blocks (``docs/hw_layer.md``, "On-chip memories"). Chunks start at
    multiples of :data:`DEEP_WORDS`, so an address's low bits are its place in the chunk
    and its high bits the chunk. Same timing as one synchronous :class:`Memory`: the
    read data one cycle after the address, not transparent to a write of that cycle.

    Arguments
    ---------
    shape : ShapeLike
        A word. With ``lanes``, an :class:`~amaranth.lib.data.ArrayLayout` of ``lanes``
        elements written one by one.
    depth : int
    lanes : int or None
        Bits of ``w_en``: one per element of an ``ArrayLayout`` word; ``None``: one.
    attrs : dict or None
        Attributes of every chunk memory (``{"ram_style": "block"}``).

    Members
    -------
    w_en : In(lanes or 1); w_addr : In(address); w_data : In(shape)
        Write ``w_data`` (the enabled elements) at ``w_addr``.
    r_addr : In(address); r_data : Out(shape)
        The word at ``r_addr`` of the cycle before.
    """

    def __init__(self, shape: ShapeLike, depth: int, lanes: int | None = None,
                 attrs: dict | None = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, not {depth}")
        if lanes is not None and not (isinstance(shape, data.ArrayLayout)
                                      and shape.length == lanes):
            raise ValueError(f"lanes={lanes} needs an ArrayLayout of {lanes} elements as "
                             f"shape, not {shape!r}")
        self.shape, self.depth, self.lanes, self.attrs = shape, depth, lanes, attrs
        self.depths = deep_chunk_depths(depth)
        addr = index_bits(depth)
        super().__init__({
            "w_en": In(lanes or 1), "w_addr": In(addr), "w_data": In(shape),
            "r_addr": In(addr), "r_data": Out(shape),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        low = index_bits(DEEP_WORDS)
        #: The chunk memories of the last elaboration (simulation tests inspect them).
        self.memories = []
        words = []
        for c, depth in enumerate(self.depths):
            mem = memory.Memory(shape=self.shape, depth=depth, init=[], attrs=self.attrs)
            m.submodules[f"chunk{c}"] = mem
            self.memories.append(mem)
            wp = mem.write_port(granularity=1 if self.lanes else None)
            rp = mem.read_port()
            hit = 1 if len(self.depths) == 1 else self.w_addr[low:] == c
            # Address bits above the chunk's own width fall away in the assignments.
            m.d.comb += [wp.en.eq(Mux(hit, self.w_en, 0)), wp.addr.eq(self.w_addr),
                         wp.data.eq(self.w_data), rp.addr.eq(self.r_addr)]
            words.append(Value.cast(rp.data))
        if len(words) == 1:
            m.d.comb += self.r_data.eq(words[0])
        else:
            chunk = Signal(range(len(words)))
            m.d.sync += chunk.eq(self.r_addr[low:])
            m.d.comb += self.r_data.eq(Array(words)[chunk])
        return m
