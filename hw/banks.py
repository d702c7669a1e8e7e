"""Window buffers: four parity banks of chunked block RAM, in one or two buffer sets.

A pixel at row ``r``, column ``c`` of its window sits in bank ``b = 2 * (r & 1) +
(c & 1)``: the four corners of every 2x2 bilinear footprint have four different
(row, column) parities, so they are read from four different banks in one cycle. A bank
word is ``lanes`` channels; word ``k`` of pixel ``(r, c)`` of level ``l`` in set ``s`` is
at ``s * set_depth + level_base[l] + ((r >> 1) * bank_cols[l] + (c >> 1)) * pixel_words
+ k`` (``docs/hw.md``, "Window buffers").
"""

from __future__ import annotations

from amaranth.hdl import Array, C, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defslice.hw.params import (
    HwParams,
    bank_chunk_depth,
    bank_chunk_depths,
    index_bits,
    require_params,
)

__all__ = ["BANKS", "READ_LATENCY", "SET_BITS", "BankReadSignature", "WindowBanks", "set_offset"]

#: Banks, one per (row parity, column parity).
BANKS = 4
#: Cycles from ``rd.addr`` to ``rd.data``: the block RAM read, then the chunk's register.
READ_LATENCY = 2
#: Width of a buffer-set index (two sets at most).
SET_BITS = 1


def set_offset(p: HwParams, buffer_set: Value) -> Value:
    """First bank word of buffer set ``buffer_set``."""
    return Mux(buffer_set, p.set_depth, 0) if p.sets == 2 else C(0, 1)


class BankReadSignature(wiring.Signature):
    """The read port of the four banks, as seen by the reader of the words.

    Members
    -------
    addr : Out(ArrayLayout(unsigned(bank_addr_bits), 4))
        One word address per bank, every cycle.
    data : In(ArrayLayout(unsigned(word_bits), 4))
        The words at ``addr``, :data:`READ_LATENCY` cycles later.
    """

    def __init__(self, p: HwParams) -> None:
        require_params(p)
        super().__init__({
            "addr": Out(data.ArrayLayout(unsigned(p.bank_addr_bits), BANKS)),
            "data": In(data.ArrayLayout(unsigned(p.word_bits), BANKS)),
        })


class WindowBanks(wiring.Component):
    """The window buffers and the busy flags of their sets.

    Each bank is a column of *chunks*, separate memories of 2048 words (2048 x 9 block
    RAMs side by side) and below them of one 18 Kbit block RAM's depth at the word width
    (:func:`~defslice.hw.params.bank_chunk_depths`), so every chunk's read data is
    registered next to its block RAMs before the multiplexer that selects the chunk.

    Members
    -------
    wr_en : In(4)
        Write ``wr_data`` at ``wr_addr`` into bank ``b`` when bit ``b`` is set.
    wr_addr : In(bank_addr_bits); wr_data : In(word_bits)
    rd : In(BankReadSignature(p))
        The read port.
    claim, claim_set : In(1), In(SET_BITS)
        Mark a set busy (a window is being loaded into it).
    release, release_set : In(1), In(SET_BITS)
        Mark a set free (its slice is computed). Never the set being claimed.
    clear : In(1)
        Mark every set free (wins over ``claim``).
    busy : Out(2)
        Bit ``s``: set ``s`` holds a window not yet released.
    """

    def __init__(self, p: HwParams) -> None:
        require_params(p)
        if p.sets not in (1, 2):
            raise ValueError(f"p.sets must be 1 or 2, not {p.sets}")
        self.p = p
        super().__init__({
            "wr_en": In(BANKS), "wr_addr": In(p.bank_addr_bits), "wr_data": In(p.word_bits),
            "rd": In(BankReadSignature(p)),
            "claim": In(1), "claim_set": In(SET_BITS),
            "release": In(1), "release_set": In(SET_BITS),
            "clear": In(1), "busy": Out(2),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        depths = bank_chunk_depths(p.bank_depth, p.word_bits)
        unit = bank_chunk_depth(p.word_bits)      # every chunk starts at a multiple of it
        unit_bits = index_bits(unit)
        starts = [-(-sum(depths[:c]) // unit) for c in range(len(depths) + 1)]
        # Chunk of each ``unit`` of the bank (a 2048-word chunk spans several units).
        chunk_of = [c for c in range(len(depths)) for _ in range(starts[c], starts[c + 1])]
        for b in range(BANKS):
            words = []
            for c, depth in enumerate(depths):
                mem = Memory(shape=unsigned(p.word_bits), depth=depth, init=[])
                m.submodules[f"bank{b}_{c}"] = mem
                wp, rp = mem.write_port(), mem.read_port()
                u = self.wr_addr[unit_bits:]
                if starts[c + 1] - starts[c] == 1:
                    here = u == starts[c]
                elif starts[c] == 0:                # (u >= 0 always holds: no comparison)
                    here = u < starts[c + 1]
                else:
                    here = (u >= starts[c]) & (u < starts[c + 1])
                hit = self.wr_en[b] if len(depths) == 1 else self.wr_en[b] & here
                m.d.comb += [wp.en.eq(hit), wp.addr.eq(self.wr_addr), wp.data.eq(self.wr_data),
                             rp.addr.eq(self.rd.addr[b])]
                q = Signal(p.word_bits, name=f"rd_word{b}_{c}")
                m.d.sync += q.eq(rp.data)
                words.append(q)
            if len(depths) == 1:
                m.d.comb += self.rd.data[b].eq(words[0])
            else:
                # The unit (hence the chunk) follows the address through both read stages.
                sel1 = Signal(p.bank_addr_bits - unit_bits, name=f"rd_sel{b}")
                sel2 = Signal.like(sel1, name=f"rd_sel{b}_q")
                m.d.sync += [sel1.eq(self.rd.addr[b][unit_bits:]), sel2.eq(sel1)]
                m.d.comb += self.rd.data[b].eq(Array(words[c] for c in chunk_of)[sel2])
        with m.If(self.claim):
            m.d.sync += self.busy.bit_select(self.claim_set, 1).eq(1)
        with m.If(self.release):
            m.d.sync += self.busy.bit_select(self.release_set, 1).eq(0)
        with m.If(self.clear):
            m.d.sync += self.busy.eq(0)
        return m
