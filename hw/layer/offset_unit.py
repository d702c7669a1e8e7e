"""Offset unit: raw offsets to the clamped key positions for sampling and bias (5a'-6)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.config import LayerNumericsConfig
from defslice.hw.datapath import delay, round_half_up, saturate_to
from defslice.hw.layer.tables import HalfTable
from defslice.model.fixedpoint import LayerTables
from defslice.model.layer_layout import OPEN_HI, OPEN_LO

__all__ = ["OffsetUnit"]

#: Descriptor bound fields are ``i16``.
BOUND_BITS = 16


class OffsetUnit(wiring.Component):
    """One (key, group) per cycle: its two offsets to the sampling and bias positions.

    Model (``docs/numerics.md``): ``factor < 0``: the offset is already pixels in Q(f)
    (step 5a), ``pos = min(max(ref + off, 0), (S - 1) << f)``; ``factor >= 0``: the input is
    ``t`` (5a'), ``off = sat(rnd(TANH(t) SC, thf + scf - f), coord_bits)``,
    ``pos = sat(ref + off, coord_bits)`` (5b). Then (6) ``pos_sample`` = ``pos`` clamped
    to ``[lo << f, hi << f]`` of the window, ``pos_bias`` = ``pos`` clamped to the bias
    bounds, where :data:`OPEN_LO` / :data:`OPEN_HI` mean no bound.

    Arguments
    ---------
    ln : LayerNumericsConfig
    coord_bits, coord_frac : int
    height, width : int
        Map size (``factor < 0`` clamps to it).
    factor_mode : ``"clamp"`` or ``"tanh"``
        ``offset_range_factor < 0`` or ``>= 0``.
    scale : (int, int)
        ``SC_y``, ``SC_x`` in Q(offset_scale_frac) (``tanh`` mode).

    Members
    -------
    i : In(stream.Signature(..., always_ready=True))
        ``off[2]`` (y, x: Q(f) pixels, or ``t`` in Q(t_frac)), ``ref[2]`` (Q(f)), ``win``
        (``y_lo, y_hi, x_lo, x_hi`` of the window), ``bias`` (the bias bounds), ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        ``sample[2]``, ``bias[2]`` (Q(f), y then x), ``tag``.
    """

    def __init__(self, ln: LayerNumericsConfig, coord_bits: int, coord_frac: int,
                 height: int, width: int, factor_mode: str, scale: tuple[int, int] = (0, 0),
                 tag_bits: int = 1) -> None:
        if factor_mode not in ("clamp", "tanh"):
            raise ValueError(f"factor_mode must be 'clamp' or 'tanh', not {factor_mode!r}")
        self.ln, self.cb, self.f = ln, coord_bits, coord_frac
        self.sides, self.mode, self.scale = (height, width), factor_mode, tuple(scale)
        self.in_bits = coord_bits if factor_mode == "clamp" else ln.act_bits
        bounds = data.StructLayout({n: signed(BOUND_BITS)
                                    for n in ("y_lo", "y_hi", "x_lo", "x_hi")})
        pair = data.ArrayLayout(signed(coord_bits), 2)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "off": data.ArrayLayout(signed(self.in_bits), 2), "ref": pair,
                "win": bounds, "bias": bounds, "tag": tag_bits}), always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({
                "sample": pair, "bias": pair, "tag": tag_bits}), always_ready=True)),
        })
        self.latency = self.latency_of(factor_mode)

    @staticmethod
    def latency_of(factor_mode: str) -> int:
        """:attr:`latency` in ``factor_mode``: the bounds' two stages, in ``tanh`` mode
        after the table and the scale product."""
        return 2 if factor_mode == "clamp" else 2 + HalfTable.latency + 1

    def _offsets(self, m: Module) -> tuple:
        """Offsets in Q(f) and the inputs delayed alongside them."""
        ln = self.ln
        if self.mode == "clamp":
            return self.i.payload.off, self.i.payload, self.i.valid
        tb = LayerTables.build(ln)
        lat = HalfTable.latency
        offs = []
        for axis in range(2):
            t = HalfTable("tanh", tb.tanh, ln.act_bits, ln.tanh_frac + 2,
                          sat_frac=ln.tanh_frac)
            m.submodules[f"tanh{axis}"] = t
            m.d.comb += [t.i.valid.eq(self.i.valid), t.i.payload.x.eq(self.i.payload.off[axis])]
            off = Signal(signed(self.cb), name=f"off{axis}")
            prod = t.o.payload.y * self.scale[axis]
            m.d.sync += off.eq(saturate_to(m, round_half_up(prod, ln.tanh_frac
                                                            + ln.offset_scale_frac - self.f),
                                           self.cb, f"off_sat{axis}"))
            offs.append(off)
        return (offs, delay(m, self.i.payload, lat + 1, "in"),
                delay(m, self.i.valid, lat + 1, "in_v"))

    def _clamp(self, m: Module, pos: Signal, lo: Signal, hi: Signal, name: str,
               open_ok: bool) -> Signal:
        f = self.f
        lo_f, hi_f = lo << f, hi << f
        lo_on = lo != OPEN_LO if open_ok else 1
        hi_on = hi != OPEN_HI if open_ok else 1
        out = Signal(signed(self.cb), name=name)
        m.d.comb += out.eq(pos)
        with m.If(lo_on & (pos < lo_f)):
            m.d.comb += out.eq(lo_f)
        with m.Elif(hi_on & (pos > hi_f)):
            m.d.comb += out.eq(hi_f)
        return out

    def elaborate(self, platform: object) -> Module:
        m = Module()
        offs, inp, valid = self._offsets(m)
        # Position (5b).
        pos = [Signal(signed(self.cb), name=f"pos{a}") for a in range(2)]
        s1 = Signal(inp.shape())
        v1 = Signal()
        m.d.sync += [s1.eq(inp), v1.eq(valid)]
        for a in range(2):
            total = inp.ref[a] + offs[a]
            if self.mode == "clamp":
                top = (self.sides[a] - 1) << self.f
                p = Mux(total < 0, 0, Mux(total > top, top, total))
            else:
                p = saturate_to(m, total, self.cb, f"pos_sat{a}")
            m.d.sync += pos[a].eq(p)
        # Window and bias clamps (6).
        for a, (lo, hi) in enumerate((("y_lo", "y_hi"), ("x_lo", "x_hi"))):
            smp = self._clamp(m, pos[a], s1.win[lo], s1.win[hi], f"smp{a}", False)
            bia = self._clamp(m, pos[a], s1.bias[lo], s1.bias[hi], f"bia{a}", True)
            m.d.sync += [self.o.payload.sample[a].eq(smp), self.o.payload.bias[a].eq(bia)]
        m.d.sync += [self.o.valid.eq(v1), self.o.payload.tag.eq(s1.tag)]
        return m
