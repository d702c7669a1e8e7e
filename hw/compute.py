"""Compute engine: one loaded slice's point records to packed output beats.

A slice taken from the loader goes through, in order: the *feeder* (selects each point
record of a query beat, counting head ``m``, level ``l`` and point ``p``), the
:class:`~defslice.hw.datapath.CoordUnit`, the *expander* (``D / lanes`` bank reads per
point, one bilinear sample of ``lanes`` channels per cycle), the bank read, the
:class:`~defslice.hw.datapath.MacUnit`, the :class:`~defslice.hw.datapath.Accumulator`
and the *packer* (output words into bus beats, a query's last beat zero padded) into the
W FIFO that feeds the writer.
"""

from __future__ import annotations

from amaranth.hdl import Array, C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.banks import BANKS, READ_LATENCY, SET_BITS, BankReadSignature, set_offset
from defslice.hw.datapath import Accumulator, CoordUnit, MacUnit
from defslice.hw.params import HwParams, index_bits, require_params
from defslice.hw.records import (
    COUNT_BITS,
    DESC_FIELD_BITS,
    WEIGHT_BITS,
    point_record_layout,
    window_layout,
)
from defslice.hw.router import slice_layout
from defslice.model.layout import POINT_RECORD

__all__ = ["DRAIN_CYCLES", "W_CREDIT_SLACK", "W_FIFO_DEPTH", "Compute"]

#: Beats of the W FIFO; compute issues only while this many minus ``W_CREDIT_SLACK`` are
#: free, so everything in flight behind the bank read always finds room.
W_FIFO_DEPTH = 32
W_CREDIT_SLACK = 11
#: Cycles after the last bank read of a slice before its buffer set is released: by
#: then its data has left the banks.
DRAIN_CYCLES = READ_LATENCY


