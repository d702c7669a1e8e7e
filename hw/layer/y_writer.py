"""y writer: each slice's own pixels of ``y``, row by row, as AXI write bursts."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.axi import AddressSignature, WriteDataSignature, WriteResponseSignature
from defslice.hw.layer.sequencer import INDEX_BITS
from defslice.hw.params import HwParams, require_params
from defslice.hw.regmap import REG_BITS
from defslice.hw.writer import Writer

__all__ = ["SLICE_DEPTH", "YWriter", "rect_layout"]

#: Slices whose rows wait for the writer.
SLICE_DEPTH = 4


def rect_layout() -> data.StructLayout:
    """A slice's own pixels: first row and column, rows and columns."""
    return data.StructLayout({name: unsigned(INDEX_BITS)
                              for name in ("row0", "col0", "rows", "cols")})


class YWriter(wiring.Component):
    """Writes ``y`` slice by slice: one DRAM region per pixel row of the slice (the
    ``output`` regions of :func:`~defslice.model.layer_layout.layer_transfers`, split into
    bursts by :class:`~defslice.hw.writer.Writer`), its data the core's ``y`` beats.

    Parameters
    ----------
    p : HwParams
        Bus width, burst length, address width.
    width : int
        Map width ``W`` (pixels).
    out_stride : int
        Bytes per pixel of ``y`` (a multiple of the bus width).

    Members
    -------
    slices : In(stream.Signature(rect_layout()))
        The slices' own pixels, in the order their ``y`` beats come.
    y : In(stream.Signature(bus_bits))
        ``y`` beats: each slice's pixels row-major, ``out_stride / bus_bytes`` beats each.
    out_base : In(32)
        Byte address of ``y`` (bus aligned).
    aw : Out(AddressSignature(addr_bits)); w : Out(WriteDataSignature(bus_bits));
    b : Out(WriteResponseSignature())
        The AXI4 write channels.
    start : In(1)
        Pulse: a run starts.
    error_resp : Out(1)
        A write response was not OKAY.
    idle : Out(1)
        No slice queued or in progress, every burst answered.
    """

    def __init__(self, p: HwParams, width: int, out_stride: int) -> None:
        self.p = require_params(p)
        if out_stride % p.bus_bytes:
            raise ValueError(f"out_stride {out_stride} is not a multiple of the bus width "
                             f"{p.bus_bytes}")
        self.width, self.out_stride = width, out_stride
        super().__init__({
            "slices": In(stream.Signature(rect_layout())),
            "y": In(stream.Signature(p.bus_bits)),
            "out_base": In(REG_BITS),
            "aw": Out(AddressSignature(p.addr_bits)), "w": Out(WriteDataSignature(p.bus_bits)),
            "b": Out(WriteResponseSignature()),
            "start": In(1), "error_resp": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        m.submodules.writer = wr = Writer(p)
        m.submodules.slice_fifo = sf = fifo.SyncFIFOBuffered(width=rect_layout().size,
                                                             depth=SLICE_DEPTH)
        for name in ("aw", "w", "b"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(wr, name))
        m.d.comb += [sf.w_en.eq(self.slices.valid), sf.w_data.eq(self.slices.payload),
                     self.slices.ready.eq(sf.w_rdy),
                     wr.data.valid.eq(self.y.valid), wr.data.payload.eq(self.y.payload),
                     self.y.ready.eq(wr.data.ready), wr.start.eq(self.start),
                     self.error_resp.eq(wr.error_resp)]
        rect = data.View(rect_layout(), sf.r_data)
        pitch = self.width * self.out_stride
        addr = Signal(p.addr_bits)
        beats = Signal(INDEX_BITS + (self.out_stride // p.bus_bytes).bit_length())
        rows_left = Signal(INDEX_BITS)
        # Per slice: its first row's address (two registered steps), then a region per row.
        first = Signal(p.addr_bits)
        with m.FSM(name="rows") as fsm:
            with m.State("IDLE"):
                with m.If(sf.r_rdy):
                    m.d.sync += [first.eq(rect.row0 * self.width + rect.col0),
                                 beats.eq(rect.cols * (self.out_stride // p.bus_bytes)),
                                 rows_left.eq(rect.rows)]
                    m.next = "ADDR"
            with m.State("ADDR"):
                m.d.sync += addr.eq(self.out_base + first * self.out_stride)
                m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += [wr.region.valid.eq(rows_left != 0),
                             wr.region.payload.addr.eq(addr),
                             wr.region.payload.beats.eq(beats)]
                with m.If(rows_left == 0):
                    m.d.comb += sf.r_en.eq(1)
                    m.next = "IDLE"
                with m.Elif(wr.region.ready):
                    m.d.sync += [addr.eq(addr + pitch), rows_left.eq(rows_left - 1)]
        m.d.comb += self.idle.eq(fsm.ongoing("IDLE") & ~sf.r_rdy & wr.idle)
        return m
