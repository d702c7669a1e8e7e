"""Read data router: R beats into the descriptor register, the window banks, the query FIFO.

The beats arrive in the order of the :class:`~defslice.hw.reader.Tag` stream (one tag per
burst). Descriptor beats shift into the descriptor register, which is parsed (window
sizes checked against the buffers) and offered to the reader; window beats are split
into bank words and written at running bank addresses; query beats go to the query FIFO.
When a window is complete the slice is handed off.
"""

from __future__ import annotations

from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.axi import ReadDataSignature
from defslice.hw.banks import BANKS, SET_BITS, set_offset
from defslice.hw.params import HwParams, index_bits, require_params
from defslice.hw.reader import DescriptorSignature, Tag, query_fifo_depth
from defslice.hw.records import COUNT_BITS, DESC_FIELD_BITS, descriptor_layout, window_layout
from defslice.hw.regmap import REG_BITS

__all__ = ["Router", "slice_layout"]


def slice_layout(p: HwParams) -> data.StructLayout:
    """A loaded slice: buffer ``set``, query ``count``, windows ``win[l]``, the DRAM
    region of its outputs (``out_addr`` bytes, ``out_beats``), and the descriptor's
    ``desc_stride`` bytes as read (``desc``, first byte lowest; the layer engine's fields
    follow the sampling descriptor)."""
    return data.StructLayout({
        "set": SET_BITS, "count": COUNT_BITS,
        "win": data.ArrayLayout(window_layout(), p.num_levels),
        "out_addr": p.addr_bits, "out_beats": COUNT_BITS,
        "desc": p.desc_beats * p.bus_bits,
    })


