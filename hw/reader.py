"""Read address generator: the AR bursts of every descriptor, its window and its queries.

Two agents share the AR channel. The *window agent* walks the descriptors: for each it
reads the descriptor, waits for it to be parsed and for a free buffer set, then requests
the window level by level, row by row (one region per row), and finally hands the slice's
query region to the *query agent*. The query agent reads each slice's query records one
burst at a time in the window agent's gaps (between rows, while it waits for a free set)
and only when the query FIFO has room for the whole burst, so R beats are always accepted
and the next window streams in while the current slice computes. Every AR pushes a
:class:`Tag` (what the burst carries) for the R router: AXI returns the reads of one ID in
order. The bursts are those of :meth:`defslice.model.layout.SlicedProgram.transfers`.
"""

from __future__ import annotations

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.axi import BURST_INCR, AddressSignature, BurstWalker
from defslice.hw.banks import SET_BITS
from defslice.hw.params import HwParams, index_bits, require_params
from defslice.hw.records import COUNT_BITS, DESC_FIELD_BITS, window_layout
from defslice.hw.regmap import REG_BITS

__all__ = ["QUERY_FIFO_MIN_DEPTH", "TAG_DEPTH", "DescriptorSignature", "Reader", "Tag",
           "query_fifo_depth"]

#: The query FIFO holds at least one longest burst (query bursts wait for room).
QUERY_FIFO_MIN_DEPTH = 32
#: Read bursts in flight (AR accepted, last R beat not yet).
TAG_DEPTH = 16
#: Slices whose query region waits for the query agent.
QSLICE_DEPTH = 4


class Tag(enum.Enum, shape=2):
    """What a read burst carries."""

    DESC = 0
    WINDOW = 1
    QUERY = 2


def query_fifo_depth(p: HwParams) -> int:
    """Beats of the query FIFO: at least one longest burst."""
    return max(QUERY_FIFO_MIN_DEPTH, p.max_beats)


class DescriptorSignature(wiring.Signature):
    """The parsed descriptor, from the descriptor register (the router) to the reader.

    Members
    -------
    parsed : Out(1)
        The register holds an accepted descriptor the reader has not taken yet.
    win : Out(ArrayLayout(window_layout(), levels))
        Its windows;
    query_addr : Out(addr_bits); query_beats : Out(32)
        its query region (bytes, beats).
    parse_ack : In(1)
        Pulse: the reader took it (a set is claimed, the window requested next).
    load_set : In(1)
        The buffer set the taken descriptor's window loads into.
    """

    def __init__(self, p: HwParams) -> None:
        require_params(p)
        super().__init__({
            "parsed": Out(1), "win": Out(data.ArrayLayout(window_layout(), p.num_levels)),
            "query_addr": Out(p.addr_bits), "query_beats": Out(COUNT_BITS),
            "parse_ack": In(1), "load_set": In(SET_BITS),
        })


