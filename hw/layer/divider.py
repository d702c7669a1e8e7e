"""Pipelined exact unsigned division ``floor(num / den)``, one division per cycle."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Divider"]


class Divider(wiring.Component):
    """Restoring long division, one quotient bit per stage, fully pipelined.

    The caller guarantees ``num < den * 2**quot_bits`` (the quotient fits), so the long
    division starts from ``num >> quot_bits`` and needs only ``quot_bits`` steps. Model:
    Python's ``num // den`` (softmax step 10e ``floor(2**(ef + rcf) / sum)``, LayerNorm's
    ``/ Cg``).

    Arguments
    ---------
    num_bits, den_bits, quot_bits : int
        Widths of the dividend, the divisor (``den >= 1``) and the quotient.
    steps_per_stage : int
        Quotient bits computed between two registers (1 to ``quot_bits``).
    tag_bits : int
        Width of a tag carried alongside.

    Members
    -------
    i : In(stream.Signature(..., always_ready=True))
        ``num``, ``den``, ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        ``quot``, ``tag``.
    latency : int
        Cycles from ``i`` to ``o``.
    """

    @staticmethod
    def latency_of(quot_bits: int, steps_per_stage: int) -> int:
        """Cycles from ``i`` to ``o`` of a divider with these parameters: one per stage,
        plus the output register."""
        return -(-quot_bits // steps_per_stage) + 1

    def __init__(self, num_bits: int, den_bits: int, quot_bits: int,
                 steps_per_stage: int = 2, tag_bits: int = 1) -> None:
        if min(num_bits, den_bits, quot_bits) < 1:
            raise ValueError("num_bits, den_bits and quot_bits must be >= 1")
        if not 1 <= steps_per_stage <= quot_bits:
            raise ValueError(f"steps_per_stage must be in [1, {quot_bits}], not "
                             f"{steps_per_stage}")
        self.num_bits, self.den_bits, self.quot_bits = num_bits, den_bits, quot_bits
        self.steps_per_stage = steps_per_stage
        self.stages = -(-quot_bits // steps_per_stage)
        self.latency = self.latency_of(quot_bits, steps_per_stage)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "num": unsigned(num_bits), "den": unsigned(den_bits), "tag": tag_bits}),
                always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({
                "quot": unsigned(quot_bits), "tag": tag_bits}), always_ready=True)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        qb, db = self.quot_bits, self.den_bits
        layout = data.StructLayout({
            "rem": unsigned(db + 1), "low": unsigned(qb), "quot": unsigned(qb),
            "den": unsigned(db), "tag": self.i.payload.tag.shape(), "valid": 1})
        # Input register: the remainder starts with the bits above the quotient's.
        cur = Signal(layout, name="div_in")
        num = self.i.payload.num
        m.d.sync += [cur.rem.eq(num >> qb), cur.low.eq(num[:qb] if self.num_bits >= qb
                                                         else num),
                     cur.quot.eq(0), cur.den.eq(self.i.payload.den),
                     cur.tag.eq(self.i.payload.tag), cur.valid.eq(self.i.valid)]
        bit = qb - 1
        for s in range(self.stages):
            rem, quot = cur.rem, cur.quot
            for _ in range(min(self.steps_per_stage, bit + 1)):
                # One subtractor: its borrow is the comparison (two cells would be two
                # carry chains).
                shifted = Signal(db + 1, name=f"div_sh{bit}")
                diff = Signal(signed(db + 2), name=f"div_diff{bit}")
                m.d.comb += [shifted.eq((rem << 1) | cur.low[bit]), diff.eq(shifted - cur.den)]
                take = ~diff[-1]
                rem = Mux(take, diff[:db + 1], shifted)
                quot = quot | (take << bit)
                bit -= 1
            nxt = Signal(layout, name=f"div_s{s}")
            m.d.sync += [nxt.eq(cur), nxt.rem.eq(rem), nxt.quot.eq(quot)]
            cur = nxt
        m.d.comb += [self.o.valid.eq(cur.valid), self.o.payload.quot.eq(cur.quot),
                     self.o.payload.tag.eq(cur.tag)]
        return m
