"""Layer core: the per-slice computation on a loaded window, from parameters to ``y``."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import CoordUnit, round_half_up, saturate_to
from defslice.hw.layer.bias_lookup import BiasLookup
from defslice.hw.layer.buffers import BankedBuffer
from defslice.hw.layer.fetch import OperandFetch, context_layout, tag_layout
from defslice.hw.layer.layernorm import LayerNormUnit
from defslice.hw.layer.mac_array import MacArray
from defslice.hw.layer.offset_unit import OffsetUnit
from defslice.hw.layer.param_memories import ParamMemories
from defslice.hw.layer.plan import OPERAND_BUFFERS, LayerPlan
from defslice.hw.layer.requantizer import Requantizer
from defslice.hw.layer.row_table import RowTable
from defslice.hw.layer.sequencer import INDEX_BITS, PHASE_CODE, Sequencer
from defslice.hw.layer.softmax import Softmax
from defslice.hw.params import HwParams
from defslice.model.layer_layout import ARRAY_ROWS

__all__ = ["FORMATS", "Y_IN_FLIGHT", "LayerCore", "requant_formats"]

ROWS = ARRAY_ROWS
P = PHASE_CODE
#: Requantizer formats, by name, in order (``docs/numerics.md`` steps 1, 2, 5a, 7, 8,
#: 9a, 11, 12).
FORMATS = ("q", "h", "off", "sample", "k", "v", "qk", "o", "y")
#: ``y`` beats the writer keeps between its y-buffer reads and its output queue.
Y_IN_FLIGHT = 3


def requant_formats(plan: LayerPlan, value_frac: int, value_bits: int, coord_frac: int,
                    coord_bits: int, out_frac: int, out_bits: int,
                    tanh_mode: bool) -> list[tuple[int, int]]:
    """``(shift, bits)`` of each of :data:`FORMATS`. The content logit ``qk`` is rounded
    but not saturated: its width holds every rounded sum."""
    ln = plan.ln
    a, acc = ln.act_bits, ln.acc_bits
    qk_shift = ln.q_frac + ln.k_frac - ln.logit_frac
    off = (ln.n_frac + ln.offset_proj_frac - ln.t_frac, a) if tanh_mode else \
        (ln.n_frac + ln.offset_proj_frac - coord_frac, coord_bits)
    return [(value_frac + ln.proj_q_frac - ln.q_frac, a),
            (ln.q_frac + ln.offset_conv_frac - ln.h_frac, a), off,
            (2 * coord_frac, value_bits),
            (value_frac + ln.proj_k_frac - ln.k_frac, a),
            (value_frac + ln.proj_v_frac - ln.v_frac, a),
            (qk_shift, acc - qk_shift + 1),
            (ln.prob_frac + ln.v_frac - ln.o_frac, a),
            (ln.o_frac + ln.proj_out_frac - out_frac, out_bits)]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


class LayerCore(wiring.Component):
    """Everything of the layer engine between the window banks and the ``y`` writes.

    Members
    -------
    params : In(stream.Signature(bus_bits)); params_start : In(1); params_done : Out(1)
        The parameter region's beats (:class:`ParamMemories`).
    slice : In(stream.Signature(context_layout()))
        A slice whose window is in buffer set ``set``; taken when the core is free.
    release : Out(1); release_set : Out(1)
        The window of ``release_set`` is read no more.
    x_addr : Out; x_data : In
        The window banks' read port (:data:`X_LATENCY`).
    y : Out(stream.Signature(...))
        ``y`` beats in write order: ``row``, ``col``, ``beat`` of the pixel, ``data``.
    idle : Out(1)
        No slice in flight and every ``y`` beat out.
    busy_array : Out(1)
        An array step issued this cycle (the ARRAY_BUSY counter).
    """

    def __init__(self, plan: LayerPlan, hwp: HwParams, numerics: object) -> None:
        self.plan, self.hwp, self.num = plan, hwp, numerics
        d, L, N = plan.dims, plan.lanes, plan.cols
        lay = plan.layout
        self.tanh = d.spec.offset_range_factor >= 0
        self.formats = requant_formats(plan, numerics.value_frac, numerics.value_bits,
                                       numerics.coord_frac, numerics.coord_bits,
                                       numerics.out_frac, numerics.out_bits, self.tanh)
        self.pb = lay.out_stride // lay.bus_bytes            # beats per pixel of y
        self.qcols = -(-plan.region_max[1] // 2)
        super().__init__({
            "params": In(stream.Signature(8 * lay.bus_bytes)), "params_start": In(1),
            "params_done": Out(1),
            "slice": In(stream.Signature(context_layout())),
            "release": Out(1), "release_set": Out(1),
            "x_addr": Out(data.ArrayLayout(unsigned(max(1, (hwp.bank_depth - 1)
                                                        .bit_length())), ROWS)),
            "x_data": In(data.ArrayLayout(unsigned(16 * L), ROWS)),
            "y": Out(stream.Signature(data.StructLayout({
                "row": unsigned(INDEX_BITS), "col": unsigned(INDEX_BITS),
                "beat": range(self.pb), "data": unsigned(8 * lay.bus_bytes)}))),
            "idle": Out(1), "busy_array": Out(1),
        })
        del N

    # -- structure ---------------------------------------------------------------------------
    def _corner_layout(self) -> data.StructLayout:
        f = self.num.coord_frac
        pix = max(1, (self.hwp.bank_rows[0] * self.hwp.bank_cols[0] - 1).bit_length())
        return data.StructLayout({"pixel": data.ArrayLayout(unsigned(pix), ROWS),
                                  "weight": data.ArrayLayout(unsigned(2 * f + 1), ROWS)})

    def _buffers(self, m: Module) -> dict:
        p = self.plan
        d, L, N = p.dims, p.lanes, p.cols
        c, cg, kmax = d.channels, d.group_channels, p.max_keys
        kt, kc = -(-kmax // N), -(-kmax // L)
        lay = p.layout
        qk_bits = self.formats[FORMATS.index("qk")][1]
        specs = {
            "q": (ROWS, p.bank_pixels * (c // L), L, 16, True),
            "keys": (ROWS, -(-kmax // ROWS) * (c // L), L, 16, True),
            "k": (ROWS, -(-kmax // ROWS) * (c // L), L, 16, True),
            "v": (L, kc * (c // N), N, 16, True),
            "logits": (ROWS, 2 * d.heads * kt, N, qk_bits, True),
            "p": (ROWS, 2 * d.heads * kc, L, 16, False),
            "o": (ROWS, 2 * (c // L), L, 16, True),
            "g": (1, 2 * (cg // L), L, 16, True),
            "y": (ROWS, 2 * self.qcols * self.pb, lay.bus_bytes // 2, 16, True),
        }
        bufs = {}
        block = p.operand_ram == "block"
        for name, (banks, depth, lanes, bits, sgn) in specs.items():
            style = "block" if block and name in OPERAND_BUFFERS else None
            bufs[name] = BankedBuffer(banks, depth, lanes, bits, sgn, ram_style=style)
            m.submodules[f"buf_{name}"] = bufs[name]
        return bufs

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.plan
        L, N = p.lanes, p.cols
        ln = p.ln
        tag_bits = tag_layout().size
        m.submodules.pm = pm = ParamMemories(p)
        m.submodules.seq = seq = Sequencer(p)
        m.submodules.array = arr = MacArray(L, N, a_bits=17, b_bits=18, acc_bits=ln.acc_bits,
                                            tag_bits=tag_bits)
        m.submodules.fetch = fe = OperandFetch(p, arr.in_layout, self._corner_layout(),
                                               self.hwp.bank_cols[0], self.hwp.set_depth)
        m.submodules.req = rq = Requantizer(arr.acc_size, ln.acc_bits, self.formats,
                                            tag_bits=tag_bits)
        bufs = self._buffers(m)
        #: The buffers and the sequencer of the last elaboration (simulation tests and
        #: traces inspect them).
        self.buffers, self.sequencer = bufs, seq
        m.d.comb += [pm.beat.valid.eq(self.params.valid), pm.beat.payload.eq(self.params.payload),
                     self.params.ready.eq(pm.beat.ready), pm.start.eq(self.params_start),
                     self.params_done.eq(pm.done)]
        ctx = Signal(context_layout())
        st = {"drained": Signal(), "ln_rows": Signal(INDEX_BITS), "positions": Signal(INDEX_BITS),
              "sm_quads": Signal(INDEX_BITS), "o_quads": Signal(INDEX_BITS),
              "logit_quads": Signal(INDEX_BITS), "y_room": Signal(), "slice_start": Signal(),
              # The context's odometer bounds minus one, registered with ``ctx``: compared
              # every cycle, they would otherwise put a subtractor's carry chain in front of
              # each counter.
              **{f"last_{n}": Signal(INDEX_BITS, name=f"last_{n}")
                 for n in ("key", "key_col", "key_row", "qcol", "key_word")}}
        tables = self._control(m, seq, ctx, st)
        self._fetch_wiring(m, fe, seq, pm, bufs, ctx, tables)
        wiring.connect(m, fe.o, arr.i)
        self._requant(m, arr, rq, pm)
        self._route(m, rq, pm, bufs, ctx, st)
        self._units(m, rq, pm, bufs, ctx, st, tables)
        self._softmax(m, bufs, ctx, st, tables, pm)
        self._writer(m, seq, bufs, ctx, st, pm)
        pend = Signal(INDEX_BITS)
        issued = seq.step.valid & seq.step.payload.last
        m.d.sync += pend.eq(pend + issued - rq.o.valid)
        m.d.comb += [st["drained"].eq((pend == 0) & ~issued), self.busy_array.eq(seq.step.valid)]
        for name in ("drained", "ln_rows", "positions", "sm_quads", "o_quads", "y_room"):
            m.d.comb += getattr(seq, name).eq(st[name])
        return m

    # -- slice control and tables ----------------------------------------------------------
    def _writer_job(self) -> data.StructLayout:
        return data.StructLayout({"bias": 1, "set": 1, "row": unsigned(INDEX_BITS),
                                  "rows": 2 + INDEX_BITS, "col": unsigned(INDEX_BITS),
                                  "cols": unsigned(INDEX_BITS)})

    def _control(self, m: Module, seq: Sequencer, ctx: Signal, st: dict) -> dict:
        p = self.plan
        d = p.dims
        G = d.groups
        rows_max = p.max_keys * G
        quads_max = -(-p.region_max[0] // 2) * self.qcols
        quadt = memory.Memory(shape=data.ArrayLayout(signed(INDEX_BITS), 2), depth=quads_max,
                              init=[])
        corner = memory.Memory(shape=self._corner_layout(), depth=rows_max, init=[])
        m.submodules.quad_table, m.submodules.corners = quadt, corner
        qw = quadt.write_port()
        job = self._writer_job()
        m.submodules.wq = wq = fifo.SyncFIFOBuffered(width=job.size, depth=4)
        st["wq"] = wq
        nxt = Signal(context_layout())
        m.d.comb += nxt.eq(self.slice.payload)
        ki, kj, g = (Signal(INDEX_BITS, name=n) for n in ("fill_ki", "fill_kj", "fill_g"))
        qr, qc = Signal(INDEX_BITS, name="fill_qr"), Signal(INDEX_BITS, name="fill_qc")
        nrow, nquad = Signal(INDEX_BITS, name="fill_row"), Signal(INDEX_BITS, name="fill_quad")
        # The fill's bounds, registered with ``ctx`` (a multiplier would otherwise feed the
        # fill counters' compares every cycle).
        rows = Signal(INDEX_BITS)
        quads = Signal(INDEX_BITS)
        sizes = [rows.eq(nxt.num_keys * G),
                 quads.eq(((nxt.reg_rows + 1) >> 1) * ((nxt.reg_cols + 1) >> 1)),
                 *self._context_lasts(nxt, st)]
        released = Signal()
        rowt = self._row_table(m, ctx, nrow, (ki, kj, g))
        fill = rowt.fill
        bias_job = Signal(job)
        m.d.comb += [bias_job.bias.eq(1), bias_job.row.eq(nxt.reg_row0),
                     bias_job.rows.eq(nxt.reg_rows), bias_job.col.eq(nxt.reg_col0),
                     bias_job.cols.eq(nxt.reg_cols)]
        with m.FSM(name="core"):
            with m.State("IDLE"):
                # Room for this slice's job and the two quad rows the one before may still
                # push into the writer's queue.
                free = st["drained"] & (wq.w_level < 2)
                m.d.comb += self.slice.ready.eq(free)
                with m.If(self.slice.valid & free):
                    m.d.sync += [ctx.eq(nxt), ki.eq(0), kj.eq(0), g.eq(0), qr.eq(0), qc.eq(0),
                                 nrow.eq(0), nquad.eq(0), released.eq(0), *sizes]
                    with m.If(nxt.num_keys == 0):
                        m.d.comb += [wq.w_en.eq(1), wq.w_data.eq(bias_job),
                                     self.release.eq(1), self.release_set.eq(nxt.set)]
                    with m.Else():
                        m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += [fill.valid.eq(nrow < rows),
                             qw.en.eq(nquad < quads), qw.addr.eq(nquad),
                             qw.data[0].eq(ctx.reg_row0 + 2 * qr),
                             qw.data[1].eq(ctx.reg_col0 + 2 * qc)]
                with m.If(nrow < rows):
                    m.d.sync += nrow.eq(nrow + 1)
                    self._odometer(m, [g, kj, ki],
                                   [G - 1, st["last_key_col"], st["last_key_row"]])
                with m.If(nquad < quads):
                    m.d.sync += nquad.eq(nquad + 1)
                    self._odometer(m, [qc, qr], [st["last_qcol"], (1 << INDEX_BITS) - 1])
                with m.If((nrow >= rows) & (nquad >= quads)):
                    m.next = "START"
            with m.State("START"):
                m.d.comb += seq.slice.valid.eq(1)
                with m.If(seq.slice.ready):
                    m.d.comb += st["slice_start"].eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(seq.done):
                    m.next = "IDLE"
        for name in ("q_row0", "q_col0", "q_rows", "q_cols", "reg_rows", "reg_cols",
                     "key_rows", "key_cols"):
            m.d.comb += getattr(seq.slice.payload, name).eq(getattr(ctx, name))
        step = seq.step
        first_kv = step.valid & (step.payload.phase == P["kv"]) & ~released
        with m.If(first_kv):
            m.d.sync += released.eq(1)
            m.d.comb += [self.release.eq(1), self.release_set.eq(ctx.set)]
        return {"row": rowt, "quad": quadt, "corner": corner}

    def _context_lasts(self, nxt: Signal, st: dict) -> list:
        """The odometer bounds of slice ``nxt``, to register with its context."""
        N = self.plan.cols
        return [st["last_key"].eq(nxt.num_keys - 1), st["last_key_col"].eq(nxt.key_cols - 1),
                st["last_key_row"].eq(nxt.key_rows - 1),
                st["last_qcol"].eq(((nxt.reg_cols + 1) >> 1) - 1),
                st["last_key_word"].eq(((nxt.num_keys + N - 1) >> (N.bit_length() - 1)) - 1)]

    def _row_table(self, m: Module, ctx: Signal, nrow: Signal, counters: tuple) -> RowTable:
        """The row table, filled with row ``nrow`` = ``(key_row0 + ki, key_col0 + kj, g)``
        while ``fill.valid``. Its writes trail the fill by ``ROW_LATENCY`` cycles; its first
        reader, ``dwconv``, waits for the ``q`` job to drain through the array."""
        m.submodules.row_table = rowt = RowTable(self.plan, self.hwp.bank_cols[0])
        ki, kj, g = counters
        f = rowt.fill.payload
        m.d.comb += [f.addr.eq(nrow), f.key[0].eq(ctx.key_row0 + ki),
                     f.key[1].eq(ctx.key_col0 + kj), f.key[2].eq(g)]
        for name in ("row0", "col0", "rows", "cols"):
            m.d.comb += getattr(rowt.window, name).eq(getattr(ctx, name))
        return rowt

    @staticmethod
    def _odometer(m: Module, counters: list, lasts: list) -> None:
        """Advance ``counters`` (innermost first) as digits whose largest values are
        ``lasts`` (constants or registers, never an expression to compute every cycle)."""
        carry = Const(1, 1)
        for c, last in zip(counters, lasts, strict=True):
            wrap = c == last
            with m.If(carry):
                m.d.sync += c.eq(Mux(wrap, 0, c + 1))
            carry = carry & wrap

    # -- operands, array, requantizer ----------------------------------------------------------
    def _fetch_wiring(self, m: Module, fe: OperandFetch, seq: Sequencer, pm: ParamMemories,
                      bufs: dict, ctx: Signal, tables: dict) -> None:
        L = self.plan.lanes
        step = seq.step
        m.d.comb += [fe.step.valid.eq(step.valid), fe.step.payload.eq(step.payload),
                     step.ready.eq(1), fe.ctx.eq(ctx)]
        idx, ph = step.payload.index, step.payload.phase
        qr = tables["quad"].read_port(domain="comb")
        cr = tables["corner"].read_port(domain="comb")
        m.d.comb += [tables["row"].rd_addr.eq(Mux(ph == P["dwconv"], idx[1], idx[2])),
                     fe.row_info.eq(tables["row"].rd_data),
                     qr.addr.eq(Mux(ph == P["proj_out"], idx[1], idx[0])), fe.quad.eq(qr.data),
                     cr.addr.eq(idx[2]), fe.corner.eq(cr.data)]
        for b in range(ROWS):
            m.d.comb += [self.x_addr[b].eq(fe.x_addr[b]), fe.x_data[b].eq(self.x_data[b])]
            for name in ("q", "keys", "k"):
                m.d.comb += [bufs[name].rd_addr[b].eq(getattr(fe, f"{name}_addr")[b]),
                             getattr(fe, f"{name}_data")[b].eq(bufs[name].rd_data[b])]
            for name in ("p", "o"):
                m.d.comb += [bufs[name].rd_addr[b].eq(getattr(fe, f"{name}_addr")),
                             getattr(fe, f"{name}_data")[b].eq(bufs[name].rd_data[b])]
        for lane in range(L):
            m.d.comb += [bufs["v"].rd_addr[lane].eq(fe.v_addr[lane]),
                         fe.v_data[lane].eq(bufs["v"].rd_data[lane])]
        m.d.comb += [bufs["g"].rd_addr[0].eq(fe.g_addr), fe.g_data.eq(bufs["g"].rd_data[0]),
                     pm.w_addr.eq(fe.w_addr), fe.w_data.eq(pm.w_data),
                     pm.dw_addr.eq(fe.dw_addr), fe.dw_data.eq(pm.dw_data)]

    def _requant(self, m: Module, arr: MacArray, rq: Requantizer, pm: ParamMemories) -> None:
        """The bias of a finished pass is read while its sums wait one cycle."""
        d, L, N = self.plan.dims, self.plan.lanes, self.plan.cols
        c = d.channels
        tag = data.View(tag_layout(), arr.o.payload.tag)
        ph, i = tag.phase, tag.index
        base = Signal(INDEX_BITS + 2)
        has_bias = Signal()
        fmt = Signal(range(len(FORMATS)))
        with m.Switch(ph):
            for name, section, f in (("q", 0, "q"), ("proj_out", 3, "y"), ("dwconv", 4, "h")):
                with m.Case(P[name]):
                    width = L if name == "dwconv" else N
                    m.d.comb += [base.eq(section * c + i[2] * width), has_bias.eq(1),
                                 fmt.eq(FORMATS.index(f))]
            with m.Case(P["kv"]):
                m.d.comb += [base.eq((1 + i[0]) * c + i[2] * N), has_bias.eq(1),
                             fmt.eq(Mux(i[0], FORMATS.index("v"), FORMATS.index("k")))]
            for name, f in (("offset_proj", "off"), ("sample", "sample"), ("logits", "qk"),
                            ("pv", "o")):
                with m.Case(P[name]):
                    m.d.comb += fmt.eq(FORMATS.index(f))
        m.d.comb += pm.b_addr.eq(base // L)
        # The bias word's first lane, base % L, is a multiple of N (the plan makes the
        # channels a multiple of L, and a dense pass's column block N wide): its block.
        block, on, mode1 = Signal(range(L // N)), Signal(), Signal()
        acc1 = Signal.like(arr.o.payload.acc)
        tag1 = Signal.like(arr.o.payload.tag)
        v1, fmt1 = Signal(), Signal.like(fmt)
        m.d.sync += [block.eq((base % L) // N), on.eq(has_bias), mode1.eq(arr.o.payload.mode),
                     acc1.eq(arr.o.payload.acc), tag1.eq(arr.o.payload.tag),
                     v1.eq(arr.o.valid), fmt1.eq(fmt)]
        for j in range(arr.acc_size):
            dense = Array(pm.b_data[k * N + j % N] for k in range(L // N))[block]
            red = pm.b_data[j] if j < L else 0
            m.d.comb += rq.i.payload.bias[j].eq(Mux(on, Mux(mode1, red, dense), 0))
        m.d.comb += [rq.i.valid.eq(v1), rq.i.payload.acc.eq(acc1), rq.i.payload.fmt.eq(fmt1),
                     rq.i.payload.tag.eq(tag1)]

    # -- results ---------------------------------------------------------------------------------
    def _lane_write(self, m: Module, port: object, addr: object, lane0: object, values: list,
                    en: object) -> None:
        """Write ``values`` into lanes ``lane0 ..`` of word ``addr`` of one bank when
        ``en`` (several writers of one port are never enabled in the same cycle).

        ``lane0`` is a multiple of ``len(values)`` at every caller (the plan makes the head
        channels a multiple of the lanes and columns, and a bus beat hold whole lane
        words), so lane ``l`` takes value ``l % len(values)`` and only the lane enables
        move: no rotation multiplexer.
        """
        width = len(port.data)
        n = len(values)
        assert width % n == 0, (width, n)
        with m.If(en):
            m.d.comb += [port.addr.eq(addr), port.en.eq(Const((1 << n) - 1, width) << lane0)]
            for lane in range(width):
                m.d.comb += port.data[lane].eq(values[lane % n])

    def _route(self, m: Module, rq: Requantizer, pm: ParamMemories, bufs: dict, ctx: Signal,
               st: dict) -> None:
        p = self.plan
        d, L, N = p.dims, p.lanes, p.cols
        c, dh, G = d.channels, d.head_dim, d.groups
        kt_words = -(-p.max_keys // N)
        tag = data.View(tag_layout(), rq.o.payload.tag)
        ph, i, v = tag.phase, tag.index, rq.o.payload.value
        ok = rq.o.valid
        pw = c // L
        for r in range(ROWS):
            vals = [v[r * N + n] for n in range(N)]
            # q: the quad's pixel r into its parity bank.
            wr, wc = tag.pix[0] + r // 2, tag.pix[1] + r % 2
            bank = Signal(2, name=f"qbank{r}")
            m.d.comb += bank.eq(Mux(wr[0], 2, 0) | wc[0])
            qaddr = ((wr >> 1) * self.hwp.bank_cols[0] + (wc >> 1)) * pw + ((i[2] * N) >> (
                L.bit_length() - 1))
            for b in range(ROWS):
                self._lane_write(m, bufs["q"].wr[b], qaddr, (i[2] * N) % L, vals,
                                 ok & (ph == P["q"]) & tag.mask[r] & (bank == b))
            # k: key 4 kq + r into bank r; v: into bank (4 kq + r) % L.
            key = i[1] * ROWS + r
            is_kv = ok & (ph == P["kv"])
            self._lane_write(m, bufs["k"].wr[r], i[1] * pw + ((i[2] * N) >> (L.bit_length() - 1)),
                             (i[2] * N) % L, vals, is_kv & ~i[0])
            for lane in range(L):
                if lane % ROWS == r:
                    hit = is_kv & i[0] & ((key % L) == lane)
                    self._lane_write(m, bufs["v"].wr[lane], (key // L) * (c // N) + i[2], 0,
                                     vals, hit)
            # logits of quad n, head h, key tile kt.
            self._lane_write(m, bufs["logits"].wr[r],
                             i[0][0] * (d.heads * kt_words) + i[1] * kt_words + i[2], 0, vals,
                             ok & (ph == P["logits"]))
            # o of quad n: channels h dh + ct N.
            ch = i[1] * dh + i[2] * N
            self._lane_write(m, bufs["o"].wr[r], i[0][0] * pw + (ch >> (L.bit_length() - 1)),
                             ch % L, vals, ok & (ph == P["pv"]))
        # Sampled keys: row = key * G + group; L channels of one key.
        row = i[2]
        key = Signal(INDEX_BITS, name="sample_key")
        grp = Signal(range(G), name="sample_group")
        m.d.comb += [key.eq(row // G), grp.eq(row % G)]
        for b in range(ROWS):
            self._lane_write(m, bufs["keys"].wr[b],
                             (key >> 2) * pw + grp * (d.group_channels // L) + i[3], 0,
                             [v[lane] for lane in range(L)],
                             ok & (ph == P["sample"]) & (key % ROWS == b))
        self._route_counts(m, rq, tag, st)
        self._route_y(m, rq, tag, bufs, ctx, st)
        del pm

    def _route_counts(self, m: Module, rq: Requantizer, tag: data.View, st: dict) -> None:
        """Quads whose logits / pv results are all in; passes in flight."""
        d, N = self.plan.dims, self.plan.cols
        ph, i, ok = tag.phase, tag.index, rq.o.valid
        with m.If(st["slice_start"]):
            m.d.sync += [st["logit_quads"].eq(0), st["o_quads"].eq(0)]
        with m.Elif(ok & (ph == P["logits"]) & (i[1] == d.heads - 1)
                    & (i[2] == st["last_key_word"])):
            m.d.sync += st["logit_quads"].eq(st["logit_quads"] + 1)
        with m.Elif(ok & (ph == P["pv"]) & (i[1] == d.heads - 1)
                    & (i[2] == d.head_dim // N - 1)):
            m.d.sync += st["o_quads"].eq(st["o_quads"] + 1)

    def _route_y(self, m: Module, rq: Requantizer, tag: data.View, bufs: dict, ctx: Signal,
                 st: dict) -> None:
        """proj_out results into the y buffer (bank = quad row r); a finished quad row
        goes to the writer's queue."""
        d, N = self.plan.dims, self.plan.cols
        lay = self.plan.layout
        per_beat = lay.bus_bytes // 2
        ph, i, v, ok = tag.phase, tag.index, rq.o.payload.value, rq.o.valid
        qrow = Signal(INDEX_BITS, name="y_qrow")
        qcol = Signal(INDEX_BITS, name="y_qcol")
        m.d.comb += [qrow.eq((tag.pix[0] + ctx.row0 - ctx.reg_row0) >> 1),
                     qcol.eq((tag.pix[1] + ctx.col0 - ctx.reg_col0) >> 1)]
        ch = i[2] * N
        beat = ch // per_beat
        addr = qrow[0] * (self.qcols * self.pb) + qcol * self.pb + beat
        for r in range(ROWS):
            self._lane_write(m, bufs["y"].wr[r], addr, ch % per_beat,
                             [v[r * N + n] for n in range(N)],
                             ok & (ph == P["proj_out"]) & tag.mask[r])
        done_row = ok & (ph == P["proj_out"]) & (i[2] == d.channels // N - 1) \
            & (qcol == st["last_qcol"])
        job = Signal(self._writer_job())
        top = ctx.reg_row0 + 2 * qrow
        m.d.comb += [job.bias.eq(0), job.set.eq(qrow[0]), job.row.eq(top),
                     job.rows.eq(Mux(top + 1 < ctx.reg_row0 + ctx.reg_rows, 2, 1)),
                     job.col.eq(ctx.reg_col0), job.cols.eq(ctx.reg_cols)]
        wq = st["wq"]
        with m.If(done_row):
            m.d.comb += [wq.w_en.eq(1), wq.w_data.eq(job)]

    # -- LayerNorm, offsets, positions --------------------------------------------------------
    def _units(self, m: Module, rq: Requantizer, pm: ParamMemories, bufs: dict, ctx: Signal,
               st: dict, tables: dict) -> None:
        p, num = self.plan, self.num
        d, L = p.dims, p.lanes
        ln, cg, G = p.ln, d.group_channels, d.groups
        tag = data.View(tag_layout(), rq.o.payload.tag)
        ph, i, v, ok = tag.phase, tag.index, rq.o.payload.value, rq.o.valid
        # LayerNorm: dwconv results in, GELU outputs into the g buffer.
        m.submodules.ln = lnu = LayerNormUnit(ln, cg, L, self._eps())
        wiring.connect(m, pm.ln_w, lnu.params_w)
        m.d.comb += lnu.i.valid.eq(ok & (ph == P["dwconv"]))
        for lane in range(L):
            m.d.comb += lnu.i.payload.h[lane].eq(v[lane])
        gch = Signal(range(cg + 1), name="g_channel")
        with m.If(st["slice_start"]):
            m.d.sync += [st["ln_rows"].eq(0), gch.eq(0)]
        with m.Elif(lnu.o.valid):
            m.d.sync += gch.eq(Mux(lnu.o.payload.last, 0, gch + 1))
            with m.If(lnu.o.payload.last):
                m.d.sync += st["ln_rows"].eq(st["ln_rows"] + 1)
        self._lane_write(m, bufs["g"].wr[0], st["ln_rows"][0] * (cg // L) + gch // L, gch % L,
                         [lnu.o.payload.g], lnu.o.valid)
        # Offset unit: raw offsets + reference + bounds (the reference read while the
        # requantizer works: issued at its input, two cycles of delay).
        ou = OffsetUnit(ln, num.coord_bits, num.coord_frac, d.height, d.width,
                        "tanh" if self.tanh else "clamp", self._scale(), tag_bits=INDEX_BITS)
        m.submodules.offset = ou
        itag = data.View(tag_layout(), rq.i.payload.tag)
        m.d.comb += [pm.ref_addr[0].eq(itag.row[0]), pm.ref_addr[1].eq(d.key_rows + itag.row[1])]
        ref = [Signal(signed(32), name=f"ref{k}") for k in range(2)]
        m.d.sync += [ref[k].eq(pm.ref_data[k]) for k in range(2)]
        m.d.comb += [ou.i.valid.eq(ok & (ph == P["offset_proj"])), ou.i.payload.tag.eq(i[2]),
                     ou.i.payload.off[0].eq(v[0]), ou.i.payload.off[1].eq(v[1]),
                     ou.i.payload.ref[0].eq(ref[0]), ou.i.payload.ref[1].eq(ref[1])]
        for name in ("y_lo", "y_hi", "x_lo", "x_hi"):
            m.d.comb += [getattr(ou.i.payload.win, name).eq(getattr(ctx, name)),
                         getattr(ou.i.payload.bias, name).eq(getattr(ctx, "b" + name))]
        self._positions(m, ou, ctx, st, tables, G)
        if "bias" in tables:
            wiring.connect(m, pm.rpe_w, tables["bias"].table_w)
        del bufs

    def _eps(self) -> int:
        from defslice.model.dat_layer import LAYER_NORM_EPS
        from defslice.model.fixedpoint import rhu
        return int(rhu(LAYER_NORM_EPS * 2.0 ** (2 * self.plan.ln.h_frac)))

    def _scale(self) -> tuple[int, int]:
        """``SC_y``, ``SC_x`` (host step H6), constants of the design."""
        if not self.tanh:
            return (0, 0)
        from defslice.model.dat import offset_scale_px
        from defslice.model.fixedpoint import rhu
        d = self.plan.dims
        px = offset_scale_px(d.height, d.width, d.key_rows, d.key_cols,
                             d.spec.offset_range_factor)
        sc = rhu(px * 2.0 ** self.plan.ln.offset_scale_frac)
        return int(sc[0]), int(sc[1])

    def _positions(self, m: Module, ou: OffsetUnit, ctx: Signal, st: dict, tables: dict,
                   G: int) -> None:
        """Sampling positions through the coordinate unit into the corner memory; bias
        positions into the bias lookup's key memory."""
        cu = CoordUnit(self.hwp, unsigned(INDEX_BITS))
        m.submodules.coord = cu
        win = cu.i.payload.win
        m.d.comb += [cu.i.valid.eq(ou.o.valid), cu.i.payload.y.eq(ou.o.payload.sample[0]),
                     cu.i.payload.x.eq(ou.o.payload.sample[1]),
                     cu.i.payload.bank_cols.eq(self.hwp.bank_cols[0]),
                     cu.i.payload.tag.eq(ou.o.payload.tag), cu.o.ready.eq(1)]
        for name in ("row0", "col0", "rows", "cols", "y_lo", "y_hi", "x_lo", "x_hi"):
            m.d.comb += getattr(win, name).eq(getattr(ctx, name))
        cw = tables["corner"].write_port()
        m.d.comb += [cw.en.eq(cu.o.valid), cw.addr.eq(cu.o.payload.tag),
                     cw.data.pixel.eq(cu.o.payload.pixel), cw.data.weight.eq(cu.o.payload.weight)]
        with m.If(st["slice_start"]):
            m.d.sync += st["positions"].eq(0)
        with m.Elif(cu.o.valid):
            m.d.sync += st["positions"].eq(st["positions"] + 1)
        d, num, ln = self.plan.dims, self.num, self.plan.ln
        if d.use_pe:
            per = self.plan.layout.bus_bytes // (ROWS * 2)
            bl = BiasLookup(d.height, d.width, d.heads, G, self.plan.max_keys, num.coord_bits,
                            num.coord_frac, ln.weight_bits,
                            2 * num.coord_frac + ln.rpe_frac - ln.logit_frac, per_word=per,
                            tag_bits=1)
            m.submodules.bias = bl
            tables["bias"] = bl
            row = ou.o.payload.tag
            m.d.comb += [bl.key_w.valid.eq(ou.o.valid), bl.key_w.payload.key.eq(row // G),
                         bl.key_w.payload.group.eq(row % G),
                         bl.key_w.payload.py.eq(ou.o.payload.bias[0]),
                         bl.key_w.payload.px.eq(ou.o.payload.bias[1])]

    # -- softmax ------------------------------------------------------------------------------
    def _softmax(self, m: Module, bufs: dict, ctx: Signal, st: dict, tables: dict,
                 pm: ParamMemories) -> None:
        """The feeder walks quad ``fq``'s rows (pixel r, head h) and keys k: the logit from
        the logits buffer, the bias from the lookup, both into the softmax unit; its
        probabilities go to the p buffer in the same order."""
        p = self.plan
        d, L, N = p.dims, p.lanes, p.cols
        kt_words, kc_words = -(-p.max_keys // N), -(-p.max_keys // L)
        qk_bits = self.formats[FORMATS.index("qk")][1]
        bl = tables.get("bias")
        bias_bits = bl.bias_bits if bl is not None else 2
        sm = Softmax(p.ln, p.max_keys, qk_bits=qk_bits, bias_bits=bias_bits)
        m.submodules.softmax = sm
        lat = bl.latency if bl is not None else 1
        entry = data.StructLayout({"qk": signed(qk_bits), "bias": signed(bias_bits), "last": 1})
        m.submodules.sm_fifo = q = fifo.SyncFIFOBuffered(width=entry.size, depth=lat + 4)
        fq, r, h, k = (Signal(INDEX_BITS, name=f"feed_{n}") for n in ("q", "r", "h", "k"))
        inflight = Signal(range(lat + 6))
        nk_last = st["last_key"]
        room = q.r_level + inflight < lat + 2
        go = Signal()
        m.d.comb += go.eq((st["logit_quads"] > fq) & room)
        with m.If(st["slice_start"]):
            m.d.sync += [fq.eq(0), r.eq(0), h.eq(0), k.eq(0)]
        with m.Elif(go):
            self._odometer(m, [k, h, r, fq],
                           [nk_last, d.heads - 1, ROWS - 1, (1 << INDEX_BITS) - 1])
        quad = tables["quad"].read_port(domain="comb")
        m.d.comb += quad.addr.eq(fq)
        rd = [bufs["logits"].rd_addr[b] for b in range(ROWS)]
        for b in range(ROWS):
            m.d.comb += rd[b].eq(fq[0] * (d.heads * kt_words) + h * kt_words + (k // N))
        # Align the logit (read latency 1) with the bias (lookup latency).
        sel = [Signal(range(ROWS), name="feed_r1"), Signal(range(N), name="feed_lane1")]
        v1, last1 = Signal(), Signal()
        m.d.sync += [sel[0].eq(r), sel[1].eq(k % N), v1.eq(go), last1.eq(go & (k == nk_last))]
        word = Array(bufs["logits"].rd_data[b] for b in range(ROWS))[sel[0]]
        qk = Signal(signed(qk_bits))
        m.d.comb += qk.eq(Array(word[n] for n in range(N))[sel[1]])
        chain = [(qk, v1, last1)]
        for t in range(lat - 1):
            a, b_, c_ = Signal.like(qk, name=f"qk_d{t}"), Signal(name=f"qv_d{t}"), \
                Signal(name=f"ql_d{t}")
            m.d.sync += [a.eq(chain[-1][0]), b_.eq(chain[-1][1]), c_.eq(chain[-1][2])]
            chain.append((a, b_, c_))
        qk_al, v_al, last_al = chain[-1]
        bias = Signal(signed(bias_bits))
        if bl is not None:
            m.d.comb += [bl.i.valid.eq(go),
                         bl.i.payload.qy.eq(Mux(quad.data[0] + (r >> 1) < d.height,
                                                quad.data[0] + (r >> 1), d.height - 1)),
                         bl.i.payload.qx.eq(Mux(quad.data[1] + (r & 1) < d.width,
                                                quad.data[1] + (r & 1), d.width - 1)),
                         bl.i.payload.head.eq(h), bl.i.payload.key.eq(k),
                         bias.eq(bl.o.payload.bias)]
        fe = Signal(entry)
        m.d.comb += [fe.qk.eq(qk_al), fe.bias.eq(bias), fe.last.eq(last_al),
                     q.w_en.eq(v_al), q.w_data.eq(fe)]
        m.d.sync += inflight.eq(inflight + go - v_al)
        out = data.View(entry, q.r_data)
        m.d.comb += [sm.i.valid.eq(q.r_rdy), sm.i.payload.qk.eq(out.qk),
                     sm.i.payload.bias.eq(out.bias), sm.i.payload.last.eq(out.last),
                     q.r_en.eq(sm.i.ready)]
        self._probs(m, sm, bufs, st, kc_words)
        del pm

    def _probs(self, m: Module, sm: Softmax, bufs: dict, st: dict,
               kc_words: int) -> None:
        d, L = self.plan.dims, self.plan.lanes
        oq, r, h, k = (Signal(INDEX_BITS, name=f"prob_{n}") for n in ("q", "r", "h", "k"))
        with m.If(st["slice_start"]):
            m.d.sync += [oq.eq(0), r.eq(0), h.eq(0), k.eq(0), st["sm_quads"].eq(0)]
        with m.Elif(sm.o.valid):
            self._odometer(m, [k, h, r, oq],
                           [st["last_key"], d.heads - 1, ROWS - 1, (1 << INDEX_BITS) - 1])
            with m.If((k == st["last_key"]) & (h == d.heads - 1) & (r == ROWS - 1)):
                m.d.sync += st["sm_quads"].eq(st["sm_quads"] + 1)
        for b in range(ROWS):
            self._lane_write(m, bufs["p"].wr[b],
                             oq[0] * (d.heads * kc_words) + h * kc_words + (k // L), k % L,
                             [sm.o.payload.p], sm.o.valid & (r == b))

    # -- y ------------------------------------------------------------------------------------
    def _ybias(self, m: Module, pm: ParamMemories, run: Signal) -> Signal:
        """``y`` of a slice without keys, ``sat(rnd(bo, .), out_bits)`` of every channel,
        computed once after the parameters are in (reading the bias memory, which is idle
        until the first slice; the word is registered, then rounded)."""
        d, L = self.plan.dims, self.plan.lanes
        c = d.channels
        shift, bits = self.formats[FORMATS.index("y")]
        yb = Signal(data.ArrayLayout(signed(16), c))
        w = Signal(range(c // L + 1))
        busy, rdv = Signal(), Signal()
        rd = Signal.like(w)
        with m.If(run):
            m.d.sync += [w.eq(0), busy.eq(1)]
        with m.Elif(busy):
            m.d.sync += w.eq(w + 1)
            with m.If(w == c // L - 1):
                m.d.sync += busy.eq(0)
        with m.If(busy):
            m.d.comb += pm.b_addr.eq(3 * c // L + w)
        # The bias word is registered before its rounding: the block RAM's output is slow.
        bo = Signal(pm.b_data.shape())
        rd2, rdv2 = Signal.like(w), Signal()
        m.d.sync += [rd.eq(w), rdv.eq(busy), bo.eq(pm.b_data), rd2.eq(rd), rdv2.eq(rdv)]
        vals = [saturate_to(m, round_half_up(bo[lane], shift), bits, f"yb{lane}")
                for lane in range(L)]
        with m.If(rdv2):
            with m.Switch(rd2):
                for word in range(c // L):
                    with m.Case(word):
                        m.d.sync += [yb[word * L + lane].eq(vals[lane]) for lane in range(L)]
        return yb

    def _writer(self, m: Module, seq: Sequencer, bufs: dict, ctx: Signal, st: dict,
                pm: ParamMemories) -> None:
        """Jobs from the queue: a finished quad row from the y buffer, or a keyless
        slice's rows of the output bias, pixel by pixel, beat by beat."""
        d = self.plan.dims
        lay = self.plan.layout
        per_beat = lay.bus_bytes // 2
        done_prev = Signal()
        m.d.sync += done_prev.eq(pm.done)
        yb = self._ybias(m, pm, pm.done & ~done_prev)
        wq = st["wq"]
        job = Signal(self._writer_job())
        active = Signal()
        pr, col, beat = Signal(2), Signal(INDEX_BITS), Signal(range(self.pb + 1))
        m.submodules.y_fifo = yf = fifo.SyncFIFOBuffered(
            width=len(self.y.payload.as_value()), depth=4)
        inflight = Signal(2)
        go = Signal()
        m.d.comb += [go.eq(active & (yf.w_level + inflight < Y_IN_FLIGHT)), wq.r_en.eq(~active)]
        with m.If(~active & wq.r_rdy):
            m.d.sync += [job.eq(wq.r_data), active.eq(1), pr.eq(0), col.eq(0), beat.eq(0)]
        drained_set = Signal(2)
        with m.If(go):
            last_beat = beat == self.pb - 1
            last_col = col == job.cols - 1
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                m.d.sync += col.eq(Mux(last_col, 0, col + 1))
                with m.If(last_col):
                    m.d.sync += pr.eq(pr + 1)
                    with m.If(pr + 1 == job.rows):
                        m.d.sync += active.eq(0)
                        with m.If(~job.bias):
                            m.d.comb += drained_set.bit_select(job.set, 1).eq(1)
        # The quad row's pixel (pr, col): bank 2 pr + (col & 1), word (col >> 1).
        bank = Signal(2)
        m.d.comb += bank.eq(Mux(pr[0], 2, 0) | col[0])
        for b in range(ROWS):
            m.d.comb += bufs["y"].rd_addr[b].eq(job.set * (self.qcols * self.pb)
                                                + (col >> 1) * self.pb + beat)
        info = Signal(self.y.payload.shape())
        m.d.sync += [info.row.eq(job.row + pr), info.col.eq(job.col + col), info.beat.eq(beat)]
        v1, b1, bias1 = Signal(), Signal(2), Signal()
        m.d.sync += [v1.eq(go), b1.eq(bank), bias1.eq(job.bias)]
        mem_word = Array(bufs["y"].rd_data[x] for x in range(ROWS))[b1]
        beat_bias = Array(Signal(unsigned(8 * lay.bus_bytes), name=f"ybias_beat{t}")
                          for t in range(self.pb))
        for t in range(self.pb):
            m.d.comb += beat_bias[t].eq(Cat(*[yb[t * per_beat + e] if t * per_beat + e
                                              < d.channels else Const(0, 16)
                                              for e in range(per_beat)]))
        out = Signal(self.y.payload.shape())
        m.d.comb += [out.eq(info), out.data.eq(Mux(bias1, beat_bias[info.beat],
                                                   mem_word.as_value()))]
        m.d.comb += [yf.w_en.eq(v1), yf.w_data.eq(out)]
        m.d.sync += inflight.eq(inflight + go - v1)
        m.d.comb += [self.y.valid.eq(yf.r_rdy), self.y.payload.eq(yf.r_data),
                     yf.r_en.eq(self.y.ready)]
        self._y_room(m, seq, st, drained_set)
        m.d.comb += self.idle.eq(~active & ~wq.r_rdy & ~yf.r_rdy & st["drained"])

    def _y_room(self, m: Module, seq: Sequencer, st: dict,
                drained_set: Signal) -> None:
        """Whether the next proj_out quad has a y set: the one of its quad row, claimed
        at the row's first quad, freed when the writer has drained it."""
        c, N, L = self.plan.dims.channels, self.plan.cols, self.plan.lanes
        busy = Signal(2)
        nrow, ncol = Signal(INDEX_BITS), Signal(INDEX_BITS)
        s = seq.step
        start = s.valid & (s.payload.phase == P["proj_out"]) & (s.payload.index[2] == 0) \
            & (s.payload.index[3] == 0)
        claim = Signal(2)
        with m.If(st["slice_start"]):
            m.d.sync += [nrow.eq(0), ncol.eq(0)]
        with m.Elif(start):
            self._odometer(m, [ncol, nrow], [st["last_qcol"], (1 << INDEX_BITS) - 1])
            with m.If(ncol == 0):
                m.d.comb += claim.bit_select(nrow[0], 1).eq(1)
        m.d.sync += busy.eq(busy & ~drained_set | claim)
        m.d.comb += st["y_room"].eq((ncol != 0) | ~busy.bit_select(nrow[0], 1))
        del c, N, L


