"""LayerNorm and GELU of the offset network, one row of ``Cg`` channels at a time (3a-4)."""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.config import LayerNumericsConfig
from defslice.hw.datapath import round_half_up, saturate_to
from defslice.hw.layer.divider import Divider
from defslice.hw.layer.tables import HalfTable
from defslice.model.fixedpoint import LayerTables

__all__ = ["LayerNormUnit"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _sum_bits(ln: LayerNumericsConfig, channels: int) -> tuple[int, int]:
    """Widths of a row's sum ``S1`` and of its sum of squares ``sum d^2``."""
    a = ln.act_bits
    return a + _bits(channels) + 1, 2 * (a + 1) + _bits(channels) + 1


class LayerNormUnit(wiring.Component):
    """Steps 3a-4 of ``docs/numerics.md`` on rows of ``Cg`` offset-conv outputs ``h``.

    Model: ``mean = floor((2 S1 + Cg) / (2 Cg))``, ``d = h - mean``,
    ``var = floor(sum d^2 / Cg)``, ``V = max(var + eps_q, 1)``, ``(i, E)`` by
    :func:`~defslice.model.fixedpoint.rsqrt_normalize`,
    ``z = sat(rnd(d RSQ[i], R + E/2 - zf), act)``,
    ``n = sat(rnd(z gamma + beta, zf + gf - nf), act)``, ``g = GELU(n)``.

    A row comes in as ``Cg / width`` words (two row buffers, so the next row arrives while
    this one is processed); the unit reads it twice, one channel per cycle (``d^2``, then
    the normalisation), and emits ``g`` one channel per cycle. Divisions by ``Cg`` are
    shifts when ``Cg`` is a power of two, else one pipelined divider.

    Arguments
    ---------
    ln : LayerNumericsConfig
    channels : int
        ``Cg``.
    width : int
        Values per input word (``hw.lanes``), dividing ``Cg``.
    eps_q : int
        ``max(rhu(eps 2^(2 hf)), 0)`` (host step H4).

    Members
    -------
    params_w : In(stream.Signature(..., always_ready=True))
        Writes channel ``c``'s ``gamma`` (Q(norm_frac)) when ``set_gamma``, its ``beta``
        (accumulator format) when ``set_beta``.
    i : In(stream.Signature(...))
        ``h[width]`` of one row, channel order; ``ready`` low while both buffers are full.
    o : Out(stream.Signature(..., always_ready=True))
        ``g`` and ``last`` (the row's last channel).
    """

    #: Cycles from a channel's read to its ``d = h - mean``: the memory word, then the
    #: channel taken from it and the mean subtracted.
    READ_LATENCY = 2
    #: Cycles from ``d`` to ``d^2`` in the sum of squares.
    SQUARE_LATENCY = 1
    #: Cycles from the variance to ``RSQ[i]``: ``V``, its bit length, the table index, the
    #: table read.
    RSQRT_LATENCY = 4
    #: Cycles from ``d`` to ``g``: ``d RSQ``, plus half, ``z``, ``z gamma``, plus
    #: ``beta``, ``n``, then the GELU table.
    NORM_LATENCY = 6 + HalfTable.latency
    #: Cycles of state changes per row outside the above (waiting for the row, the mean).
    CONTROL_CYCLES = 1

    def __init__(self, ln: LayerNumericsConfig, channels: int, width: int,
                 eps_q: int) -> None:
        if width < 1 or channels % width:
            raise ValueError(f"width ({width}) must divide the channels ({channels})")
        if eps_q < 0:
            raise ValueError(f"eps_q must be >= 0, not {eps_q}")
        self.ln, self.cg, self.width, self.eps_q = ln, channels, width, eps_q
        self.tables = LayerTables.build(ln)
        a = ln.act_bits
        self.log_cg = channels.bit_length() - 1
        self.s1_bits, self.sq_bits = _sum_bits(ln, channels)
        super().__init__({
            "params_w": In(stream.Signature(self.params_layout(ln, channels),
                                            always_ready=True)),
            "i": In(stream.Signature(data.StructLayout({
                "h": data.ArrayLayout(signed(a), width)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "g": signed(a), "last": 1}), always_ready=True)),
        })

    @staticmethod
    def params_layout(ln: LayerNumericsConfig, channels: int) -> data.StructLayout:
        """Payload of :attr:`params_w`."""
        return data.StructLayout({"c": range(channels), "gamma": signed(ln.weight_bits),
                                  "beta": signed(ln.acc_bits), "set_gamma": 1,
                                  "set_beta": 1})

    # -- input: two row buffers ----------------------------------------------------------
    def _input(self, m: Module, full: Signal, set_full: Signal, s1: list) -> memory.ReadPort:
        words = self.cg // self.width
        m.submodules.hbuf = hbuf = memory.Memory(shape=self.i.payload.h.shape(),
                                                 depth=2 * words, init=[])
        wp = hbuf.write_port()
        cur = Signal()
        k = Signal(range(words))
        acc = Signal(signed(self.s1_bits))
        m.d.comb += self.i.ready.eq(~full.bit_select(cur, 1))
        fire = self.i.valid & self.i.ready
        word_sum = sum(self.i.payload.h[j] for j in range(self.width))
        total = acc + word_sum
        m.d.comb += [wp.addr.eq(Mux(cur, words, 0) + k), wp.data.eq(self.i.payload.h),
                     wp.en.eq(fire)]
        with m.If(fire):
            m.d.sync += [k.eq(k + 1), acc.eq(total)]
            with m.If(k == words - 1):
                m.d.sync += [k.eq(0), acc.eq(0), cur.eq(~cur)]
                m.d.comb += set_full.bit_select(cur, 1).eq(1)
                for s in range(2):
                    with m.If(cur == s):
                        m.d.sync += s1[s].eq(total)
        return hbuf.read_port()

    #: Quotient bits per stage of the dividers (a ``Cg`` that is not a power of two).
    DIV_STEPS = 3

    @staticmethod
    def _divider_shape(channels: int, num_bits: int, den_log: int) -> tuple | None:
        """``(num_bits, den_bits, quot_bits)`` of the divider by ``Cg << den_log`` of a
        ``num_bits`` dividend; None for a power-of-two ``Cg`` (a shift)."""
        log_cg = channels.bit_length() - 1
        if channels == 1 << log_cg:
            return None
        return num_bits, _bits(channels << den_log) + 1, num_bits - log_cg

    @classmethod
    def _divider(cls, channels: int, num_bits: int, den_log: int) -> Divider | None:
        """The divider of :meth:`_divider_shape`; None for a power-of-two ``Cg``."""
        shape = cls._divider_shape(channels, num_bits, den_log)
        return None if shape is None else Divider(*shape, steps_per_stage=cls.DIV_STEPS)

    @classmethod
    def row_latency(cls, ln: LayerNumericsConfig, channels: int) -> int:
        """Cycles a row of ``Cg = channels`` takes beyond its ``2 Cg`` channel reads, from
        its last input word to its last ``g`` (the cycle model's LayerNorm latency): the
        state changes, the mean and variance divisions, both passes' read latency, the
        square, 1/sqrt and the normalise pipeline."""
        s1_bits, sq_bits = _sum_bits(ln, channels)
        lat = cls.CONTROL_CYCLES + 2 * cls.READ_LATENCY + cls.SQUARE_LATENCY \
            + cls.RSQRT_LATENCY + cls.NORM_LATENCY
        for num_bits, den_log in ((s1_bits + 2, 1), (sq_bits, 0)):
            shape = cls._divider_shape(channels, num_bits, den_log)
            lat += 1 if shape is None else Divider.latency_of(shape[2], cls.DIV_STEPS)
        return lat

    def _divide(self, m: Module, num: Signal, den_log: int) -> tuple:
        """``floor(num / (Cg << den_log))`` of a non-negative ``num``: a shift for a
        power-of-two ``Cg`` (result the next cycle), else the divider. Returns
        ``(start, quotient, done)``: pulse ``start`` with ``num`` valid, ``done`` pulses
        with ``quotient``."""
        start, done = Signal(name=f"div{den_log}_start"), Signal(name=f"div{den_log}_done")
        quot = Signal(len(num), name=f"div{den_log}_q")
        div = self._divider(self.cg, len(num), den_log)
        if div is None:
            m.d.sync += [quot.eq(num >> (self.log_cg + den_log)), done.eq(start)]
            return start, quot, done
        m.submodules[f"div{den_log}"] = div
        m.d.comb += [div.i.valid.eq(start), div.i.payload.num.eq(num),
                     div.i.payload.den.eq(self.cg << den_log),
                     quot.eq(div.o.payload.quot), done.eq(div.o.valid)]
        return start, quot, done

    def elaborate(self, platform: object) -> Module:
        m = Module()
        full, set_full, clear_full = Signal(2), Signal(2), Signal(2)
        s1 = [Signal(signed(self.s1_bits), name=f"s1_{k}") for k in range(2)]
        rp = self._input(m, full, set_full, s1)
        m.d.sync += full.eq(full & ~clear_full | set_full)
        self._process(m, rp, full, clear_full, s1)
        return m

    def _mean(self, m: Module, s1: Signal) -> tuple:
        """Step 3a: ``floor((2 S1 + Cg) / (2 Cg))`` with the sign handled around an
        unsigned division: ``-ceil(-n / D) = -floor((-n + D - 1) / D)``."""
        num = 2 * s1 + self.cg
        neg = Signal()
        mag = Signal(unsigned(self.s1_bits + 2))
        m.d.comb += [neg.eq(num < 0),
                     mag.eq(Mux(num < 0, -num + 2 * self.cg - 1, num))]
        start, quot, done = self._divide(m, mag, 1)
        neg_d = Signal()
        with m.If(start):
            m.d.sync += neg_d.eq(neg)
        mean = Signal(signed(self.s1_bits), name="mean_val")
        m.d.comb += mean.eq(Mux(neg_d, -quot, quot))
        return start, mean, done

    def _process(self, m: Module, rp: memory.ReadPort, full: Signal, clear_full: Signal,
                 s1: list) -> None:
        ln, cg, width = self.ln, self.cg, self.width
        a = ln.act_bits
        words = cg // width
        src = Signal()
        c = Signal(range(cg + 1))          # channel being read
        mean = Signal(signed(a + 1))
        sq = Signal(unsigned(self.sq_bits))
        mean_start, mean_q, mean_done = self._mean(m, Array(s1)[src])
        var_num = Signal(unsigned(self.sq_bits))
        var_start, var_q, var_done = self._divide(m, var_num, 0)
        # Reads: channel c of buffer src; the word arrives the next cycle.
        m.d.comb += rp.addr.eq(Mux(src, words, 0) + c // width)
        # The memory word arrives the cycle after the read; ``d = h - mean`` of its channel
        # is registered one cycle later, ``d^2`` one more.
        lane = Signal(range(width))
        issue, rvalid, last_read = Signal(), Signal(), Signal()
        m.d.sync += [lane.eq(c % width), rvalid.eq(issue), last_read.eq(issue & (c == cg - 1))]
        d = Signal(signed(a + 2), name="ln_d")
        hvalid, hlast = Signal(), Signal()
        m.d.sync += [d.eq(Array(rp.data[j] for j in range(width))[lane] - mean),
                     hvalid.eq(rvalid), hlast.eq(rvalid & last_read)]
        dd = Signal(unsigned(2 * (a + 2)), name="ln_dd")
        ddvalid, ddlast = Signal(), Signal()
        m.d.sync += [dd.eq(d * d), ddvalid.eq(hvalid), ddlast.eq(hlast)]
        rsq = self._rsqrt(m, var_q)
        norm_valid = Signal()
        with m.FSM(name="ln"):
            with m.State("IDLE"):
                with m.If(full.bit_select(src, 1)):
                    m.d.comb += mean_start.eq(1)
                    m.next = "MEAN"
            with m.State("MEAN"):
                with m.If(mean_done):
                    m.d.sync += [mean.eq(mean_q), c.eq(0), sq.eq(0)]
                    m.next = "SQUARES"
            with m.State("SQUARES"):
                self._read(m, c, issue)
                with m.If(ddvalid):
                    m.d.sync += sq.eq(sq + dd)
                with m.If(ddlast):
                    m.d.comb += [var_num.eq(sq + dd), var_start.eq(1)]
                    m.next = "VARIANCE"
            with m.State("VARIANCE"):
                with m.If(var_done):
                    m.d.sync += c.eq(0)
                    m.next = "RSQRT"
            with m.State("RSQRT"):
                with m.If(rsq["ready"]):
                    m.next = "NORMALISE"
            with m.State("NORMALISE"):
                self._read(m, c, issue)
                m.d.comb += norm_valid.eq(hvalid)
                with m.If(hlast):
                    m.d.comb += clear_full.bit_select(src, 1).eq(1)
                    m.d.sync += src.eq(~src)
                    m.next = "IDLE"
        m.d.comb += rsq["start"].eq(var_done)
        self._normalise(m, d, norm_valid, hlast, rsq)

    def _read(self, m: Module, c: Signal, issue: Signal) -> None:
        """Inside an FSM state: issue channel reads ``c = 0 .. Cg - 1``, one per cycle."""
        with m.If(c < self.cg):
            m.d.comb += issue.eq(1)
            m.d.sync += c.eq(c + 1)

    def _rsqrt(self, m: Module, var: Signal) -> dict:
        """Step 3c: ``V = max(var + eps, 1)``, its even bit length ``E`` (with the shifts
        it implies), the table index, ``RSQ[i]``: each registered, four cycles after
        ``start``."""
        ln = self.ln
        tb = self.tables.rsqrt
        T = ln.rsqrt_index_bits
        start, ready = Signal(name="rsq_start"), Signal(name="rsq_ready")
        v = Signal(unsigned(self.sq_bits + 1), name="rsq_v")
        with m.If(start):
            m.d.sync += v.eq(Mux(var + self.eps_q > 0, var + self.eps_q, 1))
        # E = the bit length rounded up to even = 2 (j + 1) for the highest non-zero bit
        # pair j of V (V >= 1): a one-hot of that pair (OR trees, no priority chain)
        # selects E and the index shifts as constants.
        pairs = (len(v) + 1) // 2
        nz = Signal(pairs, name="rsq_pairs")
        m.d.comb += nz.eq(Cat(v[2 * j:2 * j + 2].any() for j in range(pairs)))
        e = Signal(range(self.sq_bits + 3), name="rsq_e")
        idx = Signal(unsigned(T), name="rsq_index")
        ev = Signal(range(self.sq_bits + 3), name="rsq_ev")
        down = Signal(range(self.sq_bits + 3), name="rsq_down")
        up = Signal(range(T + 1), name="rsq_up")
        down_c, up_c = Signal.like(down), Signal.like(up)
        terms = []
        for j in range(pairs):
            hot = nz[j] & ~(nz >> (j + 1)).any() if j + 1 < pairs else nz[j]
            ej = 2 * (j + 1)
            terms.append((Mux(hot, ej, 0), Mux(hot, max(ej - T, 0), 0),
                          Mux(hot, max(T - ej, 0), 0)))
        for sig, k in ((ev, 0), (down_c, 1), (up_c, 2)):
            m.d.comb += sig.eq(reduce(operator.or_, (t[k] for t in terms)))
        m.submodules.rsq_rom = rom = memory.Memory(shape=unsigned(ln.rsqrt_frac + 1),
                                                   depth=len(tb), init=[int(x) for x in tb])
        rd = rom.read_port()
        s1, s2, s3, s4 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [s1.eq(start), s2.eq(s1), s3.eq(s2), s4.eq(s3)]
        with m.If(s1):
            m.d.sync += [e.eq(ev), down.eq(down_c), up.eq(up_c)]
        with m.If(s2):
            m.d.sync += idx.eq((v >> down) << up)
        m.d.comb += rd.addr.eq(idx - (1 << (T - 2)))
        m.d.comb += ready.eq(s4)
        # RSQ[i] registered off the table (it holds for the row; the first product needs
        # it three cycles after ready).
        rsq = Signal.like(rd.data, name="rsq_value")
        m.d.sync += rsq.eq(rd.data)
        return {"start": start, "ready": ready, "e": e, "rsq": rsq}

    def _normalise(self, m: Module, d: Signal, valid: Signal, last: Signal,
                   rsq: dict) -> None:
        """Steps 3d-4: ``z``, ``n``, ``GELU``, one channel per cycle."""
        ln = self.ln
        a = ln.act_bits
        gammas = memory.Memory(shape=signed(ln.weight_bits), depth=self.cg, init=[])
        betas = memory.Memory(shape=signed(ln.acc_bits), depth=self.cg, init=[])
        m.submodules.gammas, m.submodules.betas = gammas, betas
        pw = self.params_w
        for mem, value, enable in ((gammas, pw.payload.gamma, pw.payload.set_gamma),
                                   (betas, pw.payload.beta, pw.payload.set_beta)):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(pw.payload.c), wp.data.eq(value),
                         wp.en.eq(pw.valid & enable)]
        pr_gamma, pr_beta = gammas.read_port(), betas.read_port()
        vl = [(valid, last)]

        def stage() -> tuple[Signal, Signal]:
            """The valid and last bits one register further."""
            v, lst = Signal(name=f"ln_v{len(vl)}"), Signal(name=f"ln_l{len(vl)}")
            m.d.sync += [v.eq(vl[-1][0]), lst.eq(vl[-1][1])]
            vl.append((v, lst))
            return v, lst

        # z = sat(rnd(d RSQ, R + E/2 - zf)): the product, the half added, the shift and
        # saturation, each in its own cycle; the shift and the half are set once per row.
        zshift = Signal(range(ln.rsqrt_frac + self.sq_bits), name="ln_zshift")
        half = Signal(unsigned(ln.rsqrt_frac + self.sq_bits), name="ln_zhalf")
        zs = Signal.like(zshift, name="ln_zshift_row")
        m.d.comb += zs.eq(ln.rsqrt_frac + (rsq["e"] >> 1) - ln.z_frac)
        m.d.sync += [zshift.eq(zs), half.eq((Const(1, 1) << zs) >> 1)]
        prod = Signal(signed(a + 2 + ln.rsqrt_frac + 2))
        m.d.sync += prod.eq(d * rsq["rsq"])
        v1, l1 = stage()
        zsum = Signal(signed(len(prod) + 1), name="ln_zsum")
        m.d.sync += zsum.eq(prod + half)
        stage()
        z3 = Signal(signed(a), name="ln_z3")
        m.d.sync += z3.eq(saturate_to(m, zsum >> zshift, a, "ln_z"))
        stage()
        # n = sat(rnd(z gamma + beta, zf + gf - nf)): the product, the sum, the rounding
        # and saturation (n registered before the table's magnitude and address).
        ch = Signal(range(self.cg + 1))
        with m.If(v1):
            m.d.sync += ch.eq(Mux(l1, 0, ch + 1))
        m.d.comb += [pr_gamma.addr.eq(ch), pr_beta.addr.eq(ch)]
        gamma, beta = Signal(signed(ln.weight_bits)), Signal(signed(ln.acc_bits))
        beta5 = Signal(signed(ln.acc_bits), name="ln_beta5")
        m.d.sync += [gamma.eq(pr_gamma.data), beta.eq(pr_beta.data), beta5.eq(beta)]
        zg = Signal(signed(a + ln.weight_bits), name="ln_zg")
        m.d.sync += zg.eq(z3 * gamma)
        stage()
        nprod = Signal(signed(ln.acc_bits + 1))
        m.d.sync += nprod.eq(zg + beta5)
        stage()
        n6 = Signal(signed(a), name="ln_n6")
        m.d.sync += n6.eq(saturate_to(m, round_half_up(nprod, ln.z_frac + ln.norm_frac
                                                       - ln.n_frac), a, "ln_n"))
        v6, l6 = stage()
        assert len(vl) - 1 + HalfTable.latency == self.NORM_LATENCY
        m.submodules.gelu = gelu = HalfTable("gelu", self.tables.gelu, a, a, tag_bits=1)
        m.d.comb += [gelu.i.valid.eq(v6), gelu.i.payload.x.eq(n6), gelu.i.payload.tag.eq(l6),
                     self.o.valid.eq(gelu.o.valid), self.o.payload.g.eq(gelu.o.payload.y),
                     self.o.payload.last.eq(gelu.o.payload.tag)]
