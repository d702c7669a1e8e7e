"""Output writer: each slice's output region as maximal AXI4 write bursts."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.axi import (
    BURST_INCR,
    AddressSignature,
    BurstWalker,
    WriteDataSignature,
    WriteResponseSignature,
)
from defslice.hw.params import HwParams, require_params
from defslice.hw.records import COUNT_BITS

__all__ = ["REGION_DEPTH", "Writer", "region_layout"]

#: Output regions (slices) queued ahead of the writer.
REGION_DEPTH = 4


def region_layout(p: HwParams) -> data.StructLayout:
    """A DRAM region: byte address ``addr`` (bus aligned) and length ``beats``."""
    return data.StructLayout({"addr": p.addr_bits, "beats": COUNT_BITS})


class Writer(wiring.Component):
    """Issues, per region, the bursts of
    :func:`~defslice.model.layout.split_bursts` (AW) and their data (W).

    Members
    -------
    region : In(stream.Signature(region_layout(p)))
        The next output region (queued, :data:`REGION_DEPTH` deep).
    data : In(stream.Signature(bus_bits))
        Output beats, in region order.
    aw : Out(AddressSignature(addr_bits)); w : Out(WriteDataSignature(bus_bits));
    b : Out(WriteResponseSignature())
        The AXI4 write channels (every response is accepted at once).
    start : In(1)
        Pulse: a run starts (clears the burst counts and the error).
    error_resp : Out(1)
        A write response was not OKAY.
    idle : Out(1)
        No region queued or in progress, every burst answered.
    """

    def __init__(self, p: HwParams) -> None:
        self.p = require_params(p)
        super().__init__({
            "region": In(stream.Signature(region_layout(p))),
            "data": In(stream.Signature(p.bus_bits)),
            "aw": Out(AddressSignature(p.addr_bits)), "w": Out(WriteDataSignature(p.bus_bits)),
            "b": Out(WriteResponseSignature()),
            "start": In(1), "error_resp": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        ab = p.addr_bits
        m.submodules.region_fifo = regions = fifo.SyncFIFOBuffered(width=ab + COUNT_BITS,
                                                                   depth=REGION_DEPTH)
        m.submodules.aw = walk = BurstWalker(p, "aw")
        aw, w, b = self.aw, self.w, self.b
        left = Signal(9)            # beats of the current burst not yet sent
        aw_count = Signal(COUNT_BITS)
        b_count = Signal(COUNT_BITS)
        m.d.comb += [
            regions.w_en.eq(self.region.valid), self.region.ready.eq(regions.w_rdy),
            regions.w_data.eq(Cat(self.region.payload.addr, self.region.payload.beats)),
            walk.load_addr.eq(regions.r_data[:ab]), walk.load_beats.eq(regions.r_data[ab:]),
            aw.id.eq(0), aw.addr.eq(walk.addr), aw.len.eq(walk.beats - 1),
            aw.size.eq(p.beat_shift), aw.burst.eq(BURST_INCR), aw.lock.eq(0),
            aw.cache.eq(0), aw.prot.eq(0),
            w.data.eq(self.data.payload), w.strb.eq(-1), w.last.eq(left == 1),
            b.ready.eq(1),
        ]
        with m.If(self.start):
            m.d.sync += self.error_resp.eq(0)
        with m.If(b.valid):
            m.d.sync += b_count.eq(b_count + 1)
            with m.If(b.resp != 0):
                m.d.sync += self.error_resp.eq(1)
        with m.FSM(name="wr") as w_fsm:
            with m.State("IDLE"):
                m.d.comb += regions.r_en.eq(1)
                with m.If(regions.r_rdy):
                    m.d.comb += walk.load.eq(1)
                    with m.If(regions.r_data[ab:] != 0):
                        m.next = "AW"
            with m.State("AW"):
                m.d.comb += aw.valid.eq(walk.ok)
                with m.If(aw.valid & aw.ready):
                    m.d.comb += walk.advance.eq(1)
                    m.d.sync += [left.eq(walk.beats), aw_count.eq(aw_count + 1)]
                    m.next = "W"
            with m.State("W"):
                m.d.comb += [w.valid.eq(self.data.valid), self.data.ready.eq(w.ready)]
                with m.If(w.valid & w.ready):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        with m.If(walk.remaining == 0):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "AW"
        with m.If(self.start):
            m.d.sync += [aw_count.eq(0), b_count.eq(0)]
        m.d.comb += self.idle.eq(w_fsm.ongoing("IDLE") & ~regions.r_rdy
                                 & (aw_count == b_count))
        return m
