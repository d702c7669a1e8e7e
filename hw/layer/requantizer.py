"""Requantizer: ``sat(rnd(acc + bias, shift), bits)`` on every result of an array pass."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import round_half_up, saturate_to

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
        # Stage 1: the exact sum of accumulator and bias.
        total = Signal(data.ArrayLayout(signed(self.acc_bits + 1), self.width))
        v1, fmt1, tag1 = Signal(), Signal.like(self.i.payload.fmt), Signal.like(
            self.i.payload.tag)
        m.d.sync += [v1.eq(self.i.valid), fmt1.eq(self.i.payload.fmt),
                     tag1.eq(self.i.payload.tag)]
        for k in range(self.width):
            m.d.sync += total[k].eq(self.i.payload.acc[k] + self.i.payload.bias[k])
        # Stage 2: round and saturate in the selected format.
        m.d.sync += [self.o.valid.eq(v1), self.o.payload.fmt.eq(fmt1),
                     self.o.payload.tag.eq(tag1)]
        for k in range(self.width):
            with m.Switch(fmt1):
                for f, (shift, bits) in enumerate(self.formats):
                    with m.Case(f):
                        val = saturate_to(m, round_half_up(total[k], shift), bits,
                                          f"sat{k}_{f}")
                        m.d.sync += self.o.payload.value[k].eq(val)
        return m
