"""Arithmetic blocks of the sampling datapath, bit-exact with :mod:`defslice.model.fixed`.

* :class:`CoordUnit` -- steps 2-4: clamp, floor/fraction split, the four exact bilinear
  weights, corner validity against the window, and the bank addresses of the corners;
* :class:`MacUnit` -- steps 5-6 on ``lanes`` channels: ``sum_c v_c * w_c``, round half up
  by ``2f``, times the attention weight;
* :class:`Accumulator` -- steps 7-8: accumulate over (l, p) saturating to ``acc_bits``,
  then round half up by ``out_shift`` and saturate to ``out_bits``.

Banks are numbered ``b = 2 * row_parity + col_parity`` of the pixel position inside its
window. The four corners of a bilinear footprint have four different (row, column)
parities, so they always fall into four different banks and are read in one cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ShapeLike, Signal, Value, ValueLike, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.banks import BANKS
from defslice.hw.params import HwParams, require_params
from defslice.hw.records import COORD_BITS, DESC_FIELD_BITS, WEIGHT_BITS, window_layout

__all__ = ["Accumulator", "CoordUnit", "MacUnit", "delay", "half_lsb", "round_half_up",
           "saturate_to"]

#: Local (window-relative) row/column arithmetic: record coordinates minus window bases.
LOCAL_BITS = COORD_BITS + 2


def half_lsb(shift: int) -> int:
    """What round half up adds before a right shift by ``shift``: half an output LSB, 0
    for no shift (model: :func:`defslice.model.fixedpoint.round_half_up_shift`)."""
    return (1 << shift) >> 1


def round_half_up(value: ValueLike, shift: int) -> Value:
    """``floor(value / 2**shift + 1/2)``: add half an LSB, arithmetic shift (model:
    :func:`defslice.model.fixedpoint.round_half_up_shift`)."""
    if shift == 0:
        return Value.cast(value)
    return (value + half_lsb(shift)) >> shift


def delay(m: Module, sig: Value, cycles: int, name: str) -> Value:
    """``sig`` delayed by ``cycles`` registers (``sig`` itself when ``cycles`` is 0)."""
    for k in range(cycles):
        d = Signal.like(sig, name=f"{name}_d{k}")
        m.d.sync += d.eq(sig)
        sig = d
    return sig


def saturate_to(m: Module, value: ValueLike, bits: int, name: str) -> Signal:
    """Clamp a signed expression into the ``bits``-wide signed range (combinational).

    The value fits when all its bits from ``bits - 1`` up equal the sign bit; that test is
    an AND/OR tree, much shorter than comparing against the range limits.
    """
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = Value.cast(value)
    out = Signal(signed(bits), name=name)
    if len(v) <= bits:
        m.d.comb += out.eq(v)
        return out
    top = v[bits - 1:]
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    m.d.comb += out.eq(Mux(fits, v[:bits], Mux(v[-1], lo, hi)))
    return out


class CoordUnit(wiring.Component):
    """Coordinate unit, five pipeline stages (input; clamp; split; weights and validity;
    bank addresses).

    Members
    -------
    i : In(stream.Signature(...))
        ``x``, ``y``: coordinates, signed 24 bits, Q(coord_frac), pixels of the level;
        ``win``: the level's window (:func:`window_layout`); ``bank_cols``: entries per
        bank row of the level's buffer; ``tag``: carried through unchanged.
    o : Out(stream.Signature(...))
        ``weight[b]``: bilinear weight of the corner in bank ``b`` (unsigned ``2f + 1``
        bits, 0 when the corner is outside the window); ``pixel[b]``: its pixel index in
        the bank, ``(row >> 1) * bank_cols + (col >> 1)`` (0 when outside); ``tag``.
    """

    #: Cycles from ``i`` to ``o`` without back-pressure (its five stages).
    latency = 5

    def __init__(self, p: HwParams, tag_shape: ShapeLike) -> None:
        self.p = require_params(p)
        f = p.coord_frac
        self.tag_shape = tag_shape
        pix_bits = max(1, (max(p.bank_rows[i] * p.bank_cols[i]
                              for i in range(p.num_levels)) - 1).bit_length())
        self.pix_bits = pix_bits
        self.in_layout = data.StructLayout({
            "x": signed(COORD_BITS), "y": signed(COORD_BITS),
            "win": window_layout(), "bank_cols": unsigned(DESC_FIELD_BITS),
            "tag": self.tag_shape,
        })
        self.out_layout = data.StructLayout({
            "weight": data.ArrayLayout(unsigned(2 * f + 1), BANKS),
            "pixel": data.ArrayLayout(unsigned(pix_bits), BANKS),
            "tag": self.tag_shape,
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })
        #: High while any stage holds a point (the pipeline is not empty).
        self.busy = Signal()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        f = p.coord_frac
        one = 1 << f
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        # Stage 0: register the input (it comes from a FIFO RAM and a level mux).
        s0 = Signal(self.in_layout)
        v0 = Signal()
        with m.If(en):
            m.d.sync += [v0.eq(self.i.valid), s0.eq(self.i.payload)]
        # Stage 1: clamp (step 2).
        s1 = Signal(self.in_layout)
        v1 = Signal()
        xc, yc = self._clamp(m, s0)
        with m.If(en):
            m.d.sync += [v1.eq(v0), s1.eq(s0), s1.x.eq(xc), s1.y.eq(yc)]

        # Stage 2: split (step 3), bilinear weights and validity (step 4), bank mapping.
        v2 = Signal()
        w2 = Signal(data.ArrayLayout(unsigned(2 * f + 1), BANKS))
        rh2 = Signal(data.ArrayLayout(signed(LOCAL_BITS), BANKS))
        ch2 = Signal(data.ArrayLayout(signed(LOCAL_BITS), BANKS))
        ok2 = Signal(BANKS)
        cols2 = Signal(unsigned(DESC_FIELD_BITS))
        tag2 = Signal(self.tag_shape)
        # Stage 2a (registered): split and window-relative position.
        fx = Signal(f)
        fy = Signal(f)
        nfx = Signal(f + 1)      # 2^f - fx
        nfy = Signal(f + 1)
        lr = Signal(signed(LOCAL_BITS))
        lc = Signal(signed(LOCAL_BITS))
        s1b = Signal(self.in_layout)
        rows_m1 = Signal(signed(DESC_FIELD_BITS + 1))
        cols_m1 = Signal(signed(DESC_FIELD_BITS + 1))
        v1b = Signal()
        with m.If(en):
            m.d.sync += [
                v1b.eq(v1), s1b.eq(s1),
                fx.eq(s1.x[:f]), fy.eq(s1.y[:f]),
                nfx.eq(one - s1.x[:f]), nfy.eq(one - s1.y[:f]),
                lr.eq((s1.y >> f) - s1.win.row0), lc.eq((s1.x >> f) - s1.win.col0),
            ]
            m.d.sync += [rows_m1.eq(s1.win.rows - 1), cols_m1.eq(s1.win.cols - 1)]
            m.d.sync += [v2.eq(v1b), cols2.eq(s1b.bank_cols), tag2.eq(s1b.tag)]
        # Corner row lr + dy inside [0, rows), for dy = 0 and 1, without the addition.
        rows, cols = s1b.win.rows, s1b.win.cols
        row_in = [(lr >= 0) & (lr < rows), (lr >= -1) & (lr < rows_m1)]
        col_in = [(lc >= 0) & (lc < cols), (lc >= -1) & (lc < cols_m1)]
        for b in range(BANKS):
            ok, wy, wx, r, c = self._corner(m, b, (lr, lc), (fy, nfy, fx, nfx),
                                            (row_in, col_in))
            with m.If(en):
                m.d.sync += [
                    ok2[b].eq(ok),
                    w2[b].eq(wy * wx),
                    rh2[b].eq(r >> 1), ch2[b].eq(c >> 1),
                ]

        m.d.comb += self.busy.eq(v0 | v1 | v1b | v2 | self.o.valid)

        # Stage 3: pixel index inside the bank.
        with m.If(en):
            m.d.sync += [self.o.valid.eq(v2), self.o.payload.tag.eq(tag2)]
            for b in range(BANKS):
                m.d.sync += [
                    self.o.payload.weight[b].eq(Mux(ok2[b], w2[b], 0)),
                    self.o.payload.pixel[b].eq(
                        Mux(ok2[b], rh2[b] * cols2 + ch2[b], 0)),
                ]
        return m


    def _clamp(self, m: Module, s0: data.View) -> tuple[Signal, Signal]:
        """Step 2: ``min(max(c, lo << f), hi << f)`` per axis (``clamp`` policy), else
        the coordinates unchanged."""
        f = self.p.coord_frac
        win = s0.win
        xc = Signal(signed(COORD_BITS))
        yc = Signal(signed(COORD_BITS))
        if not self.p.clamp:
            m.d.comb += [xc.eq(s0.x), yc.eq(s0.y)]
            return xc, yc
        for src, dst, lo, hi in ((s0.x, xc, win.x_lo, win.x_hi),
                                 (s0.y, yc, win.y_lo, win.y_hi)):
            lo_f = Signal(signed(DESC_FIELD_BITS + f + 1))
            hi_f = Signal(signed(DESC_FIELD_BITS + f + 1))
            m.d.comb += [lo_f.eq(lo << f), hi_f.eq(hi << f)]
            with m.If(src < lo_f):
                m.d.comb += dst.eq(lo_f)
            with m.Elif(src > hi_f):
                m.d.comb += dst.eq(hi_f)
            with m.Else():
                m.d.comb += dst.eq(src)
        return xc, yc

    def _corner(self, m: Module, b: int, local: tuple[Value, Value],
                frac: tuple[Value, Value, Value, Value],
                inside: tuple[list[Value], list[Value]]) -> tuple[Signal, ...]:
        """Corner of bank ``b``: its row/column offset (0 or 1) from the parities of the
        window-relative position ``local = (lr, lc)``, validity, the weight factors
        ``frac = (fy, 2^f - fy, fx, 2^f - fx)`` it takes, and its local row and column."""
        f = self.p.coord_frac
        lr, lc = local
        fy, nfy, fx, nfx = frac
        row_in, col_in = inside
        pr, pc = b >> 1, b & 1
        dy = Signal(name=f"dy{b}")
        dx = Signal(name=f"dx{b}")
        r = Signal(signed(LOCAL_BITS), name=f"r{b}")
        c = Signal(signed(LOCAL_BITS), name=f"c{b}")
        ok = Signal(name=f"ok{b}")
        wy = Signal(f + 1, name=f"wy{b}")
        wx = Signal(f + 1, name=f"wx{b}")
        m.d.comb += [
            dy.eq(pr ^ lr[0]), dx.eq(pc ^ lc[0]),
            r.eq(lr + dy), c.eq(lc + dx),
            ok.eq(Mux(dy, row_in[1], row_in[0]) & Mux(dx, col_in[1], col_in[0])),
            wy.eq(Mux(dy, fy, nfy)), wx.eq(Mux(dx, fx, nfx)),
        ]
        return ok, wy, wx, r, c


class MacUnit(wiring.Component):
    """``lanes`` bilinear multiply lanes, four pipeline stages, never stalls.

    Members
    -------
    i : In(stream.Signature(..., always_ready=True))
        ``value[b][k]``: channel ``k`` of the corner in bank ``b`` (signed value_bits);
        ``weight[b]``: its bilinear weight; ``attn``: attention weight (signed 16, Q(
        weight_bits - 2)); ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        ``term[k] = round_half_up(sum_b value[b][k] * weight[b], 2f) * attn`` and ``tag``.
    """

    def __init__(self, p: HwParams, tag_shape: ShapeLike) -> None:
        self.p = require_params(p)
        f = p.coord_frac
        self.tag_shape = tag_shape
        word = data.ArrayLayout(signed(p.value_bits), p.lanes)
        self.sample_bits = p.value_bits + 1
        self.term_bits = self.sample_bits + WEIGHT_BITS
        self.in_layout = data.StructLayout({
            "value": data.ArrayLayout(word, BANKS),
            "weight": data.ArrayLayout(unsigned(2 * f + 1), BANKS),
            "attn": signed(WEIGHT_BITS),
            "tag": self.tag_shape,
        })
        self.out_layout = data.StructLayout({
            "term": data.ArrayLayout(signed(self.term_bits), p.lanes),
            "tag": self.tag_shape,
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout, always_ready=True)),
            "o": Out(stream.Signature(self.out_layout, always_ready=True)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        f = p.coord_frac
        prod_bits = p.value_bits + 2 * f + 2
        # Stage 0: register the inputs (bank RAM outputs feed the multipliers).
        v0 = Signal()
        s0 = Signal(self.in_layout)
        m.d.sync += [v0.eq(self.i.valid), s0.eq(self.i.payload)]
        # Stage 1: 4 x lanes products v * w (w unsigned, so the product keeps v's sign).
        v1 = Signal()
        prod = Signal(data.ArrayLayout(data.ArrayLayout(signed(prod_bits), BANKS), p.lanes))
        attn1 = Signal(signed(WEIGHT_BITS))
        tag1 = Signal(self.tag_shape)
        m.d.sync += [v1.eq(v0), attn1.eq(s0.attn), tag1.eq(s0.tag)]
        for k in range(p.lanes):
            for b in range(BANKS):
                m.d.sync += prod[k][b].eq(s0.value[b][k] * s0.weight[b])
        # Stage 2: exact sum over the corners, round half up by 2f (step 5).
        v2 = Signal()
        sample = Signal(data.ArrayLayout(signed(self.sample_bits), p.lanes))
        attn2 = Signal(signed(WEIGHT_BITS))
        tag2 = Signal(self.tag_shape)
        m.d.sync += [v2.eq(v1), attn2.eq(attn1), tag2.eq(tag1)]
        for k in range(p.lanes):
            total = prod[k][0] + prod[k][1] + prod[k][2] + prod[k][3]
            m.d.sync += sample[k].eq(round_half_up(total, 2 * f))
        # Stage 3: times the attention weight (step 6), exact.
        m.d.sync += [self.o.valid.eq(v2), self.o.payload.tag.eq(tag2)]
        for k in range(p.lanes):
            m.d.sync += self.o.payload.term[k].eq(sample[k] * attn2)
        return m


class Accumulator(wiring.Component):
    """Accumulation over (l, p) and output rounding, one term word per cycle.

    The sums of the ``head_words`` channel groups of the current head live in a shift
    register that advances on every valid term, so group ``g`` always sits at its head
    without any multiplexer.

    Members
    -------
    i_valid, i_term, i_first, i_last, i_qend
        A term word (``lanes`` terms, :class:`MacUnit` output); ``first``: first (l, p) of
        the head (the sum restarts at 0); ``last``: last (l, p) (the result is emitted);
        ``qend``: carried to ``o_qend``.
    o_valid, o_data, o_qend
        Output word: ``lanes`` outputs, ``round_half_up(acc, out_shift)`` saturated to
        ``out_bits`` (step 8), two cycles after the last term.
    """

    LATENCY = 2

    def __init__(self, p: HwParams, term_bits: int) -> None:
        require_params(p)
        if not isinstance(term_bits, int) or term_bits < 1:
            raise ValueError(f"term_bits must be a positive integer, not {term_bits!r}")
        self.p = p
        super().__init__({
            "i_valid": In(1), "i_term": In(data.ArrayLayout(signed(term_bits), p.lanes)),
            "i_first": In(1), "i_last": In(1), "i_qend": In(1),
            "o_valid": Out(1), "o_data": Out(data.ArrayLayout(signed(p.out_bits), p.lanes)),
            "o_qend": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        acc_word = data.ArrayLayout(signed(p.acc_bits), p.lanes)
        sr = [Signal(acc_word, name=f"acc{g}") for g in range(p.head_words)]
        new = Signal(acc_word)
        for k in range(p.lanes):
            base = Mux(self.i_first, 0, sr[0][k])
            m.d.comb += new[k].eq(saturate_to(m, base + self.i_term[k], p.acc_bits,
                                              f"acc_sat{k}"))
        with m.If(self.i_valid):
            m.d.sync += [sr[g].eq(sr[g + 1]) for g in range(p.head_words - 1)]
            m.d.sync += sr[-1].eq(new)
        # Output stage: round and saturate the finished sum one cycle later.
        done = Signal(acc_word)
        done_valid = Signal()
        done_qend = Signal()
        m.d.sync += [done.eq(new), done_valid.eq(self.i_valid & self.i_last),
                     done_qend.eq(self.i_qend), self.o_valid.eq(done_valid),
                     self.o_qend.eq(done_qend)]
        for k in range(p.lanes):
            rounded = saturate_to(m, round_half_up(done[k], p.out_shift), p.out_bits,
                                  f"out_sat{k}")
            m.d.sync += self.o_data[k].eq(rounded)
        return m