class Reader(wiring.Component):
    """The read side's address generator (window agent, query agent, AR arbiter).

    Members
    -------
    ar : Out(AddressSignature(addr_bits))
        The AXI4 AR channel.
    tags : Out(stream.Signature(Tag))
        One tag per accepted AR, in order; the R router takes it on the burst's RLAST.
    start : In(1)
        Pulse: walk ``num_desc`` descriptors from ``desc_base``.
    value_base, desc_base, num_desc : In(32)
        Registers (bytes; descriptors).
    error_window : In(1)
        A descriptor was refused: stop after the current burst.
    desc : In(DescriptorSignature(p))
        The descriptor register.
    set_busy : In(2)
        Busy flags of the buffer sets.
    claim, claim_set : Out(1), Out(1)
        Pulse: mark ``claim_set`` busy.
    q_level : In(range(depth + 1)); q_push : In(1)
        Level of the query FIFO and a beat written into it this cycle.
    done : Out(1)
        Every burst of the run is requested.
    """

    def __init__(self, p: HwParams) -> None:
        self.p = require_params(p)
        self.q_depth = query_fifo_depth(p)
        super().__init__({
            "ar": Out(AddressSignature(p.addr_bits)),
            "tags": Out(stream.Signature(Tag)),
            "start": In(1), "value_base": In(REG_BITS), "desc_base": In(REG_BITS),
            "num_desc": In(REG_BITS), "error_window": In(1),
            "desc": In(DescriptorSignature(p)),
            "set_busy": In(2), "claim": Out(1), "claim_set": Out(SET_BITS),
            "q_level": In(range(self.q_depth + 1)), "q_push": In(1),
            "done": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        m.submodules.wa = self._wa = BurstWalker(p, "wa")
        m.submodules.qa = self._qa = BurstWalker(p, "qa")
        m.submodules.tag_fifo = self._tag_fifo = fifo.SyncFIFOBuffered(width=2,
                                                                       depth=TAG_DEPTH)
        m.submodules.qslice_fifo = self._qslice = fifo.SyncFIFOBuffered(
            width=p.addr_bits + COUNT_BITS, depth=QSLICE_DEPTH)
        self._wa_valid = Signal()
        self._wa_tag = Signal(Tag)
        self._grant_w = Signal()
        self._grant_q = Signal()
        self._qa_active = Signal()
        self._wa_done = Signal()
        self._arbiter(m)
        self._query_agent(m)
        self._window_agent(m)
        m.d.comb += [
            self.tags.valid.eq(self._tag_fifo.r_rdy), self.tags.payload.eq(self._tag_fifo.r_data),
            self._tag_fifo.r_en.eq(self.tags.ready),
            self.done.eq(self._wa_done & ~self._qa_active & ~self._qslice.r_rdy),
        ]
        return m

    def _arbiter(self, m: Module) -> None:
        """AR: a request not yet accepted keeps the channel (AXI: ARVALID and ARADDR stay
        stable until ARREADY); otherwise the window agent goes first."""
        p, ar, wa, qa = self.p, self.ar, self._wa, self._qa
        ar_pend = Signal()
        ar_pend_q = Signal()
        pick_q = Signal()
        ar_beats = Signal.like(wa.beats)
        ar_fire = Signal()
        qa_valid = Signal()
        # Room for the next query burst, registered: a grant moves the query walker, which
        # drops its ``ok`` for the following cycles, so a stale "room" is never used.
        qa_room = Signal()
        q_inflight = Signal(range(2 * self.q_depth + 1))
        m.d.sync += qa_room.eq(qa.ok & (self.q_level + q_inflight + qa.beats <= self.q_depth))
        m.d.sync += [ar_pend.eq(ar.valid & ~ar.ready), ar_pend_q.eq(self._grant_q)]
        m.d.comb += [
            qa_valid.eq(self._qa_active & qa.ok & qa_room),
            pick_q.eq(Mux(ar_pend, ar_pend_q, ~self._wa_valid)),
            self._grant_w.eq(~pick_q & self._wa_valid & self._tag_fifo.w_rdy),
            self._grant_q.eq(pick_q & qa_valid & self._tag_fifo.w_rdy),
            ar.valid.eq(self._grant_q | self._grant_w),
            ar_beats.eq(Mux(self._grant_q, qa.beats, wa.beats)),
            ar.addr.eq(Mux(self._grant_q, qa.addr, wa.addr)),
            ar.id.eq(0), ar.len.eq(ar_beats - 1), ar.size.eq(p.beat_shift),
            ar.burst.eq(BURST_INCR), ar.lock.eq(0), ar.cache.eq(0), ar.prot.eq(0),
            ar_fire.eq(ar.valid & ar.ready),
            self._tag_fifo.w_en.eq(ar_fire),
            self._tag_fifo.w_data.eq(Mux(self._grant_q, Tag.QUERY, self._wa_tag)),
        ]
        # Query beats requested but not yet in the FIFO.
        with m.If(ar_fire & self._grant_q):
            m.d.comb += qa.advance.eq(1)
            m.d.sync += q_inflight.eq(q_inflight + qa.beats - self.q_push)
        with m.Else():
            m.d.sync += q_inflight.eq(q_inflight - self.q_push)

    def _query_agent(self, m: Module) -> None:
        """Takes the next slice's query region when the last one is requested."""
        qa, qslice = self._qa, self._qslice
        ab = self.p.addr_bits
        with m.If(self._grant_q & self.ar.ready & qa.last):
            m.d.sync += self._qa_active.eq(0)
        m.d.comb += [qslice.r_en.eq(~self._qa_active),
                     qa.load_addr.eq(qslice.r_data[:ab]), qa.load_beats.eq(qslice.r_data[ab:])]
        with m.If(~self._qa_active & qslice.r_rdy):
            m.d.comb += qa.load.eq(1)
            m.d.sync += self._qa_active.eq(qslice.r_data[ab:] != 0)

    def _window_agent(self, m: Module) -> None:
        p = self.p
        self._wa_desc = Signal(COUNT_BITS)
        self._wa_desc_addr = Signal(p.addr_bits)
        self._wa_lvl = Signal(index_bits(p.num_levels))
        self._wa_row = Signal(DESC_FIELD_BITS)
        self._wa_row_addr = Signal(p.addr_bits)
        self._wa_row_beats = Signal(COUNT_BITS)
        self._lv_rows = Signal(DESC_FIELD_BITS)
        self._lv_pitch = Signal(p.addr_bits)
        # The window walker loads a descriptor region, or a row region in ROW.
        m.d.comb += [self._wa.load_addr.eq(self._wa_desc_addr),
                     self._wa.load_beats.eq(p.desc_beats)]
        with m.FSM(name="ar"):
            self._descriptor_states(m)
            self._level_states(m)
            self._row_states(m)

    def _descriptor_states(self, m: Module) -> None:
        """Read a descriptor, wait for its parse and a free buffer set."""
        p, wa = self.p, self._wa
        with m.State("IDLE"):
            with m.If(self.start):
                m.d.sync += [self._wa_desc.eq(0), self._wa_done.eq(0),
                             self._wa_desc_addr.eq(self.desc_base)]
                m.next = "NEXT_DESC"
        with m.State("NEXT_DESC"):
            with m.If((self._wa_desc == self.num_desc) | self.error_window):
                m.d.sync += self._wa_done.eq(1)
                m.next = "IDLE"
            with m.Else():
                m.d.comb += wa.load.eq(1)
                m.d.sync += [self._wa_tag.eq(Tag.DESC),
                             self._wa_desc_addr.eq(self._wa_desc_addr + p.desc_stride)]
                m.next = "BURST"
        with m.State("BURST"):
            m.d.comb += self._wa_valid.eq(wa.ok)
            with m.If(self._grant_w & self.ar.ready):
                m.d.comb += wa.advance.eq(1)
                with m.If(wa.last):
                    with m.If(self._wa_tag == Tag.DESC):
                        m.next = "WAIT_DESC"
                    with m.Else():
                        m.next = "NEXT_ROW"
        with m.State("WAIT_DESC"):
            nxt = self._wa_desc[0] if p.sets == 2 else C(0, SET_BITS)
            m.d.comb += self.claim_set.eq(nxt)
            with m.If(self.error_window):
                m.d.sync += self._wa_done.eq(1)
                m.next = "IDLE"
            with m.Elif(self.desc.parsed & ~self.set_busy.bit_select(nxt, 1)):
                m.d.comb += [self.desc.parse_ack.eq(1), self.claim.eq(1)]
                m.d.sync += [self.desc.load_set.eq(nxt), self._wa_lvl.eq(0), self._wa_row.eq(0)]
                m.next = "LEVEL"

    def _level_states(self, m: Module) -> None:
        """A level's first row address in four registered steps (the level's fields,
        their product, the sum, the byte address); the next rows add the row pitch."""
        p = self.p
        ab = p.addr_bits
        lvl = self._wa_lvl
        cur_win = Array(self.desc.win[k] for k in range(p.num_levels))[lvl]
        level_offset = Array(C(v, ab) for v in p.level_offset)
        level_w = Array(C(w, DESC_FIELD_BITS) for _, w in p.levels)
        row_pitch = Array(C(w * p.pixel_stride, ab) for _, w in p.levels)
        lv_row0 = Signal(DESC_FIELD_BITS)
        lv_col0 = Signal(DESC_FIELD_BITS)
        lv_w = Signal(DESC_FIELD_BITS)
        lv_base = Signal(ab)
        lv_prod = Signal(COUNT_BITS)
        pix = Signal(COUNT_BITS)
        with m.State("LEVEL"):
            m.d.sync += [lv_row0.eq(cur_win.row0.as_unsigned()),
                         lv_col0.eq(cur_win.col0.as_unsigned()),
                         lv_w.eq(level_w[lvl]),
                         self._lv_rows.eq(cur_win.rows.as_unsigned()),
                         self._lv_pitch.eq(row_pitch[lvl]),
                         lv_base.eq(self.value_base + level_offset[lvl]),
                         self._wa_row_beats.eq(cur_win.cols.as_unsigned()
                                               * (p.pixel_stride // p.bus_bytes))]
            m.next = "LEVEL_MUL"
        with m.State("LEVEL_MUL"):
            m.d.sync += lv_prod.eq(lv_row0 * lv_w)
            m.next = "LEVEL_ADD"
        with m.State("LEVEL_ADD"):
            m.d.sync += pix.eq(lv_prod + lv_col0)
            m.next = "LEVEL2"
        with m.State("LEVEL2"):
            m.d.sync += self._wa_row_addr.eq(lv_base + pix * p.pixel_stride)
            m.next = "ROW"

    def _row_states(self, m: Module) -> None:
        """Request the rows, then hand the slice's query region to the query agent."""
        wa = self._wa
        with m.State("ROW"):
            m.d.comb += [wa.load.eq(1), wa.load_addr.eq(self._wa_row_addr),
                         wa.load_beats.eq(self._wa_row_beats)]
            m.d.sync += self._wa_tag.eq(Tag.WINDOW)
            m.next = "BURST"
        with m.State("NEXT_ROW"):
            with m.If(self._wa_row + 1 == self._lv_rows):
                m.d.sync += self._wa_row.eq(0)
                with m.If(self._wa_lvl == self.p.num_levels - 1):
                    # The window is requested: its queries may follow.
                    m.next = "QUERIES"
                with m.Else():
                    m.d.sync += self._wa_lvl.eq(self._wa_lvl + 1)
                    m.next = "LEVEL"
            with m.Else():
                m.d.sync += [self._wa_row.eq(self._wa_row + 1),
                             self._wa_row_addr.eq(self._wa_row_addr + self._lv_pitch)]
                m.next = "ROW"
        with m.State("QUERIES"):
            m.d.comb += [self._qslice.w_en.eq(1),
                         self._qslice.w_data.eq(Cat(self.desc.query_addr, self.desc.query_beats))]
            with m.If(self._qslice.w_rdy):
                m.d.sync += self._wa_desc.eq(self._wa_desc + 1)
                m.next = "NEXT_DESC"
