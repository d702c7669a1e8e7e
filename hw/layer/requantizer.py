"""Requantizer: ``sat(rnd(acc + bias, shift), bits)`` on every result of an array pass."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import half_lsb

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """Bias, round half up and saturate ``width`` accumulator values per cycle.

    Model: ``saturate(round_half_up_shift(acc + bias, shift), bits)``
    (:mod:`defslice.model.fixedpoint`), the bias already in the accumulator's format.

    Arguments
    ---------
    width : int
        Values per cycle.
    acc_bits : int
        Signed width of the accumulator values and of the biases.
    formats : sequence of (shift, bits)
        The output formats, selected per cycle by ``fmt``: right shift (>= 0) and signed
        output width.
    tag_bits : int
        Width of a tag carried to the output.

    Members
    -------
    i : In(stream.Signature(..., always_ready=True))
        ``acc[width]``, ``bias[width]``, ``fmt``, ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        ``value[width]`` (signed, the widest format's bits), ``fmt``, ``tag``.
    latency : int
        Cycles from ``i`` to ``o`` (2).
    """

    latency = 2

    def __init__(self, width: int, acc_bits: int, formats: Sequence[tuple[int, int]],
                 tag_bits: int = 1) -> None:
        formats = tuple((int(s), int(b)) for s, b in formats)
        if width < 1:
            raise ValueError(f"width must be >= 1, not {width}")
        if not formats:
            raise ValueError("at least one output format is needed")
        for shift, bits in formats:
            if shift < 0 or not 2 <= bits <= acc_bits:
                raise ValueError(f"format (shift {shift}, bits {bits}) must have a shift >= "
                                 f"0 and 2 <= bits <= acc_bits ({acc_bits})")
        self.width, self.acc_bits, self.formats, self.tag_bits = width, acc_bits, formats, \
            tag_bits
        self.out_bits = max(b for _, b in formats)
        #: Low bits of the sum dropped before rounding: below half an LSB of the smallest
        #: shift, they never reach an output.
        self.base = max(0, min(shift for shift, _ in formats) - 1)
        fmt_bits = max(1, (len(formats) - 1).bit_length())
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "acc": data.ArrayLayout(signed(acc_bits), width),
                "bias": data.ArrayLayout(signed(acc_bits), width),
                "fmt": fmt_bits, "tag": tag_bits}), always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({
                "value": data.ArrayLayout(signed(self.out_bits), width),
                "fmt": fmt_bits, "tag": tag_bits}), always_ready=True)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        fmts, base = self.formats, self.base
        width = self.acc_bits + 2 - base
        # Stage 1: the exact sum of accumulator and bias; the format, one-hot.
        total = Signal(data.ArrayLayout(signed(width - 1), self.width))
        sel = Signal(len(fmts))
        v1, fmt1, tag1 = Signal(), Signal.like(self.i.payload.fmt), Signal.like(
            self.i.payload.tag)
        m.d.sync += [v1.eq(self.i.valid), fmt1.eq(self.i.payload.fmt),
                     tag1.eq(self.i.payload.tag)]
        m.d.sync += [sel[f].eq(self.i.payload.fmt == f) for f in range(len(fmts))]
        for k in range(self.width):
            m.d.sync += total[k].eq((self.i.payload.acc[k] + self.i.payload.bias[k]) >> base)
        # The rounding constant of the format (half an LSB of its shift), registered.
        half = Signal(width)
        with m.Switch(self.i.payload.fmt):
            for f, (shift, _) in enumerate(fmts):
                with m.Case(f):
                    m.d.sync += half.eq(half_lsb(shift) >> base)
        # Stage 2: one rounding adder for every format, then each output bit picks its
        # format's bit (the formats share the range tests and the selection).
        m.d.sync += [self.o.valid.eq(v1), self.o.payload.fmt.eq(fmt1),
                     self.o.payload.tag.eq(tag1)]
        cache: dict = {}

        def any_of(formats: frozenset) -> Signal:
            """1 when the selected format is one of ``formats`` (built once per set)."""
            if formats not in cache:
                cache[formats] = Signal(name=f"sel_{'_'.join(map(str, sorted(formats)))}")
                m.d.comb += cache[formats].eq(
                    Cat(*(sel[f] for f in sorted(formats))).any())
            return cache[formats]

        for k in range(self.width):
            t = Signal(signed(width), name=f"rounded{k}")
            m.d.comb += t.eq(total[k] + half)
            m.d.sync += self.o.payload.value[k].eq(self._select(m, t, sel, any_of, k))
        return m

    def _select(self, m: Module, t: Signal, sel: Signal, any_of: object, k: int) -> Value:
        """The selected format's ``sat(t >> (shift - base), bits)`` from ``t``, the rounded
        sum without its ``base`` low bits."""
        fmts, base = self.formats, self.base
        sign = t[-1]
        # fits[f]: every bit of t from the format's sign bit up equals the sign. The tests
        # share their bits: one run of equal bits from the top, cut at each start.
        start_of = [min(s + b - 1 - base, len(t) - 1) for s, b in fmts]
        zeros, ones, same = Const(1), Const(1), {}
        top = len(t)
        for start in sorted(set(start_of), reverse=True):
            z, o = Signal(name=f"zeros{k}_{start}"), Signal(name=f"ones{k}_{start}")
            m.d.comb += [z.eq(zeros & (t[start:top] == 0)), o.eq(ones & t[start:top].all())]
            zeros, ones, top = z, o, start
            same[start] = zeros | ones
        fits = Signal(name=f"fits{k}")
        m.d.comb += fits.eq(Cat(*(sel[f] & same[start_of[f]]
                                  for f in range(len(fmts)))).any())
        bits = []
        for j in range(self.out_bits):
            # Below its sign bit a format takes t's bit (or the saturation bit, ~sign);
            # from its sign bit up the result is the sign.
            live = [f for f, (_, b) in enumerate(fmts) if j < b - 1]
            if not live:
                bits.append(sign)
                continue
            picks = []
            for shift in sorted({fmts[f][0] for f in live}):
                group = frozenset(f for f in live if fmts[f][0] == shift)
                picks.append(any_of(group) & t[min(shift - base + j, len(t) - 1)])
            data_bit = Mux(fits, Cat(*picks).any(), ~sign)
            bits.append(Mux(any_of(frozenset(live)), data_bit, sign))
        return Cat(*bits).as_signed()
