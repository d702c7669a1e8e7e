"""Softmax unit: logits plus position bias to probabilities, row by row (steps 9c-10f)."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.config import LayerNumericsConfig
from defslice.hw.datapath import round_half_up, saturate_to
from defslice.hw.layer.divider import Divider
from defslice.hw.layer.exp2 import Exp2Unit
from defslice.model.fixedpoint import LayerTables

__all__ = ["Softmax", "SoftmaxFormats"]


@dataclass(frozen=True)
class SoftmaxFormats:
    """The constants of steps 9c-10f, from a :class:`LayerNumericsConfig`."""

    logit_bits: int
    exp_shift: int        # logit_frac + log2e_frac - exp_index_bits
    exp_frac: int
    recip_bits: int       # exp_frac + recip_frac (R = floor(2**recip_bits / sum))
    recip_frac: int
    prob_shift: int       # exp_frac + recip_frac - prob_frac
    prob_frac: int

    @classmethod
    def from_config(cls, ln: LayerNumericsConfig) -> SoftmaxFormats:
        return cls(ln.logit_bits, ln.logit_frac + ln.log2e_frac - ln.exp_index_bits,
                   ln.exp_frac, ln.exp_frac + ln.recip_frac, ln.recip_frac,
                   ln.exp_frac + ln.recip_frac - ln.prob_frac, ln.prob_frac)


class Softmax(wiring.Component):
    """Probabilities of rows of up to ``max_len`` logits, one value per cycle per stage.

    Model (``docs/numerics.md``): ``l = sat(qk + bias, logit_bits)`` (9c); ``m = max l``
    (10a); ``e = exp2(rnd((l - m) L2E, .))`` (10b-c); ``s = sum e`` (10d);
    ``R = floor(2**(ef + rcf) / s)`` (10e); ``p = rnd(e R, ef + rcf - pf)`` (10f).

    Three stages, each with two row buffers, so three rows are in flight: A takes the
    logits and finds the maximum, B forms the exponentials and their sum, C waits for the
    reciprocal and emits the probabilities in the input order.

    Arguments
    ---------
    ln : LayerNumericsConfig
    max_len : int
        Longest row (keys of a slice).
    qk_bits, bias_bits : int
        Signed widths of the content logit ``qk`` and of the position bias.
    div_steps : int
        Quotient bits per divider stage.

    Members
    -------
    i : In(stream.Signature(...))
        ``qk``, ``bias``, ``last`` (the row's last key); ``ready`` low while both row
        buffers of stage A are taken.
    o : Out(stream.Signature(..., always_ready=True))
        ``p`` (unsigned ``prob_frac + 1`` bits), ``last``: the consumer always takes it.
    """

    #: Default quotient bits per stage of the reciprocal's divider.
    DIV_STEPS = 2

    def __init__(self, ln: LayerNumericsConfig, max_len: int, qk_bits: int, bias_bits: int,
                 div_steps: int = DIV_STEPS) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, not {max_len}")
        self.fmt = SoftmaxFormats.from_config(ln)
        self.tables = LayerTables.build(ln)
        self.ln, self.max_len, self.div_steps = ln, max_len, div_steps
        self.qk_bits, self.bias_bits = qk_bits, bias_bits
        self.sum_bits = self.fmt.exp_frac + 1 + max(1, max_len.bit_length())
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "qk": signed(qk_bits), "bias": signed(bias_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "p": unsigned(self.fmt.prob_frac + 1), "last": 1}), always_ready=True)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        f = self.fmt
        depth = 2 * self.max_len
        m.submodules.buf_a = buf_a = memory.Memory(shape=signed(f.logit_bits), depth=depth,
                                                   init=[])
        m.submodules.buf_b = buf_b = memory.Memory(shape=unsigned(f.exp_frac + 1),
                                                   depth=depth, init=[])
        m.submodules.exp2 = exp2 = Exp2Unit(f.logit_bits + 1, self.tables.log2e, f.exp_shift,
                                            self.tables.exp2, f.exp_frac, tag_bits=1)
        m.submodules.div = div = Divider(f.recip_bits + 1, self.sum_bits, f.recip_frac + 1,
                                         self.div_steps, tag_bits=1)
        # full_a[s]: stage A's buffer s holds a finished row for stage B (set by A at the
        # row's last logit, cleared by B after its last read). busy_b[s]: stage B's
        # buffer s is promised to a row (set when B starts the row, cleared by C after
        # its last read), so a short row never overtakes one C has not emitted yet.
        full_a, set_a, clear_a = Signal(2), Signal(2), Signal(2)
        busy_b, set_b, clear_b = Signal(2), Signal(2), Signal(2)
        len_a = [Signal(range(self.max_len + 1), name=f"len_a{k}") for k in range(2)]
        max_a = [Signal(signed(f.logit_bits), name=f"max_a{k}") for k in range(2)]
        len_b = [Signal(range(self.max_len + 1), name=f"len_b{k}") for k in range(2)]
        self._stage_a(m, buf_a, full_a, set_a, len_a, max_a)
        self._stage_b(m, buf_a, buf_b, exp2, div, (full_a, clear_a, len_a, max_a),
                      (busy_b, set_b, len_b))
        self._stage_c(m, buf_b, div, clear_b, len_b)
        m.d.sync += [full_a.eq(full_a & ~clear_a | set_a), busy_b.eq(busy_b & ~clear_b | set_b)]
        return m

    def _stage_a(self, m: Module, buf: memory.Memory, full: Signal, set_full: Signal,
                 length: list, maximum: list) -> None:
        f = self.fmt
        wp = buf.write_port()
        cur = Signal()            # buffer being filled
        k = Signal(range(self.max_len + 1))
        run_max = Signal(signed(f.logit_bits))
        z = saturate_to(m, self.i.payload.qk + self.i.payload.bias, f.logit_bits, "logit")
        m.d.comb += self.i.ready.eq(~full.bit_select(cur, 1))
        fire = self.i.valid & self.i.ready
        m.d.comb += [wp.addr.eq(Mux(cur, self.max_len, 0) + k), wp.data.eq(z), wp.en.eq(fire)]
        new_max = Mux((k == 0) | (z > run_max), z, run_max)
        with m.If(fire):
            m.d.sync += [k.eq(k + 1), run_max.eq(new_max)]
            with m.If(self.i.payload.last):
                m.d.comb += set_full.bit_select(cur, 1).eq(1)
                m.d.sync += [k.eq(0), cur.eq(~cur)]
                for s in range(2):
                    with m.If(cur == s):
                        m.d.sync += [length[s].eq(k + 1), maximum[s].eq(new_max)]

    def _stage_b(self, m: Module, buf_a: memory.Memory, buf_b: memory.Memory,
                 exp2: Exp2Unit, div: Divider, a: tuple, b: tuple) -> None:
        f = self.fmt
        full_a, clear_a, len_a, max_a = a
        busy_b, set_b, len_b = b
        rp = buf_a.read_port()
        wp = buf_b.write_port()
        src = Signal()            # stage A buffer being read
        claim = Signal()          # stage B buffer the next row will write
        dst = Signal()            # stage B buffer the arriving exponentials go to
        active = Signal()
        k = Signal(range(self.max_len + 1))
        n = Signal(range(self.max_len + 1))
        mx = Signal(signed(f.logit_bits))
        # Issue: read l[k]; the next cycle t = l - m goes into the exp2 unit.
        start = ~active & full_a.bit_select(src, 1) & ~busy_b.bit_select(claim, 1)
        issue = Signal()
        m.d.comb += [issue.eq(active & (k < n)),
                     rp.addr.eq(Mux(src, self.max_len, 0) + k)]
        with m.If(start):
            m.d.sync += [active.eq(1), k.eq(0), claim.eq(~claim)]
            m.d.comb += set_b.bit_select(claim, 1).eq(1)
            for s in range(2):
                with m.If(src == s):
                    m.d.sync += [n.eq(len_a[s]), mx.eq(max_a[s])]
        last_issue = issue & (k == n - 1)
        with m.If(issue):
            m.d.sync += k.eq(k + 1)
        with m.If(last_issue):
            m.d.comb += clear_a.bit_select(src, 1).eq(1)
            m.d.sync += [src.eq(~src), active.eq(0)]
        v1, last1 = Signal(), Signal()
        mx1 = Signal.like(mx)
        m.d.sync += [v1.eq(issue), last1.eq(last_issue), mx1.eq(mx)]
        m.d.comb += [exp2.i.valid.eq(v1), exp2.i.payload.t.eq(rp.data - mx1),
                     exp2.i.payload.tag.eq(last1)]
        # Exponentials: stored, summed; after the row's last one, the sum to the divider.
        wk = Signal(range(self.max_len + 1))
        acc = Signal(unsigned(self.sum_bits))
        e = exp2.o.payload.e
        total = acc + e
        m.d.comb += [wp.addr.eq(Mux(dst, self.max_len, 0) + wk), wp.data.eq(e),
                     wp.en.eq(exp2.o.valid)]
        with m.If(exp2.o.valid):
            m.d.sync += [wk.eq(wk + 1), acc.eq(total)]
            with m.If(exp2.o.payload.tag):
                m.d.sync += [wk.eq(0), acc.eq(0), dst.eq(~dst)]
                for s in range(2):
                    with m.If(dst == s):
                        m.d.sync += len_b[s].eq(wk + 1)
        m.d.comb += [div.i.valid.eq(exp2.o.valid & exp2.o.payload.tag),
                     div.i.payload.num.eq(1 << f.recip_bits), div.i.payload.den.eq(total),
                     div.i.payload.tag.eq(dst)]

    def _stage_c(self, m: Module, buf: memory.Memory, div: Divider, clear_b: Signal,
                 len_b: list) -> None:
        f = self.fmt
        rp = buf.read_port()
        recip = [Signal(f.recip_frac + 1, name=f"recip{s}") for s in range(2)]
        have = Signal(2)
        got = Signal(2)
        with m.If(div.o.valid):
            m.d.comb += got.bit_select(div.o.payload.tag, 1).eq(1)
            for s in range(2):
                with m.If(div.o.payload.tag == s):
                    m.d.sync += recip[s].eq(div.o.payload.quot)
        cur = Signal()
        active = Signal()
        k = Signal(range(self.max_len + 1))
        n = Signal(range(self.max_len + 1))
        r = Signal(f.recip_frac + 1)
        used = Signal(2)
        start = ~active & have.bit_select(cur, 1)
        with m.If(start):
            m.d.sync += [active.eq(1), k.eq(0)]
            m.d.comb += used.bit_select(cur, 1).eq(1)
            for s in range(2):
                with m.If(cur == s):
                    m.d.sync += [n.eq(len_b[s]), r.eq(recip[s])]
        m.d.sync += have.eq(have & ~used | got)
        issue = active & (k < n)
        last_issue = issue & (k == n - 1)
        m.d.comb += rp.addr.eq(Mux(cur, self.max_len, 0) + k)
        with m.If(issue):
            m.d.sync += k.eq(k + 1)
        with m.If(last_issue):
            m.d.comb += clear_b.bit_select(cur, 1).eq(1)
            m.d.sync += [cur.eq(~cur), active.eq(0)]
        # Read, multiply by R, round: p two cycles after the read.
        v1, l1, v2, l2 = Signal(), Signal(), Signal(), Signal()
        r1 = Signal.like(r)
        prod = Signal(unsigned(f.exp_frac + 1 + f.recip_frac + 1))
        m.d.sync += [v1.eq(issue), l1.eq(last_issue), r1.eq(r),
                     v2.eq(v1), l2.eq(l1), prod.eq(rp.data * r1)]
        m.d.sync += [self.o.valid.eq(v2), self.o.payload.last.eq(l2),
                     self.o.payload.p.eq(round_half_up(prod, f.prob_shift))]
