"""GELU and tanh of fixed-point activations by half-range tables (steps 4 and 5a')."""

from __future__ import annotations

from typing import Literal

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import delay

__all__ = ["HalfTable"]


class HalfTable(wiring.Component):
    """One activation per cycle through a table of half the input range.

    * ``kind="gelu"`` (step 4, :func:`defslice.model.fixedpoint.gelu_fixed`): the table
      holds ``GELU(-i)``; ``n >= 0`` gives ``n + T[n]``, ``n < 0`` gives ``T[-n]``, an
      index past the table reads 0.
    * ``kind="tanh"`` (step 5a', :func:`defslice.model.fixedpoint.tanh_fixed`): the table
      holds ``tanh(i)``; the result is ``sign(t) * T[|t|]``, ``2**sat_frac`` past the table.

    Arguments
    ---------
    kind : ``"gelu"`` or ``"tanh"``
    table : int array
        The entries, as the model builds them (``LayerTables``).
    in_bits, out_bits : int
        Signed widths of the input and the output.
    sat_frac : int
        ``tanh`` only: fraction bits of the output (the value past the table is 1.0).
    tag_bits : int

    Members
    -------
    i : In(stream.Signature(..., always_ready=True))
        ``x`` (signed ``in_bits``), ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        ``y`` (signed ``out_bits``), ``tag``.
    latency : int
        3 cycles: magnitude and range, table read, then combine.
    """

    latency = 3

    def __init__(self, kind: Literal["gelu", "tanh"], table: np.ndarray, in_bits: int,
                 out_bits: int, sat_frac: int = 0, tag_bits: int = 1) -> None:
        if kind not in ("gelu", "tanh"):
            raise ValueError(f"kind must be 'gelu' or 'tanh', not {kind!r}")
        entries = [int(v) for v in np.asarray(table).reshape(-1)]
        if not entries:
            raise ValueError("the table is empty")
        lo, hi = min(entries), max(entries)
        if kind == "tanh" and (lo < 0 or hi >= 1 << sat_frac):
            raise ValueError(f"tanh entries must lie in [0, 2**{sat_frac})")
        self.kind, self.entries = kind, entries
        self.in_bits, self.out_bits, self.sat_frac = in_bits, out_bits, sat_frac
        self.entry_shape = signed(max(lo.bit_length(), hi.bit_length(), 1) + 1)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"x": signed(in_bits),
                                                        "tag": tag_bits}),
                                     always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({"y": signed(out_bits),
                                                         "tag": tag_bits}),
                                      always_ready=True)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        size = len(self.entries)
        m.submodules.rom = rom = memory.Memory(shape=self.entry_shape, depth=size,
                                               init=self.entries)
        rd = rom.read_port()
        # Stage 1: sign, magnitude, whether it is inside the table, registered.
        x, tag = self.i.payload.x, self.i.payload.tag
        neg, mag = Signal(), Signal(unsigned(self.in_bits))
        mag1, inside1 = Signal(unsigned(self.in_bits)), Signal()
        m.d.comb += [neg.eq(x < 0), mag.eq(Mux(neg, -x, x))]
        m.d.sync += [mag1.eq(mag), inside1.eq(mag < size)]
        # Stage 2: the table read (synchronous read port).
        m.d.comb += rd.addr.eq(Mux(inside1, mag1, 0))
        # Stage 3: the table word combined with the input, delayed alongside.
        neg3, x3 = delay(m, neg, 2, "neg"), delay(m, x, 2, "x")
        inside3 = delay(m, inside1, 1, "inside")
        entry = Mux(inside3, rd.data, 0)
        if self.kind == "gelu":
            y = Mux(neg3, entry, x3 + entry)
        else:
            val = Mux(inside3, rd.data, 1 << self.sat_frac)
            y = Mux(neg3, -val, val)
        m.d.sync += [self.o.valid.eq(delay(m, self.i.valid, 2, "valid")),
                     self.o.payload.y.eq(y), self.o.payload.tag.eq(delay(m, tag, 2, "tag"))]
        return m
