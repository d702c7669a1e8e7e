"""GELU and tanh of fixed-point activations by half-range tables (steps 4 and 5a')."""

from __future__ import annotations

from typing import Literal

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

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
        x = self.i.payload.x
        neg1, x1, inside1, v1 = Signal(), Signal(signed(self.in_bits)), Signal(), Signal()
        mag1 = Signal(unsigned(self.in_bits))
        tag1 = Signal.like(self.i.payload.tag)
        m.d.sync += [neg1.eq(x < 0), x1.eq(x), mag1.eq(Mux(x < 0, -x, x)),
                     inside1.eq(Mux(x < 0, -x, x) < size), v1.eq(self.i.valid),
                     tag1.eq(self.i.payload.tag)]
        # Stage 2: the table read (synchronous read port).
        neg2, x2, inside2, v2 = Signal(), Signal(signed(self.in_bits)), Signal(), Signal()
        tag2 = Signal.like(self.i.payload.tag)
        m.d.comb += rd.addr.eq(Mux(inside1, mag1, 0))
        m.d.sync += [neg2.eq(neg1), x2.eq(x1), inside2.eq(inside1), v2.eq(v1), tag2.eq(tag1)]
        # Stage 3: the table word combined with the input.
        entry = Mux(inside2, rd.data, 0)
        if self.kind == "gelu":
            y = Mux(neg2, entry, x2 + entry)
        else:
            val = Mux(inside2, rd.data, 1 << self.sat_frac)
            y = Mux(neg2, -val, val)
        m.d.sync += [self.o.valid.eq(v2), self.o.payload.y.eq(y), self.o.payload.tag.eq(tag2)]
        return m
