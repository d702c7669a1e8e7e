"""Operand fetch: a step's A and B tiles from the engine's buffers, one step per cycle."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.layer.mac_array import DENSE, ROW_REDUCE
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.row_table import ADDR, COORD, row_layout
from defslice.hw.layer.sequencer import INDEX_BITS, PHASE_CODE
from defslice.model.layer_layout import ARRAY_ROWS

__all__ = ["FETCH_LATENCY", "X_LATENCY", "OperandFetch", "context_layout", "tag_layout"]

#: Read latency of the window banks (block RAM, then the chunk's register).
X_LATENCY = 2
#: Cycles from a step's acceptance to its operands at the array's input.
FETCH_LATENCY = 2 + X_LATENCY + 1
ROWS = ARRAY_ROWS
SIGNED_I = COORD
#: The q box's and the region's ends less ``d`` on each axis (``box_row0 + box_rows - d``,
#: ``box_col0 + box_cols - d``): pixel ``first + d`` of a quad is inside when
#: ``first < end``.
ENDS = tuple((box, a, d) for box in ("q", "reg") for a in range(2) for d in range(2))


def context_layout() -> data.StructLayout:
    """The slice fields the fetch and result stages read (from its descriptor)."""
    f = {n: signed(INDEX_BITS) for n in ("row0", "col0", "rows", "cols", "y_lo", "y_hi",
                                         "x_lo", "x_hi", "q_row0", "q_col0", "q_rows",
                                         "q_cols", "reg_row0", "reg_col0", "reg_rows",
                                         "reg_cols", "by_lo", "by_hi", "bx_lo", "bx_hi",
                                         "key_row0", "key_col0", "key_rows", "key_cols")}
    f.update({"set": 1, "num_keys": unsigned(INDEX_BITS)})
    return data.StructLayout(f)


def tag_layout() -> data.StructLayout:
    """What a pass carries from its last step to its result (``docs/hw_layer.md``)."""
    return data.StructLayout({
        "phase": range(len(PHASE_CODE)), "index": data.ArrayLayout(unsigned(INDEX_BITS), 4),
        "parity": 2,                                       # quad rotation: bank = row ^ parity
        "pix": data.ArrayLayout(SIGNED_I, 2),              # window-relative quad origin
        "mask": ROWS,                                      # rows that are real pixels / taps
        "row": data.ArrayLayout(unsigned(INDEX_BITS), 3),  # (key_row, key_col, group)
    })


class OperandFetch(wiring.Component):
    """Addresses of a step's operands, the memories' words, aligned into one array step.

    ``FETCH_LATENCY`` cycles after a step is taken its operands reach the array; every
    memory gets its address :data:`X_LATENCY` + 1 cycles before that (``docs/hw_layer.md``,
    "Core"). A quad's row ``r`` is pixel ``(y0 + r // 2, x0 + r % 2)``; its bank is
    ``r ^ parity``, ``parity`` = ``2 (y0 & 1) + (x0 & 1)`` of the window-relative origin.

    Members
    -------
    step : In(stream.Signature(step, always_ready=True))
        From the sequencer (taken every cycle it is valid).
    ctx : In(context_layout())
        The slice being computed.
    row_info : In(row_layout(dims))
        The step's offset-network row (the core's row table, ``row_table.row_entry``),
        valid with the step.
    quad : In(ArrayLayout(signed, 2))
        Map position of the step's query quad (the core's quad table), valid with the step.
    corner : In(StructLayout)
        Corner pixels and weights of the step's sample row (the corner memory).
    x_addr / x_data, q_addr / q_data, keys_addr / keys_data, k_addr / k_data,
    v_addr / v_data, p_addr / p_data, o_addr / o_data, g_addr / g_data,
    w_addr / w_data, dw_addr / dw_data
        Memory read ports (addresses out, words in).
    o : Out(stream.Signature(MacArray input layout, always_ready=True))
        The array step with its tag.
    """

    def __init__(self, plan: LayerPlan, array_in: data.StructLayout, corner: data.Layout,
                 bank_cols: int, set_depth: int) -> None:
        self.plan, self.bank_cols, self.set_depth = plan, bank_cols, set_depth
        d, L, N = plan.dims, plan.lanes, plan.cols
        word = data.ArrayLayout(signed(16), L)
        self.kq_words = d.channels // L
        # Wide enough for every memory's address (each memory keeps the bits it uses).
        ab = unsigned(2 * INDEX_BITS)
        sig = data.ArrayLayout
        super().__init__({
            "step": In(stream.Signature(data.StructLayout({
                "phase": range(len(PHASE_CODE)), "index": sig(unsigned(INDEX_BITS), 4),
                "first": 1, "last": 1}), always_ready=True)),
            "ctx": In(context_layout()),
            "row_info": In(row_layout(d)),
            "quad": In(sig(signed(INDEX_BITS), 2)),
            "corner": In(corner),
            "x_addr": Out(sig(ab, ROWS)), "x_data": In(sig(unsigned(16 * L), ROWS)),
            "q_addr": Out(sig(ab, ROWS)), "q_data": In(sig(word, ROWS)),
            "keys_addr": Out(sig(ab, ROWS)), "keys_data": In(sig(word, ROWS)),
            "k_addr": Out(sig(ab, ROWS)), "k_data": In(sig(word, ROWS)),
            "v_addr": Out(sig(ab, L)), "v_data": In(sig(sig(signed(16), N), L)),
            "p_addr": Out(ab), "p_data": In(sig(sig(unsigned(16), L), ROWS)),
            "o_addr": Out(ab), "o_data": In(sig(word, ROWS)),
            "g_addr": Out(ab), "g_data": In(word),
            "w_addr": Out(ab), "w_data": In(sig(signed(16), L * N)),
            "dw_addr": Out(ab), "dw_data": In(sig(signed(16), ROWS * L)),
            "o": Out(stream.Signature(array_in, always_ready=True)),
        })

    # -- stage F1: addresses --------------------------------------------------------------
    def _quad_addresses(self, m: Module, s1: Signal, origin: tuple, word: object,
                        target: list, with_set: bool, name: str) -> Signal:
        """Bank addresses of the quad at window-relative ``origin`` into ``target``
        (registered); returns the rotation ``parity``. Bank ``b``'s pixel lies in the quad
        of the banks' layout at ``origin // 2``, or one further down / right
        (:meth:`_parity_offsets`)."""
        pw = self.plan.dims.channels // self.plan.lanes
        wr0, wc0 = origin
        parity = Signal(2, name=f"par_{name}")
        m.d.comb += parity.eq(Cat(wc0[0], wr0[0]))
        half = Signal(ADDR, name=f"half_{name}")
        m.d.comb += half.eq(((wr0 >> 1) * self.bank_cols + (wc0 >> 1)) * pw)
        sets = (0, self.set_depth) if with_set else (0,)
        for b in range(ROWS):
            offs = Array(Const(o + base) for base in sets for o in self._parity_offsets(b))
            sel = Cat(parity, s1.ctx.set) if with_set else parity
            m.d.sync += target[b].eq(half + (word + offs[sel]))
        return parity

    def _parity_offsets(self, b: int) -> list[int]:
        """Word offset of bank ``b``'s pixel from the quad at ``origin // 2``, by the
        origin's parity ``2 (y & 1) + (x & 1)``: one quad row / column further when the
        origin is odd and ``b`` is in the quad's first row / column."""
        pw = self.plan.dims.channels // self.plan.lanes
        by, bx = 1 - (b >> 1), 1 - (b & 1)
        return [(((par >> 1) & by) * self.bank_cols + (par & bx)) * pw for par in range(4)]

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.plan
        d, L, N = p.dims, p.lanes, p.cols
        c, dh = d.channels, d.head_dim
        tp = (c // N) * (c // L)
        kc_words = -(-(p.max_keys) // L)
        kt_words = -(-(p.max_keys) // N)
        # F1: the step and its table entries, registered.
        s1 = Signal(data.StructLayout({
            "valid": 1, "step": self.step.payload.shape(), "ctx": context_layout(),
            "row": self.row_info.shape(), "quad": self.quad.shape(),
            "corner": self.corner.shape(), "ends": data.ArrayLayout(SIGNED_I, len(ENDS))}))
        m.d.sync += [s1.valid.eq(self.step.valid), s1.step.eq(self.step.payload),
                     s1.ctx.eq(self.ctx), s1.row.eq(self.row_info), s1.quad.eq(self.quad),
                     s1.corner.eq(self.corner)]
        # The q box's and the region's ends less 0 or 1 (slice constants, registered).
        for k, (box, a, dd) in enumerate(ENDS):
            first = getattr(self.ctx, f"{box}_{('row0', 'col0')[a]}")
            m.d.sync += s1.ends[k].eq(first + getattr(self.ctx, f"{box}_{('rows', 'cols')[a]}")
                                      - dd)
        ph, i = s1.step.phase, s1.step.index
        ctx = s1.ctx
        tag = Signal(tag_layout())
        m.d.comb += [tag.phase.eq(ph), tag.index.eq(i), tag.row.eq(s1.row.key)]
        masks = Signal(ROWS)
        m.d.comb += tag.mask.eq(masks)
        # Window-relative origins of the quad each phase reads.
        q_origin = (Signal(SIGNED_I, name="q_wr0"), Signal(SIGNED_I, name="q_wc0"))
        m.d.comb += [q_origin[0].eq(i[0] - ctx.row0), q_origin[1].eq(i[1] - ctx.col0)]
        l_origin = (Signal(SIGNED_I, name="l_wr0"), Signal(SIGNED_I, name="l_wc0"))
        m.d.comb += [l_origin[0].eq(s1.quad[0] - ctx.row0), l_origin[1].eq(s1.quad[1] - ctx.col0)]
        x_par = self._quad_addresses(m, s1, q_origin, i[3], self.x_addr, True, "x")
        lq_par = Signal(2)
        q_addr_l = [Signal.like(self.q_addr[b], name=f"qa_l{b}") for b in range(ROWS)]
        q_addr_t = [Signal.like(self.q_addr[b], name=f"qa_t{b}") for b in range(ROWS)]
        m.d.comb += lq_par.eq(self._quad_addresses(
            m, s1, l_origin, i[1] * (dh // L) + i[3], q_addr_l, False, "l"))
        self._tap_addresses(m, s1, q_addr_t)
        self._masks(m, s1, masks)
        self._other_addresses(m, s1, tp, kc_words, kt_words)
        # The q banks' address: logits read query quads, dwconv kernel taps.
        ph2 = Signal.like(ph)
        m.d.sync += ph2.eq(ph)
        for b in range(ROWS):
            m.d.comb += self.q_addr[b].eq(Mux(ph2 == PHASE_CODE["dwconv"], q_addr_t[b],
                                              q_addr_l[b]))
        # Sample: the corner memory's pixels go straight to the x banks.
        with m.If(ph == PHASE_CODE["sample"]):
            for b in range(ROWS):
                m.d.sync += self.x_addr[b].eq(
                    Mux(ctx.set, self.set_depth, 0) + s1.corner.pixel[b] * (c // L)
                    + s1.row.word + i[3])
        parity = Mux(ph == PHASE_CODE["q"], x_par,
                     Mux(ph == PHASE_CODE["dwconv"], s1.row.parity,
                         Mux(ph == PHASE_CODE["logits"], lq_par, 0)))
        m.d.comb += tag.parity.eq(parity)
        m.d.comb += [tag.pix[0].eq(Mux(ph == PHASE_CODE["q"], q_origin[0], l_origin[0])),
                     tag.pix[1].eq(Mux(ph == PHASE_CODE["q"], q_origin[1], l_origin[1]))]
        self._assemble(m, s1, tag)
        return m

    def _kernel_offsets(self, dy: int, dx: int) -> list[tuple[int, int]]:
        """Kernel offset ``(y, x)`` of pixel ``(dy, dx)`` of each tap quad."""
        qn = (self.plan.dims.kernel + 1) // 2
        return [(2 * (t // qn) + dy, 2 * (t % qn) + dx) for t in range(self.plan.dims.tap_quads)]

    def _tap_addresses(self, m: Module, s1: Signal, target: list) -> None:
        """q-bank addresses of tap quad ``i[3]`` of the step's row (registered): the row's
        ``base`` plus a constant of the tap quad and the origin's parity, plus the word."""
        pw = self.plan.dims.channels // self.plan.lanes
        row, i = s1.row, s1.step.index
        for b in range(ROWS):
            offs = [(oy // 2 * self.bank_cols + ox // 2) * pw + o
                    for oy, ox in self._kernel_offsets(0, 0) for o in self._parity_offsets(b)]
            m.d.sync += target[b].eq(row.base + (i[2] + Array(Const(o) for o in offs)[
                Cat(row.parity, i[3])]))

    def _masks(self, m: Module, s1: Signal, masks: Signal) -> None:
        """Rows of the step that are real: q-box pixels (q), region pixels (query quads),
        kernel taps inside the kernel and the window (dwconv: the row's ``inside`` bits)."""
        ph, i = s1.step.phase, s1.step.index
        k, inside = self.plan.dims.kernel, s1.row.inside
        for r in range(ROWS):
            dy, dx = r // 2, r % 2
            in_tap = Array(inside[0][oy] & inside[1][ox] if oy < k and ox < k else Const(0)
                           for oy, ox in self._kernel_offsets(dy, dx))[i[3]]
            end = {(box, a): s1.ends[ENDS.index((box, a, (dy, dx)[a]))]
                   for box in ("q", "reg") for a in range(2)}
            in_q = (i[0] < end["q", 0]) & (i[1] < end["q", 1])
            in_reg = (s1.quad[0] < end["reg", 0]) & (s1.quad[1] < end["reg", 1])
            with m.Switch(ph):
                with m.Case(PHASE_CODE["q"]):
                    m.d.comb += masks[r].eq(in_q)
                with m.Case(PHASE_CODE["dwconv"]):
                    m.d.comb += masks[r].eq(in_tap)
                with m.Case(PHASE_CODE["logits"], PHASE_CODE["pv"], PHASE_CODE["proj_out"]):
                    m.d.comb += masks[r].eq(in_reg)
                with m.Default():
                    m.d.comb += masks[r].eq(1)

    def _other_addresses(self, m: Module, s1: Signal, tp: int, kc_words: int,
                         kt_words: int) -> None:
        d, L, N = self.plan.dims, self.plan.lanes, self.plan.cols
        c, cg, dh = d.channels, d.group_channels, d.head_dim
        ph, i = s1.step.phase, s1.step.index
        del kt_words
        for b in range(ROWS):
            m.d.sync += [self.keys_addr[b].eq(i[1] * (c // L) + i[3]),
                         self.k_addr[b].eq(((i[2] * N) >> 2) * (c // L) + i[1] * (dh // L)
                                           + i[3])]
        for lane in range(L):
            m.d.sync += self.v_addr[lane].eq(i[3] * (c // N) + i[1] * (dh // N) + i[2])
        m.d.sync += [self.p_addr.eq(i[0][0] * (d.heads * kc_words) + i[1] * kc_words + i[3]),
                     self.o_addr.eq(i[1][0] * (c // L) + i[3]),
                     self.g_addr.eq(i[2][0] * (cg // L) + i[3]),
                     self.dw_addr.eq(i[3] * (cg // L) + i[2])]
        with m.Switch(ph):
            with m.Case(PHASE_CODE["q"]):
                m.d.sync += self.w_addr.eq(i[2] * (c // L) + i[3])
            with m.Case(PHASE_CODE["offset_proj"]):
                m.d.sync += self.w_addr.eq(4 * tp + i[3])
            with m.Case(PHASE_CODE["kv"]):
                m.d.sync += self.w_addr.eq((1 + i[0]) * tp + i[2] * (c // L) + i[3])
            with m.Case(PHASE_CODE["proj_out"]):
                m.d.sync += self.w_addr.eq(3 * tp + i[2] * (c // L) + i[3])

    # -- stages F2-F4: data arrive; F5: the array step ---------------------------------------
    def _assemble(self, m: Module, s1: Signal, tag: Signal) -> None:
        L = self.plan.lanes
        ctl = data.StructLayout({"valid": 1, "mode": 1, "first": 1, "last": 1,
                                 "tag": tag_layout(), "keys_ok": L})
        c1 = Signal(ctl)
        ph = s1.step.phase
        m.d.comb += [c1.valid.eq(s1.valid), c1.first.eq(s1.step.first),
                     c1.last.eq(s1.step.last), c1.tag.eq(tag),
                     c1.mode.eq(Mux((ph == PHASE_CODE["dwconv"]) | (ph == PHASE_CODE["sample"]),
                                    ROW_REDUCE, DENSE))]
        for lane in range(L):
            m.d.comb += c1.keys_ok[lane].eq(s1.step.index[3] * L + lane < s1.ctx.num_keys)
        weights = Signal(s1.corner.weight.shape())
        m.d.comb += weights.eq(s1.corner.weight)
        chain = [c1]
        wchain = [weights]
        for k in range(1 + X_LATENCY):
            nxt, wn = Signal(ctl, name=f"ctl{k + 2}"), Signal.like(weights, name=f"bw{k + 2}")
            m.d.sync += [nxt.eq(chain[-1]), wn.eq(wchain[-1])]
            chain.append(nxt)
            wchain.append(wn)
        c4, w4 = chain[-1], wchain[-1]
        late = {}
        for name in ("q_data", "keys_data", "k_data", "v_data", "p_data", "o_data", "g_data",
                    "w_data", "dw_data"):
            port = getattr(self, name)
            reg = Signal.like(port, name=f"{name}_d")
            m.d.sync += reg.eq(port)
            late[name] = reg
        a = Signal(self.o.payload.a.shape())
        b = Signal(self.o.payload.b.shape())
        self._a_tile(m, c4, a, late)
        self._b_tile(m, c4, w4, b, late)
        m.d.sync += [self.o.valid.eq(c4.valid), self.o.payload.a.eq(a), self.o.payload.b.eq(b),
                     self.o.payload.mode.eq(c4.mode), self.o.payload.first.eq(c4.first),
                     self.o.payload.last.eq(c4.last), self.o.payload.tag.eq(c4.tag)]

    def _a_tile(self, m: Module, c4: Signal, a: Signal, late: dict) -> None:
        L = self.plan.lanes
        ph, par, mask = c4.tag.phase, c4.tag.parity, c4.tag.mask
        # One rotation serves the window and the q banks: q and sample read x (sample with
        # parity 0 and every row real), dwconv and logits read q.
        from_q = Signal(name="a_from_q")
        m.d.comb += from_q.eq((ph == PHASE_CODE["dwconv"]) | (ph == PHASE_CODE["logits"]))
        banks = Array(Mux(from_q, late["q_data"][b].as_value(), self.x_data[b])
                      for b in range(ROWS))
        for r in range(ROWS):
            rot = Signal(16 * L, name=f"a_rot{r}")
            m.d.comb += rot.eq(banks[r ^ par])
            for lane in range(L):
                with m.Switch(ph):
                    with m.Case(PHASE_CODE["q"], PHASE_CODE["sample"], PHASE_CODE["dwconv"],
                                PHASE_CODE["logits"]):
                        m.d.comb += a[r][lane].eq(
                            Mux(mask[r], rot.word_select(lane, 16).as_signed(), 0))
                    with m.Case(PHASE_CODE["offset_proj"]):
                        m.d.comb += a[r][lane].eq(late["g_data"][lane] if r == 0 else 0)
                    with m.Case(PHASE_CODE["kv"]):
                        m.d.comb += a[r][lane].eq(late["keys_data"][r][lane])
                    with m.Case(PHASE_CODE["pv"]):
                        m.d.comb += a[r][lane].eq(Mux(c4.keys_ok[lane],
                                                      late["p_data"][r][lane], 0))
                    with m.Case(PHASE_CODE["proj_out"]):
                        m.d.comb += a[r][lane].eq(late["o_data"][r][lane])

    def _b_tile(self, m: Module, c4: Signal, w4: Signal, b: Signal, late: dict) -> None:
        L, N = self.plan.lanes, self.plan.cols
        ph = c4.tag.phase
        kbase = (c4.tag.index[2] * N) & 3
        for j in range(len(b)):
            with m.Switch(ph):
                with m.Case(PHASE_CODE["dwconv"]):
                    if j < ROWS * L:
                        m.d.comb += b[j].eq(late["dw_data"][j])
                with m.Case(PHASE_CODE["sample"]):
                    if j < ROWS * L:
                        m.d.comb += b[j].eq(w4[j // L])
                with m.Case(PHASE_CODE["logits"]):
                    if j < L * N:
                        lane, n = divmod(j, N)
                        col = Array(late["k_data"][x] for x in range(ROWS))[kbase + n]
                        m.d.comb += b[j].eq(col[lane])
                with m.Case(PHASE_CODE["pv"]):
                    if j < L * N:
                        lane, n = divmod(j, N)
                        m.d.comb += b[j].eq(late["v_data"][lane][n])
                with m.Default():
                    if j < L * N:
                        m.d.comb += b[j].eq(late["w_data"][j])
