"""Base-2 exponential of a non-positive logit difference (softmax steps 10b and 10c)."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import round_half_up

__all__ = ["Exp2Unit"]


class Exp2Unit(wiring.Component):
    """``e = 2**(t log2 e)`` of ``t <= 0``, one per cycle.

    Model (``docs/numerics.md``, steps 10b-10c): ``u = rnd(t L2E, shift)`` in Q(``ub``);
    ``-u = a 2**ub + b``; ``e = rnd(EXP2[b], min(a, ef + 2))``
    (:func:`defslice.model.fixedpoint.exp2_fixed`).

    Arguments
    ---------
    t_bits : int
        Signed width of ``t`` (``logit_bits + 1``).
    log2e : int
        ``L2E`` in Q(``log2e_frac``).
    shift : int
        ``logit_frac + log2e_frac - exp_index_bits``.
    table : int array
        ``EXP2`` (``2**exp_index_bits`` entries).
    exp_frac : int
        ``ef``: the entries' fraction bits; results are unsigned ``ef + 1`` bits.
    tag_bits : int

    Members
    -------
    i : In(stream.Signature(..., always_ready=True))
        ``t``, ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        ``e``, ``tag``.
    latency : int
        4 cycles: product, exponent split and table read, table word, rounding shift.
    """

    latency = 4

    def __init__(self, t_bits: int, log2e: int, shift: int, table: np.ndarray,
                 exp_frac: int, tag_bits: int = 1) -> None:
        entries = [int(v) for v in np.asarray(table).reshape(-1)]
        size = len(entries)
        if size < 1 or size & (size - 1):
            raise ValueError(f"the exp2 table needs a power-of-two size, not {size}")
        if min(entries) < 0 or max(entries) > 1 << exp_frac:
            raise ValueError(f"exp2 entries must lie in [0, 2**{exp_frac}]")
        if shift < 0 or log2e < 1:
            raise ValueError("shift must be >= 0 and log2e >= 1")
        self.t_bits, self.log2e, self.shift, self.exp_frac = t_bits, log2e, shift, exp_frac
        self.entries, self.index_bits = entries, size.bit_length() - 1
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"t": signed(t_bits),
                                                        "tag": tag_bits}),
                                     always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({"e": unsigned(exp_frac + 1),
                                                         "tag": tag_bits}),
                                      always_ready=True)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        ub, ef = self.index_bits, self.exp_frac
        m.submodules.rom = rom = memory.Memory(shape=unsigned(ef + 1), depth=len(self.entries),
                                               init=self.entries)
        rd = rom.read_port()
        prod_bits = self.t_bits + self.log2e.bit_length() + 1
        # Stage 1: t L2E (one DSP).
        prod = Signal(signed(prod_bits))
        v1, tag1 = Signal(), Signal.like(self.i.payload.tag)
        m.d.sync += [prod.eq(self.i.payload.t * self.log2e), v1.eq(self.i.valid),
                     tag1.eq(self.i.payload.tag)]
        # Stage 2: u <= 0 and its split; the table is read at b.
        neg = Signal(unsigned(prod_bits))
        m.d.comb += neg.eq(-round_half_up(prod, self.shift))
        cap = ef + 2
        a2 = Signal(range(cap + 1))
        v2, tag2 = Signal(), Signal.like(tag1)
        big = (neg >> ub) >= cap
        m.d.sync += [a2.eq(Mux(big, cap, neg >> ub)), v2.eq(v1), tag2.eq(tag1)]
        m.d.comb += rd.addr.eq(neg[:ub] if ub else 0)
        # Stage 3: the table word registered (the block RAM's output is slow), with the
        # shift and its half.
        x3 = Signal(unsigned(ef + 1))
        a3, half3 = Signal.like(a2), Signal(unsigned(ef + 4))
        v3, tag3 = Signal(), Signal.like(tag2)
        m.d.sync += [x3.eq(rd.data), a3.eq(a2), half3.eq((Const(1, ef + 4) << a2) >> 1),
                     v3.eq(v2), tag3.eq(tag2)]
        # Stage 4: e = rnd(EXP2[b], a).
        m.d.sync += [self.o.valid.eq(v3), self.o.payload.e.eq((x3 + half3) >> a3),
                     self.o.payload.tag.eq(tag3)]
        return m
