"""``defslice_top``: window loader, banked window buffers, sampling pipeline, output writer.

Ports are flat so cocotbext-axi finds them by prefix: ``clk``, ``rst`` (active-high,
synchronous), the AXI4 master ``m_axi_*``, the AXI4-Lite slave ``s_axil_*`` and ``irq``
(= STATUS.done). The architecture is described in ``docs/hw.md``.

Read side: an address generator walks the descriptors and issues, per descriptor, the
bursts of :meth:`defslice.model.layout.SlicedProgram.transfers` in order (descriptor,
window rows level by level, query records) without waiting for data between bursts; a
data router consumes the R beats in the same order (descriptor register, window buffers,
query FIFO). Compute takes a loaded slice, streams its point records through the
coordinate unit, expands each point into ``D / lanes`` bank reads (one bilinear sample of
``lanes`` channels per cycle), multiplies, accumulates and packs outputs into bus beats.
The writer issues one maximal burst sequence per slice.
"""

from __future__ import annotations

from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import (
    DESC_FIELD_BITS,
    WINDOW_FIELDS,
    Accumulator,
    CoordUnit,
    MacUnit,
    window_layout,
)
from defslice.hw.params import AXI_ID_BITS, HwParams, bank_chunk_depth, bank_chunk_depths
from defslice.hw.regs import COUNTERS, SETTINGS, ControlRegs, axil_members

__all__ = ["DefsliceTop", "axi_members", "burst_beats", "burst_beats_registered"]

PAGE = 4096
#: Beats of the W FIFO; compute issues only while this many minus ``W_CREDIT_SLACK`` are
#: free, so everything in flight behind the bank read always finds room.
W_FIFO_DEPTH = 32
W_CREDIT_SLACK = 11
#: The query FIFO holds at least one longest burst (query bursts wait for room).
Q_FIFO_MIN_DEPTH = 32
#: Read bursts in flight (AR accepted, last R beat not yet).
TAG_DEPTH = 16
#: Cycles after the last bank read of a slice before its buffer set is released (the
#: read data is captured one cycle after the address).
DRAIN_CYCLES = 2
COUNT_BITS = 32