class Router(wiring.Component):
    """Consumes the R channel in tag order.

    Members
    -------
    r : Out(ReadDataSignature(bus_bits))
        The AXI4 R channel (master side).
    tags : In(stream.Signature(Tag))
        What each burst carries (:class:`~defslice.hw.reader.Reader`).
    start : In(1)
        Pulse: clears the errors and the descriptor state.
    query_base, out_base : In(32)
        Registers (bytes).
    desc : Out(DescriptorSignature(p))
        The descriptor register (its query region: registered products of the header);
        ``desc.load_set`` is the buffer set of the window being loaded.
    wr_en : Out(4); wr_addr : Out(bank_addr_bits); wr_data : Out(word_bits)
        Bank writes (:class:`~defslice.hw.banks.WindowBanks`).
    queries : Out(stream.Signature(bus_bits))
        Query beats (point records), through the query FIFO.
    q_level : Out(range(depth + 1)); q_push : Out(1)
        Level of the query FIFO; a beat written into it this cycle.
    slice : Out(stream.Signature(slice_layout(p)))
        A loaded slice (window complete).
    error_window : Out(1)
        A descriptor's window size is outside ``[1, max]`` (STATUS bit 2; the run stops).
    error_resp : Out(1)
        An R beat had a response other than OKAY.
    done : Out(1)
        Idle: no burst outstanding, no descriptor waiting.
    """

    def __init__(self, p: HwParams) -> None:
        self.p = require_params(p)
        self.q_depth = query_fifo_depth(p)
        super().__init__({
            "r": Out(ReadDataSignature(p.bus_bits)),
            "tags": In(stream.Signature(Tag)),
            "start": In(1), "query_base": In(REG_BITS), "out_base": In(REG_BITS),
            "desc": Out(DescriptorSignature(p)),
            "wr_en": Out(BANKS), "wr_addr": Out(p.bank_addr_bits), "wr_data": Out(p.word_bits),
            "queries": Out(stream.Signature(p.bus_bits)),
            "q_level": Out(range(self.q_depth + 1)), "q_push": Out(1),
            "slice": Out(stream.Signature(slice_layout(p))),
            "error_window": Out(1), "error_resp": Out(1), "done": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        m.submodules.q_fifo = q_fifo = fifo.SyncFIFOBuffered(width=p.bus_bits,
                                                              depth=self.q_depth)
        L, aw = p.num_levels, p.bank_addr_bits
        self._rbeat = Signal()
        self._desc_sr = Signal(p.desc_beats * p.bus_bits)
        # Window write position: level, row, column, word of the pixel, word of the beat,
        # and the bank address's row and column parts.
        self._w_pos = [Signal(index_bits(L), name="w_lvl"), Signal(DESC_FIELD_BITS, name="w_row"),
                       Signal(DESC_FIELD_BITS, name="w_col"),
                       Signal(range(p.pixel_stride_words + 1), name="w_word"),
                       Signal(range(p.value_words_per_beat + 1), name="w_sub"),
                       Signal(aw + 1, name="w_rowbase"), Signal(aw + 1, name="w_colbase")]
        self._start = Signal(COUNT_BITS)
        self._count = Signal(COUNT_BITS)
        self._out_addr = Signal(p.addr_bits)
        self._out_beats = Signal(COUNT_BITS)
        self._query_stream(m, q_fifo)
        m.d.comb += [self._rbeat.eq(self.r.valid & self.r.ready),
                     self.tags.ready.eq(self._rbeat & self.r.last)]
        # Registered products of the parsed descriptor (used many cycles after the parse).
        m.d.sync += [self.desc.query_addr.eq(self.query_base + self._start * p.query_stride),
                     self.desc.query_beats.eq(self._count * p.query_beats),
                     self._out_addr.eq(self.out_base + self._start * p.out_stride),
                     self._out_beats.eq(self._count * (p.out_stride // p.bus_bytes))]
        m.d.sync += self.wr_en.eq(0)
        with m.If(self._rbeat & (self.r.resp != 0)):
            m.d.sync += self.error_resp.eq(1)
        r_cnt = Signal(range(p.desc_beats + 1))
        with m.FSM(name="rd") as rd_fsm:
            with m.State("RUN"):
                self._run_state(m, r_cnt)
            self._descriptor_states(m)
        with m.If(self.start):
            m.d.sync += [self.error_window.eq(0), self.error_resp.eq(0), r_cnt.eq(0),
                         self.desc.parsed.eq(0)]
        m.d.comb += self.done.eq(rd_fsm.ongoing("RUN") & ~self.tags.valid & ~self.desc.parsed)
        # The slice handed off: the descriptor register, valid in HANDOFF.
        pay = self.slice.payload
        m.d.comb += [pay.set.eq(self.desc.load_set), pay.count.eq(self._count),
                     pay.win.eq(self.desc.win), pay.out_addr.eq(self._out_addr),
                     pay.out_beats.eq(self._out_beats), pay.desc.eq(self._desc_sr)]
        return m

    def _query_stream(self, m: Module, q_fifo: fifo.SyncFIFOBuffered) -> None:
        """Query beats into the FIFO, its read side out as ``queries``."""
        self._q_valid = Signal()
        m.d.comb += [
            q_fifo.w_data.eq(self.r.data), q_fifo.w_en.eq(self._q_valid),
            self.q_push.eq(self._q_valid & q_fifo.w_rdy), self.q_level.eq(q_fifo.level),
            self.queries.valid.eq(q_fifo.r_rdy), self.queries.payload.eq(q_fifo.r_data),
            q_fifo.r_en.eq(self.queries.ready),
        ]
        self._q_rdy = q_fifo.w_rdy

    def _accept_queries(self, m: Module) -> None:
        """R beats of a query burst go to the FIFO while it has room."""
        is_query = self.tags.valid & (self.tags.payload == Tag.QUERY)
        m.d.comb += [self.r.ready.eq(is_query & self._q_rdy),
                     self._q_valid.eq(self.r.valid & is_query)]

    def _run_state(self, m: Module, r_cnt: Signal) -> None:
        p = self.p
        with m.Switch(self.tags.payload):
            with m.Case(Tag.DESC):
                m.d.comb += self.r.ready.eq(self.tags.valid)
                with m.If(self._rbeat):
                    m.d.sync += [self._desc_sr.eq(Cat(self._desc_sr[p.bus_bits:], self.r.data)),
                                 r_cnt.eq(r_cnt + 1)]
                    with m.If(r_cnt == p.desc_beats - 1):
                        m.d.sync += r_cnt.eq(0)
                        m.next = "PARSE"
            with m.Case(Tag.QUERY):
                self._accept_queries(m)
            with m.Default():
                self._window_beat(m)

    def _window_beat(self, m: Module) -> None:
        """A window beat: ``bus_bytes / (lanes * element_bytes)`` bank words, one per
        cycle, at running bank addresses (row and column parts kept as two sums)."""
        p = self.p
        L = p.num_levels
        k_v = p.value_words_per_beat
        eb_bits = 8 * p.element_bytes
        aw = p.bank_addr_bits
        w_lvl, w_row, w_col, w_word, w_sub, w_rowbase, w_colbase = self._w_pos
        wwin = Array(self.desc.win[k] for k in range(L))[w_lvl]
        level_base = Array(C(v, index_bits(p.bank_depth + 1) + 1) for v in p.level_base)
        bank_pitch = Array(C(c * p.pixel_words, aw + 1) for c in p.bank_cols)
        sub_data = self.r.data.word_select(w_sub, p.lanes * eb_bits) if k_v > 1 else self.r.data
        word = Cat(*(sub_data[k * eb_bits:k * eb_bits + p.value_bits] for k in range(p.lanes)))
        last_sub = w_sub == k_v - 1
        m.d.comb += self.r.ready.eq(self.tags.valid & last_sub)
        with m.If(self.r.valid & self.tags.valid):
            with m.If(w_word < p.pixel_words):
                m.d.sync += [self.wr_addr.eq(set_offset(p, self.desc.load_set) + w_rowbase
                                             + w_colbase + w_word),
                             self.wr_data.eq(word), self.wr_en.eq(1 << Cat(w_col[0], w_row[0]))]
            m.d.sync += [w_sub.eq(Mux(last_sub, 0, w_sub + 1)), w_word.eq(w_word + 1)]
            with m.If(w_word == p.pixel_stride_words - 1):
                m.d.sync += [w_word.eq(0), w_col.eq(w_col + 1)]
                with m.If(w_col[0]):
                    m.d.sync += w_colbase.eq(w_colbase + p.pixel_words)
                with m.If(w_col + 1 == wwin.cols.as_unsigned()):
                    m.d.sync += [w_col.eq(0), w_row.eq(w_row + 1), w_colbase.eq(0)]
                    with m.If(w_row[0]):
                        m.d.sync += w_rowbase.eq(w_rowbase + bank_pitch[w_lvl])
                    with m.If(w_row + 1 == wwin.rows.as_unsigned()):
                        m.d.sync += [w_row.eq(0), w_lvl.eq(w_lvl + 1),
                                     w_rowbase.eq(level_base[w_lvl + 1])]
                        with m.If(w_lvl == L - 1):
                            m.next = "HANDOFF"

    def _descriptor_states(self, m: Module) -> None:
        p = self.p
        with m.State("PARSE"):
            desc = data.View(descriptor_layout(p.num_levels),
                             self._desc_sr[:descriptor_layout(p.num_levels).size])
            ok = Const(1)
            for lvl, (max_rows, max_cols) in enumerate(p.win_max):
                win = desc.level[lvl]
                ok = ok & (win.rows >= 1) & (win.rows <= max_rows) & (win.cols >= 1) \
                    & (win.cols <= max_cols)
            m.d.sync += [self.desc.win.eq(desc.level), self._start.eq(desc.header.query_start),
                         self._count.eq(desc.header.query_count)]
            m.d.sync += [s.eq(0) for s in self._w_pos]
            with m.If(ok):
                m.d.sync += self.desc.parsed.eq(1)
                m.next = "WAIT_ACK"
            with m.Else():
                m.d.sync += self.error_window.eq(1)
                m.next = "RUN"
        with m.State("WAIT_ACK"):
            # Only the flag handshake: R beats of queries keep flowing meanwhile.
            self._accept_queries(m)
            with m.If(self.desc.parse_ack):
                m.d.sync += self.desc.parsed.eq(0)
                m.next = "RUN"
        with m.State("HANDOFF"):
            m.d.comb += self.slice.valid.eq(1)
            with m.If(self.slice.ready):
                m.next = "RUN"