class Compute(wiring.Component):
    """Feeder, coordinate unit, expander, MAC lanes, accumulator and packer of a slice.

    Members
    -------
    slice : In(stream.Signature(slice_layout(p)))
        A loaded slice (``set``, ``count``, ``win``; the output region is the writer's).
        Taken into a one-entry register while the previous slice computes.
    queries : In(stream.Signature(bus_bits))
        Point records (:data:`~defslice.model.layout.POINT_RECORD`) as bus beats.
    banks : Out(BankReadSignature(p))
        Read port of the window banks.
    o : Out(stream.Signature(bus_bits))
        Output beats (the W FIFO's read side).
    release, release_set : Out(1), Out(1)
        Pulse: the slice in ``release_set`` is computed (its set may be reloaded).
    issue : Out(1)
        A bank read (one bilinear sample of ``lanes`` channels) is issued.
    computing : Out(1)
        A slice is held (feeding or draining).
    idle : Out(1)
        No slice held or waiting.
    wait_slice, wait_query : Out(1)
        Nothing in the pipeline's front and no slice waiting / the slice's next point
        record not arrived: the stall causes, counted by the top.
    """

    def __init__(self, p: HwParams) -> None:
        require_params(p)
        if p.records_per_beat * POINT_RECORD.bits != p.bus_bits:
            raise ValueError(f"a {p.bus_bits}-bit beat holds no whole number of "
                             f"{POINT_RECORD.bits}-bit point records")
        self.p = p
        super().__init__({
            "slice": In(stream.Signature(slice_layout(p))),
            "queries": In(stream.Signature(p.bus_bits)),
            "banks": Out(BankReadSignature(p)),
            "o": Out(stream.Signature(p.bus_bits)),
            "release": Out(1), "release_set": Out(SET_BITS), "issue": Out(1),
            "computing": Out(1), "idle": Out(1), "wait_slice": Out(1), "wait_query": Out(1),
        })
        #: Side information that travels with a point through the coordinate unit.
        self.tag_layout = data.StructLayout({
            "level": unsigned(index_bits(p.num_levels)), "head": unsigned(index_bits(p.heads)),
            "first": 1, "last": 1, "qend": 1, "attn": signed(WEIGHT_BITS),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        L = p.num_levels
        m.submodules.coord = self._coord = CoordUnit(p, self.tag_layout)
        m.submodules.mac = self._mac = MacUnit(p, data.StructLayout(
            {"first": 1, "last": 1, "qend": 1}))
        m.submodules.acc = self._acc = Accumulator(p, self._mac.term_bits)
        m.submodules.w_fifo = self._w_fifo = fifo.SyncFIFOBuffered(width=p.bus_bits,
                                                                    depth=W_FIFO_DEPTH)
        # The slice being computed, and its point counters.
        self._c_win = [Signal(window_layout(), name=f"c_win{lvl}") for lvl in range(L)]
        self._c_set = Signal(SET_BITS)
        self._c_count = Signal(COUNT_BITS)
        self._c_q = Signal(COUNT_BITS)
        self._c_m = Signal(range(max(2, p.heads)))
        self._c_l = Signal(index_bits(L))
        self._c_p = Signal(range(max(2, p.points)))
        self._c_kk = Signal(range(max(2, p.records_per_beat)))
        self._feeding = Signal()
        self._take = Signal()
        self._e_valid = Signal()
        self._rec_last_in_q = ((self._c_m == p.heads - 1) & (self._c_l == L - 1)
                               & (self._c_p == p.points - 1))
        self._handoff(m)
        self._feeder(m)
        self._expander(m)
        self._packer(m)
        self._control(m)
        return m

    def _handoff(self, m: Module) -> None:
        """The one-entry slice register in front of compute."""
        L = self.p.num_levels
        self._ho_valid = Signal()
        self._ho_win = [Signal(window_layout(), name=f"ho_win{lvl}") for lvl in range(L)]
        self._ho_set = Signal(SET_BITS)
        self._ho_count = Signal(COUNT_BITS)
        pay = self.slice.payload
        m.d.comb += self.slice.ready.eq(~self._ho_valid)
        with m.If(self.slice.valid & self.slice.ready):
            m.d.sync += [self._ho_valid.eq(1), self._ho_set.eq(pay.set),
                         self._ho_count.eq(pay.count)]
            m.d.sync += [self._ho_win[lvl].eq(pay.win[lvl]) for lvl in range(L)]

    def _feeder(self, m: Module) -> None:
        """Point records in (m, l, p) order into the coordinate unit."""
        p, coord = self.p, self._coord
        L = p.num_levels
        c_m, c_l, c_p, c_kk = self._c_m, self._c_l, self._c_p, self._c_kk
        beat = self.queries.payload
        rec = data.View(point_record_layout(),
                        beat.word_select(c_kk, POINT_RECORD.bits)
                        if p.records_per_beat > 1 else beat)
        bank_cols = Array(C(v, DESC_FIELD_BITS) for v in p.bank_cols)
        pay = coord.i.payload
        m.d.comb += [
            pay.x.eq(rec.x), pay.y.eq(rec.y), pay.tag.attn.eq(rec.weight),
            pay.win.eq(Array(self._c_win)[c_l]), pay.bank_cols.eq(bank_cols[c_l]),
            pay.tag.level.eq(c_l), pay.tag.head.eq(c_m),
            pay.tag.first.eq((c_l == 0) & (c_p == 0)),
            pay.tag.last.eq((c_l == L - 1) & (c_p == p.points - 1)),
            pay.tag.qend.eq(self._rec_last_in_q),
            coord.i.valid.eq(self._feeding & self.queries.valid),
            self._take.eq(coord.i.valid & coord.i.ready),
        ]
        with m.If(self._take):
            with m.If((c_kk == p.records_per_beat - 1) | self._rec_last_in_q):
                m.d.comb += self.queries.ready.eq(1)
                m.d.sync += c_kk.eq(0)
            with m.Else():
                m.d.sync += c_kk.eq(c_kk + 1)
            m.d.sync += c_p.eq(c_p + 1)
            with m.If(c_p == p.points - 1):
                m.d.sync += [c_p.eq(0), c_l.eq(c_l + 1)]
                with m.If(c_l == L - 1):
                    m.d.sync += [c_l.eq(0), c_m.eq(c_m + 1)]
                    with m.If(c_m == p.heads - 1):
                        m.d.sync += [c_m.eq(0), self._c_q.eq(self._c_q + 1)]

    def _expander(self, m: Module) -> None:
        """One bank read of ``lanes`` channels per cycle, ``D / lanes`` per point, while
        the W FIFO has room for everything in flight."""
        p, coord = self.p, self._coord
        e_g = Signal(range(max(2, p.head_words)))
        e_base = [Signal(p.bank_addr_bits, name=f"e_base{b}") for b in range(BANKS)]
        self._e_weight = Signal.like(coord.o.payload.weight)
        self._e_tag = Signal(self.tag_layout)
        self._last_g = Signal()
        credit = Signal()
        level_base = Array(C(v, index_bits(p.bank_depth + 1) + 1) for v in p.level_base)
        m.d.comb += [
            self.issue.eq(self._e_valid & credit), self._last_g.eq(e_g == p.head_words - 1),
            coord.o.ready.eq(~self._e_valid | (self.issue & self._last_g)),
        ]
        # Registered: the level it saw may be one push old, which the slack covers.
        m.d.sync += credit.eq(self._w_fifo.level < W_FIFO_DEPTH - W_CREDIT_SLACK)
        c_off = set_offset(p, self._c_set)
        with m.If(coord.o.valid & coord.o.ready):
            ot = coord.o.payload.tag
            m.d.sync += [self._e_valid.eq(1), e_g.eq(0),
                         self._e_weight.eq(coord.o.payload.weight), self._e_tag.eq(ot)]
            for b in range(BANKS):
                m.d.sync += e_base[b].eq(c_off + level_base[ot.level]
                                         + coord.o.payload.pixel[b] * p.pixel_words
                                         + ot.head * p.head_words)
        with m.Elif(self.issue & self._last_g):
            m.d.sync += self._e_valid.eq(0)
        with m.If(self.issue):
            m.d.sync += e_g.eq(Mux(self._last_g, 0, e_g + 1))
        for b in range(BANKS):
            rd_addr = Signal(p.bank_addr_bits, name=f"rd_addr{b}")
            m.d.comb += [rd_addr.eq(e_base[b] + e_g), self.banks.addr[b].eq(rd_addr)]
        self._multiply(m)

    def _multiply(self, m: Module) -> None:
        """The side information follows the bank read's two stages to the MAC lanes, whose
        terms feed the accumulator."""
        mac, acc = self._mac, self._acc
        r_valid = Signal()
        r_weight = Signal.like(self._e_weight)
        r_tag = Signal(self.tag_layout)
        r_qend = Signal()
        m.d.sync += [r_valid.eq(self.issue), r_weight.eq(self._e_weight), r_tag.eq(self._e_tag),
                     r_qend.eq(self._e_tag.qend & self._last_g)]
        r2_valid = Signal()
        r2_weight = Signal.like(self._e_weight)
        r2_tag = Signal(self.tag_layout)
        r2_qend = Signal()
        m.d.sync += [r2_valid.eq(r_valid), r2_weight.eq(r_weight), r2_tag.eq(r_tag),
                     r2_qend.eq(r_qend)]
        mp = mac.i.payload
        m.d.comb += [mac.i.valid.eq(r2_valid), mp.weight.eq(r2_weight),
                     mp.attn.eq(r2_tag.attn), mp.tag.first.eq(r2_tag.first),
                     mp.tag.last.eq(r2_tag.last), mp.tag.qend.eq(r2_qend)]
        for b in range(BANKS):
            m.d.comb += mp.value[b].eq(self.banks.data[b])
        m.d.comb += [acc.i_valid.eq(mac.o.valid), acc.i_term.eq(mac.o.payload.term),
                     acc.i_first.eq(mac.o.payload.tag.first),
                     acc.i_last.eq(mac.o.payload.tag.last),
                     acc.i_qend.eq(mac.o.payload.tag.qend)]

    def _packer(self, m: Module) -> None:
        """``out_words_per_beat`` output words per beat, a query's last beat zero padded."""
        p, acc, w_fifo = self.p, self._acc, self._w_fifo
        k_o = p.out_words_per_beat
        oeb_bits = 8 * p.out_element_bytes
        pk_beat = Signal(p.bus_bits)
        pk_j = Signal(range(max(2, k_o)))
        ext = Signal(p.lanes * oeb_bits)
        for k in range(p.lanes):
            m.d.comb += ext[k * oeb_bits:(k + 1) * oeb_bits].eq(acc.o_data[k])
        beat_next = Signal(p.bus_bits)
        m.d.comb += beat_next.eq(pk_beat)
        if k_o > 1:
            m.d.comb += beat_next.word_select(pk_j, p.lanes * oeb_bits).eq(ext)
        else:
            m.d.comb += beat_next.eq(ext)
        with m.If(acc.o_valid):
            with m.If((pk_j == k_o - 1) | acc.o_qend):
                m.d.comb += [w_fifo.w_en.eq(1), w_fifo.w_data.eq(beat_next)]
                m.d.sync += [pk_j.eq(0), pk_beat.eq(0)]
            with m.Else():
                m.d.sync += [pk_j.eq(pk_j + 1), pk_beat.eq(beat_next)]
        m.d.comb += [self.o.valid.eq(w_fifo.r_rdy), self.o.payload.eq(w_fifo.r_data),
                     w_fifo.r_en.eq(self.o.ready)]

    def _control(self, m: Module) -> None:
        """Take a slice, feed its records, drain the pipeline, release its set."""
        L = self.p.num_levels
        c_drain = Signal(range(DRAIN_CYCLES + 1))
        pipe_busy = self._coord.busy | self._e_valid
        drained = Signal()
        with m.FSM(name="compute") as c_fsm:
            with m.State("IDLE"):
                with m.If(self._ho_valid):
                    m.d.sync += [self._ho_valid.eq(0), self._c_set.eq(self._ho_set),
                                 self._c_count.eq(self._ho_count), self._c_q.eq(0),
                                 self._c_m.eq(0), self._c_l.eq(0), self._c_p.eq(0),
                                 self._c_kk.eq(0)]
                    m.d.sync += [self._c_win[lvl].eq(self._ho_win[lvl]) for lvl in range(L)]
                    with m.If(self._ho_count == 0):
                        m.d.sync += c_drain.eq(0)
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self._feeding.eq(1)
                with m.If(self._take & self._rec_last_in_q & (self._c_q == self._c_count - 1)):
                    m.d.sync += c_drain.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~pipe_busy):
                    m.d.sync += c_drain.eq(c_drain + 1)
                    with m.If(c_drain == DRAIN_CYCLES - 1):
                        m.next = "IDLE"
        m.d.comb += [
            drained.eq(c_fsm.ongoing("DRAIN") & ~pipe_busy & (c_drain == DRAIN_CYCLES - 1)),
            self.release.eq(drained), self.release_set.eq(self._c_set),
            self.computing.eq(c_fsm.ongoing("RUN") | c_fsm.ongoing("DRAIN")),
            self.idle.eq(c_fsm.ongoing("IDLE") & ~self._ho_valid),
            self.wait_slice.eq(~self.issue & ~self._e_valid & c_fsm.ongoing("IDLE")
                               & ~self._ho_valid),
            self.wait_query.eq(~self.issue & ~self._e_valid & c_fsm.ongoing("RUN")
                               & ~self.queries.valid & self._coord.i.ready),
        ]