def axi_members(p: HwParams, prefix: str = "m_axi") -> dict:
    """Flat AXI4 master ports (``{prefix}_awid`` ...), the directions of a master."""
    a, d, i = p.addr_bits, p.bus_bits, AXI_ID_BITS
    return {
        f"{prefix}_awid": Out(i), f"{prefix}_awaddr": Out(a), f"{prefix}_awlen": Out(8),
        f"{prefix}_awsize": Out(3), f"{prefix}_awburst": Out(2), f"{prefix}_awlock": Out(1),
        f"{prefix}_awcache": Out(4), f"{prefix}_awprot": Out(3), f"{prefix}_awvalid": Out(1),
        f"{prefix}_awready": In(1),
        f"{prefix}_wdata": Out(d), f"{prefix}_wstrb": Out(d // 8), f"{prefix}_wlast": Out(1),
        f"{prefix}_wvalid": Out(1), f"{prefix}_wready": In(1),
        f"{prefix}_bid": In(i), f"{prefix}_bresp": In(2), f"{prefix}_bvalid": In(1),
        f"{prefix}_bready": Out(1),
        f"{prefix}_arid": Out(i), f"{prefix}_araddr": Out(a), f"{prefix}_arlen": Out(8),
        f"{prefix}_arsize": Out(3), f"{prefix}_arburst": Out(2), f"{prefix}_arlock": Out(1),
        f"{prefix}_arcache": Out(4), f"{prefix}_arprot": Out(3), f"{prefix}_arvalid": Out(1),
        f"{prefix}_arready": In(1),
        f"{prefix}_rid": In(i), f"{prefix}_rdata": In(d), f"{prefix}_rresp": In(2),
        f"{prefix}_rlast": In(1), f"{prefix}_rvalid": In(1), f"{prefix}_rready": Out(1),
    }


def burst_beats(m: Module, p: HwParams, addr, remaining, name: str) -> Signal:
    """Beats of the next burst of a region: ``min(max_beats, remaining, to the next 4 KiB
    boundary)`` -- the hardware twin of :func:`defslice.model.layout.split_bursts`."""
    to_page = Signal(range(PAGE // p.bus_bytes + 1), name=f"{name}_to_page")
    beats = Signal(range(p.max_beats + 1), name=f"{name}_beats")
    m.d.comb += to_page.eq((PAGE - addr[:12]) >> p.beat_shift)
    with m.If((remaining <= to_page) & (remaining <= p.max_beats)):
        m.d.comb += beats.eq(remaining)
    with m.Elif(to_page <= p.max_beats):
        m.d.comb += beats.eq(to_page)
    with m.Else():
        m.d.comb += beats.eq(p.max_beats)
    return beats



def burst_beats_registered(m: Module, p: HwParams, addr, remaining, name: str):
    """:func:`burst_beats` one cycle late, off the critical path.

    Returns ``(beats, ok, touch)``. The caller drives ``touch`` high in every cycle in
    which it assigns ``addr`` or ``remaining``; ``beats`` is computed from last cycle's
    values and ``ok`` is high when they did not change since, i.e. ``beats`` is exact.
    """
    comb = burst_beats(m, p, addr, remaining, name)
    beats = Signal.like(comb, name=f"{name}_beats_q")
    touch = Signal(name=f"{name}_touch")
    fresh = Signal(name=f"{name}_fresh", init=1)
    m.d.sync += [beats.eq(comb), fresh.eq(touch)]
    return beats, ~fresh, touch


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


class DefsliceTop(wiring.Component):
    """The accelerator; see the module docstring and ``docs/hw.md``.

    Arguments
    ---------
    p : HwParams
        From :func:`defslice.hw.params.derive`.
    """

    def __init__(self, p: HwParams):
        self.p = p
        members = axi_members(p)
        members.update(axil_members())
        members["irq"] = Out(1)
        super().__init__(members)
        #: STATUS.busy and STATUS bits 2|3 (not ports; for board wrappers such as LEDs).
        self.busy_o = Signal()
        self.error_o = Signal()
        #: Observation points for the throughput bench (not ports): compute holds a slice
        #: (RUN or DRAIN), a bilinear sample is issued, compute waits for input.
        self.computing = Signal()
        self.sampling = Signal()
        self.stalling = Signal()

    # The elaboration is long but linear: read address generator, read data router,
    # compute, writer, control. Each part only talks to the others through the named
    # registers and FIFOs created at the top.
    def elaborate(self, platform):
        m = Module()
        p = self.p
        L = p.num_levels
        ab = p.addr_bits
        wl = window_layout()

        # ---------------------------------------------------------------- control
        m.submodules.regs = regs = ControlRegs()
        for name in axil_members():
            port = getattr(self, name)
            inner = getattr(regs, name)
            if name in ("s_axil_awready", "s_axil_wready", "s_axil_bresp", "s_axil_bvalid",
                        "s_axil_arready", "s_axil_rdata", "s_axil_rresp", "s_axil_rvalid"):
                m.d.comb += port.eq(inner)
            else:
                m.d.comb += inner.eq(port)
        run = Signal()          # a run is active
        done = Signal()
        err_win = Signal()
        err_resp = Signal()
        m.d.comb += [regs.busy.eq(run), regs.done.eq(done), regs.error_window.eq(err_win),
                     regs.error_resp.eq(err_resp), self.irq.eq(done),
                     self.busy_o.eq(run), self.error_o.eq(err_win | err_resp)]
        start = regs.start
        value_base, query_base = regs.value_base, regs.query_base
        desc_base, out_base, num_desc = regs.desc_base, regs.out_base, regs.num_desc
        counters = {name: Signal(32, name=name.lower()) for name in COUNTERS}
        for name in COUNTERS:
            m.d.comb += getattr(regs, name.lower()).eq(counters[name])
        assert set(SETTINGS) == {"VALUE_BASE", "QUERY_BASE", "DESC_BASE", "OUT_BASE",
                                 "NUM_DESC"}

        # ---------------------------------------------------------------- constants
        k_v = p.value_words_per_beat
        k_o = p.out_words_per_beat
        eb_bits = 8 * p.element_bytes
        oeb_bits = 8 * p.out_element_bytes
        lvl_bits = _bits(L)
        level_offset = Array(C(v, ab) for v in p.level_offset)
        level_w = Array(C(w, 16) for _, w in p.levels)
        level_base = Array(C(v, _bits(p.bank_depth + 1) + 1) for v in p.level_base)
        bank_cols = Array(C(v, 16) for v in p.bank_cols)
        max_rows = [r for r, _ in p.win_max]
        max_cols = [c for _, c in p.win_max]
        set_bits = 1
        mem_addr_bits = _bits(p.bank_depth)

        # ---------------------------------------------------------------- banks
        # Each bank is a column of chunks of at most one block RAM's depth at the word
        # width, so every chunk's read data is registered in the fabric right at the
        # block RAM, before the multiplexer that selects the chunk (see "bank read").
        chunk_depths = bank_chunk_depths(p.bank_depth, p.word_bits)
        n_chunks = len(chunk_depths)
        chunk_bits = _bits(bank_chunk_depth(p.word_bits))
        banks = []
        for b in range(4):
            chunks = []
            for c, depth in enumerate(chunk_depths):
                mem = Memory(shape=unsigned(p.word_bits), depth=depth, init=[])
                m.submodules[f"bank{b}_{c}"] = mem
                chunks.append((mem.write_port(), mem.read_port()))
            banks.append(chunks)

        # ---------------------------------------------------------------- shared state
        set_busy = Signal(2)          # buffer set holds a slice not yet computed
        ld_set = Signal(set_bits)     # set of the slice being loaded
        parsed = Signal()             # descriptor parsed, window info valid
        # Window info of the slice being loaded (router writes, AR generator reads).
        ld_win = [Signal(wl, name=f"ld_win{lvl}") for lvl in range(L)]
        ld_start = Signal(COUNT_BITS)
        ld_count = Signal(COUNT_BITS)
        # Handoff to compute.
        ho_valid = Signal()
        ho_win = [Signal(wl, name=f"ho_win{lvl}") for lvl in range(L)]
        ho_set = Signal(set_bits)
        ho_count = Signal(COUNT_BITS)
        m.submodules.region_fifo = region_fifo = fifo.SyncFIFOBuffered(
            width=ab + COUNT_BITS, depth=4)
        q_depth = max(Q_FIFO_MIN_DEPTH, p.max_beats)
        m.submodules.q_fifo = q_fifo = fifo.SyncFIFOBuffered(width=p.bus_bits,
                                                              depth=q_depth)
        m.submodules.w_fifo = w_fifo = fifo.SyncFIFOBuffered(width=p.bus_bits,
                                                              depth=W_FIFO_DEPTH)

        # ---------------------------------------------------------------- read addresses
        # Two agents share the AR channel. The window agent walks descriptors and window
        # rows and has priority; the query agent reads each slice's query records, one
        # burst at a time in the window agent's gaps (between rows, while it waits for a
        # free buffer set) and only when the query FIFO has room for the whole burst, so R
        # beats are always accepted and the next window streams in while this slice
        # computes. Every AR
        # pushes a tag (what the burst carries) for the R router: AXI returns reads of
        # one ID in order.
        TAG_DESC, TAG_WIN, TAG_QRY = 0, 1, 2
        m.submodules.tag_fifo = tag_fifo = fifo.SyncFIFOBuffered(width=2, depth=TAG_DEPTH)
        m.submodules.qslice_fifo = qslice_fifo = fifo.SyncFIFOBuffered(
            width=ab + COUNT_BITS, depth=4)
        wa_addr = Signal(ab)
        wa_rem = Signal(COUNT_BITS)
        wa_valid = Signal()
        wa_tag = Signal(2)
        wa_desc = Signal(COUNT_BITS)
        wa_desc_addr = Signal(ab)
        wa_pix = Signal(COUNT_BITS)
        wa_row_addr = Signal(ab)
        wa_row_beats = Signal(COUNT_BITS)
        row_pitch = Array(C(w * p.pixel_stride, ab) for _, w in p.levels)
        # The level being requested: its fields and constants, registered in LEVEL.
        lv_row0 = Signal(16)
        lv_col0 = Signal(16)
        lv_w = Signal(16)
        lv_rows = Signal(16)
        lv_pitch = Signal(ab)
        lv_base = Signal(ab)
        lv_prod = Signal(COUNT_BITS)
        # Query and output regions of the slice being loaded, registered products of the
        # parsed descriptor (used many cycles after the parse).
        ld_qaddr = Signal(ab)
        ld_qbeats = Signal(COUNT_BITS)
        ld_oaddr = Signal(ab)
        ld_obeats = Signal(COUNT_BITS)
        m.d.sync += [ld_qaddr.eq(query_base + ld_start * p.query_stride),
                     ld_qbeats.eq(ld_count * p.query_beats),
                     ld_oaddr.eq(out_base + ld_start * p.out_stride),
                     ld_obeats.eq(ld_count * (p.out_stride // p.bus_bytes))]
        wa_lvl = Signal(lvl_bits)
        wa_row = Signal(16)
        wa_done = Signal()
        qa_addr = Signal(ab)
        qa_rem = Signal(COUNT_BITS)
        qa_active = Signal()
        q_inflight = Signal(range(2 * q_depth + 1))
        wa_beats, wa_ok, wa_touch = burst_beats_registered(m, p, wa_addr, wa_rem, "wa")
        qa_beats, qa_ok, qa_touch = burst_beats_registered(m, p, qa_addr, qa_rem, "qa")
        # Room for the next query burst, registered: a grant changes qa_addr, which
        # drops qa_ok for the following cycles, so a stale "room" is never used.
        qa_room = Signal()
        m.d.sync += qa_room.eq(qa_ok & (q_fifo.level + q_inflight + qa_beats <= q_depth))
        qa_valid = Signal()
        m.d.comb += qa_valid.eq(qa_active & qa_ok & qa_room)
        grant_q = Signal()
        grant_w = Signal()
        ar_beats = Signal.like(wa_beats)
        ar_fire = Signal()
        # A request not yet accepted keeps the AR channel (AXI: ARVALID and ARADDR stay
        # stable until ARREADY); otherwise the window agent goes first.
        ar_pend = Signal()
        ar_pend_q = Signal()
        pick_q = Signal()
        m.d.sync += [ar_pend.eq(self.m_axi_arvalid & ~self.m_axi_arready),
                     ar_pend_q.eq(grant_q)]
        m.d.comb += [
            pick_q.eq(Mux(ar_pend, ar_pend_q, ~wa_valid)),
            grant_w.eq(~pick_q & wa_valid & tag_fifo.w_rdy),
            grant_q.eq(pick_q & qa_valid & tag_fifo.w_rdy),
            self.m_axi_arvalid.eq(grant_q | grant_w),
            ar_beats.eq(Mux(grant_q, qa_beats, wa_beats)),
            self.m_axi_araddr.eq(Mux(grant_q, qa_addr, wa_addr)),
            self.m_axi_arid.eq(0), self.m_axi_arlen.eq(ar_beats - 1),
            self.m_axi_arsize.eq(p.beat_shift), self.m_axi_arburst.eq(1),
            self.m_axi_arlock.eq(0), self.m_axi_arcache.eq(0), self.m_axi_arprot.eq(0),
            ar_fire.eq(self.m_axi_arvalid & self.m_axi_arready),
            tag_fifo.w_en.eq(ar_fire), tag_fifo.w_data.eq(Mux(grant_q, TAG_QRY, wa_tag)),
        ]
        q_beat = Signal()
        with m.If(ar_fire & grant_q):
            m.d.comb += qa_touch.eq(1)
            m.d.sync += [qa_addr.eq(qa_addr + (qa_beats << p.beat_shift)),
                         qa_rem.eq(qa_rem - qa_beats),
                         q_inflight.eq(q_inflight + qa_beats - q_beat)]
            with m.If(qa_rem == qa_beats):
                m.d.sync += qa_active.eq(0)
        with m.Else():
            m.d.sync += q_inflight.eq(q_inflight - q_beat)
        m.d.comb += qslice_fifo.r_en.eq(~qa_active)
        with m.If(~qa_active & qslice_fifo.r_rdy):
            beats_q = qslice_fifo.r_data[ab:]
            m.d.comb += qa_touch.eq(1)
            m.d.sync += [qa_addr.eq(qslice_fifo.r_data[:ab]), qa_rem.eq(beats_q),
                         qa_active.eq(beats_q != 0)]

        cur_win = Array(ld_win)[wa_lvl]
        parse_ack = Signal()
        with m.FSM(name="ar"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [wa_desc.eq(0), wa_done.eq(0), wa_desc_addr.eq(desc_base)]
                    m.next = "NEXT_DESC"
            with m.State("NEXT_DESC"):
                with m.If((wa_desc == num_desc) | err_win):
                    m.d.sync += wa_done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += wa_touch.eq(1)
                    m.d.sync += [wa_addr.eq(wa_desc_addr), wa_rem.eq(p.desc_beats),
                                 wa_tag.eq(TAG_DESC),
                                 wa_desc_addr.eq(wa_desc_addr + p.desc_stride)]
                    m.next = "BURST"
            with m.State("BURST"):
                m.d.comb += wa_valid.eq(wa_ok)
                with m.If(grant_w & self.m_axi_arready):
                    m.d.comb += wa_touch.eq(1)
                    m.d.sync += [wa_addr.eq(wa_addr + (wa_beats << p.beat_shift)),
                                 wa_rem.eq(wa_rem - wa_beats)]
                    with m.If(wa_rem == wa_beats):
                        with m.If(wa_tag == TAG_DESC):
                            m.next = "WAIT_DESC"
                        with m.Else():
                            m.next = "NEXT_ROW"
            with m.State("WAIT_DESC"):
                nxt = Signal(set_bits)
                m.d.comb += nxt.eq(wa_desc[0] if p.sets == 2 else 0)
                with m.If(err_win):
                    m.d.sync += wa_done.eq(1)
                    m.next = "IDLE"
                with m.Elif(parsed & ~set_busy.bit_select(nxt, 1)):
                    m.d.comb += parse_ack.eq(1)
                    m.d.sync += [ld_set.eq(nxt), set_busy.bit_select(nxt, 1).eq(1),
                                 wa_lvl.eq(0), wa_row.eq(0)]
                    m.next = "LEVEL"
            # A level's first row address takes four registered steps (the level's
            # fields, their product, the sum, the byte address); the next rows add a
            # constant row pitch.
            with m.State("LEVEL"):
                m.d.sync += [lv_row0.eq(cur_win.row0.as_unsigned()),
                             lv_col0.eq(cur_win.col0.as_unsigned()),
                             lv_w.eq(level_w[wa_lvl]),
                             lv_rows.eq(cur_win.rows.as_unsigned()),
                             lv_pitch.eq(row_pitch[wa_lvl]),
                             lv_base.eq(value_base + level_offset[wa_lvl]),
                             wa_row_beats.eq(cur_win.cols.as_unsigned()
                                             * (p.pixel_stride // p.bus_bytes))]
                m.next = "LEVEL_MUL"
            with m.State("LEVEL_MUL"):
                m.d.sync += lv_prod.eq(lv_row0 * lv_w)
                m.next = "LEVEL_ADD"
            with m.State("LEVEL_ADD"):
                m.d.sync += wa_pix.eq(lv_prod + lv_col0)
                m.next = "LEVEL2"
            with m.State("LEVEL2"):
                m.d.sync += wa_row_addr.eq(lv_base + wa_pix * p.pixel_stride)
                m.next = "ROW"
            with m.State("ROW"):
                m.d.comb += wa_touch.eq(1)
                m.d.sync += [wa_addr.eq(wa_row_addr), wa_rem.eq(wa_row_beats),
                             wa_tag.eq(TAG_WIN)]
                m.next = "BURST"
            with m.State("NEXT_ROW"):
                with m.If(wa_row + 1 == lv_rows):
                    m.d.sync += wa_row.eq(0)
                    with m.If(wa_lvl == L - 1):
                        # The window is requested: its queries may follow.
                        m.next = "QUERIES"
                    with m.Else():
                        m.d.sync += wa_lvl.eq(wa_lvl + 1)
                        m.next = "LEVEL"
                with m.Else():
                    m.d.sync += [wa_row.eq(wa_row + 1),
                                 wa_row_addr.eq(wa_row_addr + lv_pitch)]
                    m.next = "ROW"
            with m.State("QUERIES"):
                m.d.comb += [qslice_fifo.w_en.eq(1),
                             qslice_fifo.w_data.eq(Cat(ld_qaddr, ld_qbeats))]
                with m.If(qslice_fifo.w_rdy):
                    m.d.sync += wa_desc.eq(wa_desc + 1)
                    m.next = "NEXT_DESC"
        ar_done = Signal()
        m.d.comb += ar_done.eq(wa_done & ~qa_active & ~qslice_fifo.r_rdy)

        # ---------------------------------------------------------------- read data
        rbeat = Signal()
        m.d.comb += rbeat.eq(self.m_axi_rvalid & self.m_axi_rready)
        desc_sr = Signal(p.desc_beats * p.bus_bits)
        r_cnt = Signal(range(p.desc_beats + 1))
        # Window write position.
        w_lvl = Signal(lvl_bits)
        w_row = Signal(16)
        w_col = Signal(16)
        w_word = Signal(range(p.pixel_stride_words + 1))
        w_sub = Signal(range(k_v + 1))
        wwin = Array(ld_win)[w_lvl]
        wr_en = Signal(4)
        wr_addr = Signal(mem_addr_bits)
        wr_data = Signal(p.word_bits)
        for b in range(4):
            for c, (wp, _) in enumerate(banks[b]):
                hit = wr_en[b] if n_chunks == 1 else wr_en[b] & (wr_addr[chunk_bits:] == c)
                m.d.comb += [wp.en.eq(hit), wp.addr.eq(wr_addr), wp.data.eq(wr_data)]
        m.d.sync += wr_en.eq(0)
        chunk = p.lanes * eb_bits
        sub_data = self.m_axi_rdata.word_select(w_sub, chunk) if k_v > 1 else self.m_axi_rdata
        word = Cat(*(sub_data[k * eb_bits:k * eb_bits + p.value_bits]
                     for k in range(p.lanes)))
        set_off = Mux(ld_set, p.set_depth, 0) if p.sets == 2 else C(0, 1)
        # Bank address = set + level base + (row >> 1) * bank_cols * pixel_words
        # + (col >> 1) * pixel_words + word, kept as two running sums.
        w_rowbase = Signal(mem_addr_bits + 1)
        w_colbase = Signal(mem_addr_bits + 1)
        bank_pitch = Array(C(c * p.pixel_words, mem_addr_bits + 1) for c in p.bank_cols)
        w_addr = set_off + w_rowbase + w_colbase + w_word

        with m.If(rbeat & (self.m_axi_rresp != 0)):
            m.d.sync += err_resp.eq(1)
        tag = tag_fifo.r_data
        m.d.comb += [q_fifo.w_data.eq(self.m_axi_rdata),
                     tag_fifo.r_en.eq(rbeat & self.m_axi_rlast)]

        with m.FSM(name="rd") as rd_fsm:
            with m.State("RUN"):
                with m.Switch(tag):
                    with m.Case(TAG_DESC):
                        m.d.comb += self.m_axi_rready.eq(tag_fifo.r_rdy)
                        with m.If(rbeat):
                            m.d.sync += [
                                desc_sr.eq(Cat(desc_sr[p.bus_bits:], self.m_axi_rdata)),
                                r_cnt.eq(r_cnt + 1)]
                            with m.If(r_cnt == p.desc_beats - 1):
                                m.d.sync += r_cnt.eq(0)
                                m.next = "PARSE"
                    with m.Case(TAG_QRY):
                        m.d.comb += [self.m_axi_rready.eq(tag_fifo.r_rdy & q_fifo.w_rdy),
                                     q_fifo.w_en.eq(rbeat), q_beat.eq(rbeat)]
                    with m.Default():
                        last_sub = w_sub == k_v - 1
                        m.d.comb += self.m_axi_rready.eq(tag_fifo.r_rdy & last_sub)
                        with m.If(self.m_axi_rvalid & tag_fifo.r_rdy):
                            with m.If(w_word < p.pixel_words):
                                m.d.sync += [wr_addr.eq(w_addr), wr_data.eq(word),
                                             wr_en.eq(1 << Cat(w_col[0], w_row[0]))]
                            m.d.sync += w_sub.eq(Mux(last_sub, 0, w_sub + 1))
                            m.d.sync += w_word.eq(w_word + 1)
                            with m.If(w_word == p.pixel_stride_words - 1):
                                m.d.sync += [w_word.eq(0), w_col.eq(w_col + 1)]
                                with m.If(w_col[0]):
                                    m.d.sync += w_colbase.eq(w_colbase + p.pixel_words)
                                with m.If(w_col + 1 == wwin.cols.as_unsigned()):
                                    m.d.sync += [w_col.eq(0), w_row.eq(w_row + 1),
                                                 w_colbase.eq(0)]
                                    with m.If(w_row[0]):
                                        m.d.sync += w_rowbase.eq(w_rowbase
                                                                 + bank_pitch[w_lvl])
                                    with m.If(w_row + 1 == wwin.rows.as_unsigned()):
                                        m.d.sync += [w_row.eq(0), w_lvl.eq(w_lvl + 1),
                                                     w_rowbase.eq(level_base[w_lvl + 1])]
                                        with m.If(w_lvl == L - 1):
                                            m.next = "HANDOFF"
            with m.State("PARSE"):
                ok = Const(1)
                for lvl in range(L):
                    base = 128 + 128 * lvl
                    rows = desc_sr[base + 32:base + 48].as_signed()
                    cols = desc_sr[base + 48:base + 64].as_signed()
                    ok = ok & (rows >= 1) & (rows <= max_rows[lvl]) & (cols >= 1) \
                        & (cols <= max_cols[lvl])
                    m.d.sync += ld_win[lvl].eq(desc_sr[base:base + 128])
                m.d.sync += [ld_start.eq(desc_sr[0:32]), ld_count.eq(desc_sr[32:64]),
                             w_lvl.eq(0), w_row.eq(0), w_col.eq(0), w_word.eq(0),
                             w_sub.eq(0), w_rowbase.eq(0), w_colbase.eq(0)]
                with m.If(ok):
                    m.d.sync += parsed.eq(1)
                    m.next = "WAIT_ACK"
                with m.Else():
                    m.d.sync += err_win.eq(1)
                    m.next = "RUN"
            with m.State("WAIT_ACK"):
                # Only the flag handshake: R beats of queries keep flowing meanwhile.
                m.d.comb += [self.m_axi_rready.eq((tag == TAG_QRY) & tag_fifo.r_rdy
                                                  & q_fifo.w_rdy),
                             q_fifo.w_en.eq(rbeat), q_beat.eq(rbeat)]
                with m.If(parse_ack):
                    m.d.sync += parsed.eq(0)
                    m.next = "RUN"
            with m.State("HANDOFF"):
                with m.If(~ho_valid & region_fifo.w_rdy):
                    m.d.sync += [ho_valid.eq(1), ho_set.eq(ld_set), ho_count.eq(ld_count)]
                    m.d.sync += [ho_win[lvl].eq(ld_win[lvl]) for lvl in range(L)]
                    m.d.comb += [
                        region_fifo.w_en.eq(1),
                        region_fifo.w_data.eq(Cat(ld_oaddr, ld_obeats)),
                    ]
                    m.next = "RUN"
        with m.If(start):
            m.d.sync += [err_win.eq(0), err_resp.eq(0), r_cnt.eq(0), parsed.eq(0)]
        r_done = Signal()
        m.d.comb += r_done.eq(rd_fsm.ongoing("RUN") & ~tag_fifo.r_rdy & ~parsed)

        # ---------------------------------------------------------------- compute
        tag_layout = data.StructLayout({
            "level": unsigned(lvl_bits), "head": unsigned(_bits(p.heads)),
            "first": 1, "last": 1, "qend": 1, "attn": signed(16),
        })
        m.submodules.coord = coord = CoordUnit(p, tag_layout)
        mac_tag = data.StructLayout({"first": 1, "last": 1, "qend": 1})
        m.submodules.mac = mac = MacUnit(p, mac_tag)
        m.submodules.acc = acc = Accumulator(p, mac.term_bits)

        c_win = [Signal(wl, name=f"c_win{lvl}") for lvl in range(L)]
        c_set = Signal(set_bits)
        c_count = Signal(COUNT_BITS)
        c_q = Signal(COUNT_BITS)
        c_m = Signal(range(max(2, p.heads)))
        c_l = Signal(lvl_bits)
        c_p = Signal(range(max(2, p.points)))
        c_kk = Signal(range(max(2, p.records_per_beat)))
        c_drain = Signal(range(DRAIN_CYCLES + 1))
        slices_done = Signal(COUNT_BITS)
        rec = q_fifo.r_data.word_select(c_kk, 64) if p.records_per_beat > 1 else q_fifo.r_data
        feeding = Signal()
        rec_last_in_q = (c_m == p.heads - 1) & (c_l == L - 1) & (c_p == p.points - 1)
        pay = coord.i.payload
        m.d.comb += [
            pay.x.eq(rec[0:24].as_signed()), pay.y.eq(rec[24:48].as_signed()),
            pay.tag.attn.eq(rec[48:64].as_signed()),
            pay.win.eq(Array(c_win)[c_l]), pay.bank_cols.eq(bank_cols[c_l]),
            pay.tag.level.eq(c_l), pay.tag.head.eq(c_m),
            pay.tag.first.eq((c_l == 0) & (c_p == 0)),
            pay.tag.last.eq((c_l == L - 1) & (c_p == p.points - 1)),
            pay.tag.qend.eq(rec_last_in_q),
            coord.i.valid.eq(feeding & q_fifo.r_rdy),
        ]
        take = Signal()
        m.d.comb += take.eq(coord.i.valid & coord.i.ready)
        with m.If(take):
            with m.If((c_kk == p.records_per_beat - 1) | rec_last_in_q):
                m.d.comb += q_fifo.r_en.eq(1)
                m.d.sync += c_kk.eq(0)
            with m.Else():
                m.d.sync += c_kk.eq(c_kk + 1)
            m.d.sync += c_p.eq(c_p + 1)
            with m.If(c_p == p.points - 1):
                m.d.sync += [c_p.eq(0), c_l.eq(c_l + 1)]
                with m.If(c_l == L - 1):
                    m.d.sync += [c_l.eq(0), c_m.eq(c_m + 1)]
                    with m.If(c_m == p.heads - 1):
                        m.d.sync += [c_m.eq(0), c_q.eq(c_q + 1)]

        # Expander: one bank read of `lanes` channels per cycle, D / lanes per point.
        e_valid = Signal()
        e_g = Signal(range(max(2, p.head_words)))
        e_base = [Signal(mem_addr_bits, name=f"e_base{b}") for b in range(4)]
        e_weight = Signal.like(coord.o.payload.weight)
        e_tag = Signal(tag_layout)
        credit = Signal()
        issue = Signal()
        last_g = Signal()
        m.d.comb += [
            issue.eq(e_valid & credit), last_g.eq(e_g == p.head_words - 1),
            coord.o.ready.eq(~e_valid | (issue & last_g)),
        ]
        # Registered: the level it saw may be one push old, which the slack covers.
        m.d.sync += credit.eq(w_fifo.level < W_FIFO_DEPTH - W_CREDIT_SLACK)
        c_off = Mux(c_set, p.set_depth, 0) if p.sets == 2 else C(0, 1)
        with m.If(coord.o.valid & coord.o.ready):
            ot = coord.o.payload.tag
            m.d.sync += [e_valid.eq(1), e_g.eq(0), e_weight.eq(coord.o.payload.weight),
                         e_tag.eq(ot)]
            for b in range(4):
                m.d.sync += e_base[b].eq(c_off + level_base[ot.level]
                                         + coord.o.payload.pixel[b] * p.pixel_words
                                         + ot.head * p.head_words)
        with m.Elif(issue & last_g):
            m.d.sync += e_valid.eq(0)
        with m.If(issue):
            m.d.sync += e_g.eq(Mux(last_g, 0, e_g + 1))
        # Bank read: the chunks' block RAMs return the word one cycle after the address
        # (R1), each chunk's word is registered next to its RAM (R2), and the chunk
        # multiplexer feeds the MAC's input register. The side information follows.
        values = []
        for b in range(4):
            rd_addr = Signal(mem_addr_bits, name=f"rd_addr{b}")
            m.d.comb += rd_addr.eq(e_base[b] + e_g)
            words = []
            for c, (_, rp) in enumerate(banks[b]):
                m.d.comb += rp.addr.eq(rd_addr)
                q = Signal(p.word_bits, name=f"rd_word{b}_{c}")
                m.d.sync += q.eq(rp.data)
                words.append(q)
            if n_chunks == 1:
                values.append(words[0])
            else:
                sel1 = Signal(mem_addr_bits - chunk_bits, name=f"rd_sel{b}")
                sel2 = Signal.like(sel1, name=f"rd_sel{b}_q")
                m.d.sync += [sel1.eq(rd_addr[chunk_bits:]), sel2.eq(sel1)]
                values.append(Array(words)[sel2])
        r_valid = Signal()
        r_weight = Signal.like(e_weight)
        r_tag = Signal(tag_layout)
        r_qend = Signal()
        m.d.sync += [r_valid.eq(issue), r_weight.eq(e_weight), r_tag.eq(e_tag),
                     r_qend.eq(e_tag.qend & last_g)]
        r2_valid = Signal()
        r2_weight = Signal.like(e_weight)
        r2_tag = Signal(tag_layout)
        r2_qend = Signal()
        m.d.sync += [r2_valid.eq(r_valid), r2_weight.eq(r_weight), r2_tag.eq(r_tag),
                     r2_qend.eq(r_qend)]
        mp = mac.i.payload
        m.d.comb += [mac.i.valid.eq(r2_valid), mp.weight.eq(r2_weight),
                     mp.attn.eq(r2_tag.attn), mp.tag.first.eq(r2_tag.first),
                     mp.tag.last.eq(r2_tag.last), mp.tag.qend.eq(r2_qend)]
        for b in range(4):
            m.d.comb += mp.value[b].eq(values[b])
        m.d.comb += [acc.i_valid.eq(mac.o.valid), acc.i_term.eq(mac.o.payload.term),
                     acc.i_first.eq(mac.o.payload.tag.first),
                     acc.i_last.eq(mac.o.payload.tag.last),
                     acc.i_qend.eq(mac.o.payload.tag.qend)]
        a_qend = acc.o_qend

        # Output packer: k_o words per beat, a query's last beat zero padded.
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
            with m.If((pk_j == k_o - 1) | a_qend):
                m.d.comb += [w_fifo.w_en.eq(1), w_fifo.w_data.eq(beat_next)]
                m.d.sync += [pk_j.eq(0), pk_beat.eq(0)]
            with m.Else():
                m.d.sync += [pk_j.eq(pk_j + 1), pk_beat.eq(beat_next)]

        with m.FSM(name="compute") as c_fsm:
            with m.State("IDLE"):
                with m.If(ho_valid):
                    m.d.sync += [ho_valid.eq(0), c_set.eq(ho_set), c_count.eq(ho_count),
                                 c_q.eq(0), c_m.eq(0), c_l.eq(0), c_p.eq(0), c_kk.eq(0)]
                    m.d.sync += [c_win[lvl].eq(ho_win[lvl]) for lvl in range(L)]
                    with m.If(ho_count == 0):
                        m.d.sync += c_drain.eq(0)
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += feeding.eq(1)
                with m.If(take & rec_last_in_q & (c_q == c_count - 1)):
                    m.d.sync += c_drain.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                pipe_busy = coord.busy | e_valid
                with m.If(~pipe_busy):
                    m.d.sync += c_drain.eq(c_drain + 1)
                    with m.If(c_drain == DRAIN_CYCLES - 1):
                        m.d.sync += slices_done.eq(slices_done + 1)
                        m.next = "IDLE"
        # Freeing a set: a separate statement so it can coincide with the AR generator
        # claiming the other one.
        with m.If(c_fsm.ongoing("DRAIN") & ~(coord.busy | e_valid)
                  & (c_drain == DRAIN_CYCLES - 1)):
            m.d.sync += set_busy.bit_select(c_set, 1).eq(0)

        # ---------------------------------------------------------------- writer
        aw_addr = Signal(ab)
        aw_rem = Signal(COUNT_BITS)
        aw_left = Signal(9)
        aw_count = Signal(COUNT_BITS)
        b_count = Signal(COUNT_BITS)
        aw_beats, aw_ok, aw_touch = burst_beats_registered(m, p, aw_addr, aw_rem, "aw")
        m.d.comb += [
            self.m_axi_awid.eq(0), self.m_axi_awaddr.eq(aw_addr),
            self.m_axi_awlen.eq(aw_beats - 1), self.m_axi_awsize.eq(p.beat_shift),
            self.m_axi_awburst.eq(1), self.m_axi_awlock.eq(0), self.m_axi_awcache.eq(0),
            self.m_axi_awprot.eq(0),
            self.m_axi_wdata.eq(w_fifo.r_data), self.m_axi_wstrb.eq(-1),
            self.m_axi_wlast.eq(aw_left == 1), self.m_axi_bready.eq(1),
        ]
        with m.If(self.m_axi_bvalid):
            m.d.sync += b_count.eq(b_count + 1)
            with m.If(self.m_axi_bresp != 0):
                m.d.sync += err_resp.eq(1)
        with m.FSM(name="wr") as w_fsm:
            with m.State("IDLE"):
                m.d.comb += region_fifo.r_en.eq(1)
                with m.If(region_fifo.r_rdy):
                    m.d.comb += aw_touch.eq(1)
                    m.d.sync += [aw_addr.eq(region_fifo.r_data[:ab]),
                                 aw_rem.eq(region_fifo.r_data[ab:])]
                    with m.If(region_fifo.r_data[ab:] != 0):
                        m.next = "AW"
            with m.State("AW"):
                m.d.comb += self.m_axi_awvalid.eq(aw_ok)
                with m.If(self.m_axi_awvalid & self.m_axi_awready):
                    m.d.comb += aw_touch.eq(1)
                    m.d.sync += [aw_left.eq(aw_beats), aw_count.eq(aw_count + 1),
                                 aw_addr.eq(aw_addr + (aw_beats << p.beat_shift)),
                                 aw_rem.eq(aw_rem - aw_beats)]
                    m.next = "W"
            with m.State("W"):
                m.d.comb += [self.m_axi_wvalid.eq(w_fifo.r_rdy),
                             w_fifo.r_en.eq(self.m_axi_wready)]
                with m.If(self.m_axi_wvalid & self.m_axi_wready):
                    m.d.sync += aw_left.eq(aw_left - 1)
                    with m.If(aw_left == 1):
                        with m.If(aw_rem == 0):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "AW"

        # ---------------------------------------------------------------- run control
        finished = Signal()
        m.d.comb += finished.eq(
            ar_done & r_done & c_fsm.ongoing("IDLE") & ~ho_valid & ~region_fifo.r_rdy
            & w_fsm.ongoing("IDLE") & ~w_fifo.r_rdy & (aw_count == b_count)
            & ((slices_done == num_desc) | err_win))
        with m.If(start):
            m.d.sync += [run.eq(1), done.eq(0), slices_done.eq(0), aw_count.eq(0),
                         b_count.eq(0), set_busy.eq(0)]
            m.d.sync += [c.eq(0) for c in counters.values()]
        with m.Elif(run & finished):
            m.d.sync += [run.eq(0), done.eq(1)]

        # ---------------------------------------------------------------- counters
        stall = Signal()
        m.d.comb += stall.eq(~issue & ~e_valid & (
            (c_fsm.ongoing("IDLE") & ~ho_valid & (slices_done != num_desc) & ~err_win)
            | (c_fsm.ongoing("RUN") & ~q_fifo.r_rdy & coord.i.ready)))
        m.d.comb += [self.computing.eq(c_fsm.ongoing("RUN") | c_fsm.ongoing("DRAIN")),
                     self.sampling.eq(issue), self.stalling.eq(run & stall)]
        # Events are registered before counting (off the handshake paths); the last
        # event of a run precedes done by more than a cycle, so none is lost.
        events = {
            "BUSY_CYCLES": issue, "STALL_CYCLES": stall, "READ_BEATS": rbeat,
            "WRITE_BEATS": self.m_axi_wvalid & self.m_axi_wready,
            "READ_BURSTS": self.m_axi_arvalid & self.m_axi_arready,
            "WRITE_BURSTS": self.m_axi_awvalid & self.m_axi_awready,
        }
        with m.If(run & ~start):
            m.d.sync += counters["CYCLES"].eq(counters["CYCLES"] + 1)
        for name, event in events.items():
            ev_q = Signal(name=f"ev_{name.lower()}")
            m.d.sync += ev_q.eq(event & run & ~start)
            with m.If(~start):
                m.d.sync += counters[name].eq(counters[name] + ev_q)
        assert DESC_FIELD_BITS * len(WINDOW_FIELDS) == 128
        return m
