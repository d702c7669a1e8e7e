"""Banked on-chip buffers of the layer engine: lane-masked writes, one read per bank."""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.deep_memory import DeepMemory

__all__ = ["BankedBuffer"]


class BankedBuffer(wiring.Component):
    """``banks`` memories of ``depth`` words, a word being ``lanes`` values.

    Every bank (a :class:`~defslice.hw.deep_memory.DeepMemory`) has one write port whose
    lanes are enabled one by one (a result tile fills ``N`` of a word's ``L`` lanes) and
    one synchronous read port (data one cycle after the address), so a buffer banked the
    way its reader and writer walk it moves a whole operand tile per cycle
    (``docs/hw_layer.md``, "On-chip memories").

    Arguments
    ---------
    banks, depth, lanes : int
    bits : int
        Width of a value.
    is_signed : bool
    ram_style : str or None
        ``"block"``: every bank is marked ``(* ram_style = "block" *)``, which yosys maps to
        block RAM where it would pick LUT RAM for a shallow bank (fewer LUT RAM cells, more
        block RAMs; the read stays synchronous, so no cycle changes); ``None``: synthesis
        picks.

    Members
    -------
    wr : In(ArrayLayout(StructLayout({"en", "addr", "data"}), banks))
        Per bank: ``en`` one bit per lane, ``addr``, ``data`` (``lanes`` values).
    rd_addr : In(ArrayLayout(unsigned, banks)); rd_data : Out(ArrayLayout(word, banks))
    """

    latency = 1

    def __init__(self, banks: int, depth: int, lanes: int, bits: int,
                 is_signed: bool = True, ram_style: str | None = None) -> None:
        if min(banks, depth, lanes, bits) < 1:
            raise ValueError(f"banks, depth, lanes and bits must be >= 1, not "
                             f"{(banks, depth, lanes, bits)}")
        if ram_style not in (None, "block"):
            raise ValueError(f"ram_style must be None or 'block', not {ram_style!r}")
        self.banks, self.depth, self.lanes, self.bits = banks, depth, lanes, bits
        self.ram_style = ram_style
        value = signed(bits) if is_signed else unsigned(bits)
        self.word = data.ArrayLayout(value, lanes)
        addr = unsigned(max(1, (depth - 1).bit_length()))
        super().__init__({
            "wr": In(data.ArrayLayout(data.StructLayout({
                "en": lanes, "addr": addr, "data": self.word}), banks)),
            "rd_addr": In(data.ArrayLayout(addr, banks)),
            "rd_data": Out(data.ArrayLayout(self.word, banks)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        attrs = {"ram_style": self.ram_style} if self.ram_style else None
        for b in range(self.banks):
            m.submodules[f"bank{b}"] = mem = DeepMemory(self.word, self.depth, self.lanes, attrs)
            m.d.comb += [mem.w_en.eq(self.wr[b].en), mem.w_addr.eq(self.wr[b].addr),
                         mem.w_data.eq(self.wr[b].data), mem.r_addr.eq(self.rd_addr[b]),
                         self.rd_data[b].eq(mem.r_data)]
        return m
