"""AXI4-Lite slave holding the registers of :mod:`defslice.hw.regmap`."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defslice.hw import regmap
from defslice.hw.regmap import COUNTERS, SETTINGS

__all__ = ["COUNTERS", "SETTINGS", "ControlRegs", "axi_events", "axil_members", "connect_axil",
           "performance_counters"]


def axil_members(prefix: str = "s_axil") -> dict[str, wiring.Member]:
    """Flat AXI4-Lite slave ports named as cocotbext-axi expects (``{prefix}_awaddr`` ...),
    from :data:`defslice.hw.regmap.AXIL_PORTS`."""
    return {f"{prefix}_{name}": (Out if port.slave_out else In)(port.width)
            for name, port in regmap.AXIL_PORTS.items()}


class ControlRegs(wiring.Component):
    """Register file behind an AXI4-Lite slave (32-bit data, ``regmap.ADDR_BITS`` address).

    A write is accepted when address and data are both valid (one response per write);
    byte strobes are honoured per byte. Reads return in the cycle after the address.

    Parameters
    ----------
    rmap : RegisterMap
        The engine's register map (:data:`~defslice.hw.regmap.SAMPLING_MAP` by default,
        :data:`~defslice.hw.regmap.LAYER_MAP`).

    Members
    -------
    s_axil_* : AXI4-Lite slave ports.
    start : Out(1)
        One-cycle pulse: CTRL bit 0 written with 1 while no run is active.
    busy, done, error_window, error_resp : In(1)
        STATUS bits 0..3.
    <SETTING> : Out(32)
        ``rmap.settings`` in lower case: ``value_base``, ``query_base``, ...
    <COUNTER> : In(32)
        ``rmap.counters`` in lower case: ``cycles``, ``busy_cycles``, ... (read only).
    """

    def __init__(self, rmap: regmap.RegisterMap = regmap.SAMPLING_MAP) -> None:
        self.rmap = rmap
        members = axil_members()
        members.update({"start": Out(1), "busy": In(1), "done": In(1),
                        "error_window": In(1), "error_resp": In(1)})
        for name in rmap.settings:
            members[name.lower()] = Out(regmap.REG_BITS)
        for name in rmap.counters:
            members[name.lower()] = In(regmap.REG_BITS)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        rmap = self.rmap
        word = 2  # byte address -> register index shift
        # Writes.
        take_w = Signal()
        m.d.comb += take_w.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~self.s_axil_bvalid)
        m.d.comb += [self.s_axil_awready.eq(take_w), self.s_axil_wready.eq(take_w),
                     self.s_axil_bresp.eq(0)]
        m.d.sync += self.start.eq(0)
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        widx = self.s_axil_awaddr[word:]
        with m.If(take_w):
            m.d.sync += self.s_axil_bvalid.eq(1)
            with m.If((widx == rmap.offset("CTRL") >> word) & self.s_axil_wstrb[0]
                      & self.s_axil_wdata[0] & ~self.busy):
                m.d.sync += self.start.eq(1)
            for name in rmap.settings:
                reg = getattr(self, name.lower())
                with m.If(widx == rmap.offset(name) >> word):
                    for byte in range(4):
                        with m.If(self.s_axil_wstrb[byte]):
                            m.d.sync += reg[8 * byte:8 * byte + 8].eq(
                                self.s_axil_wdata[8 * byte:8 * byte + 8])
        # Reads.
        m.d.comb += [self.s_axil_arready.eq(~self.s_axil_rvalid), self.s_axil_rresp.eq(0)]
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)
        with m.If(self.s_axil_arvalid & ~self.s_axil_rvalid):
            m.d.sync += [self.s_axil_rvalid.eq(1), self.s_axil_rdata.eq(0)]
            with m.Switch(self.s_axil_araddr[word:]):
                with m.Case(rmap.offset("STATUS") >> word):
                    m.d.sync += self.s_axil_rdata.eq(
                        self.busy | (self.done << 1) | (self.error_window << 2)
                        | (self.error_resp << 3))
                for name in rmap.settings:
                    with m.Case(rmap.offset(name) >> word):
                        m.d.sync += self.s_axil_rdata.eq(getattr(self, name.lower()))
                for name in rmap.counters:
                    with m.Case(rmap.offset(name) >> word):
                        m.d.sync += self.s_axil_rdata.eq(getattr(self, name.lower()))
                with m.Case(rmap.offset("ID") >> word):
                    m.d.sync += self.s_axil_rdata.eq(rmap.id_value)
        return m


def connect_axil(m: Module, top: object, regs: ControlRegs) -> None:
    """The flat AXI4-Lite ports of ``top`` (:func:`axil_members`) to the register file."""
    for name, member in axil_members().items():
        port, inner = getattr(top, name), getattr(regs, name)
        m.d.comb += port.eq(inner) if member.flow == Out else inner.eq(port)


def axi_events(top: object, prefix: str = "m_axi") -> dict[str, Value]:
    """The AXI4 master handshakes of ``top`` by counter name: ``READ_BEATS`` (R),
    ``WRITE_BEATS`` (W), ``READ_BURSTS`` (AR), ``WRITE_BURSTS`` (AW)."""
    def hs(ch: str) -> Value:
        return getattr(top, f"{prefix}_{ch}valid") & getattr(top, f"{prefix}_{ch}ready")

    return {"READ_BEATS": hs("r"), "WRITE_BEATS": hs("w"), "READ_BURSTS": hs("ar"),
            "WRITE_BURSTS": hs("aw")}


def performance_counters(m: Module, regs: ControlRegs, run: Value,
                         events: dict[str, Value]) -> None:
    """The counters of ``regs.rmap``, cleared by ``regs.start``: ``CYCLES`` counts the
    cycles of a run, every other counter the cycles of the run in which its event holds.

    Events are registered before counting (off the handshake paths); the last event of a
    run precedes done by more than a cycle, so none is lost.
    """
    start = regs.start
    counters = {name: Signal(regmap.REG_BITS, name=name.lower())
                for name in regs.rmap.counters}
    for name, sig in counters.items():
        m.d.comb += getattr(regs, name.lower()).eq(sig)
    with m.If(start):
        m.d.sync += [c.eq(0) for c in counters.values()]
    with m.If(run & ~start):
        m.d.sync += counters["CYCLES"].eq(counters["CYCLES"] + 1)
    for name, event in events.items():
        ev_q = Signal(name=f"ev_{name.lower()}")
        m.d.sync += ev_q.eq(event & run & ~start)
        with m.If(~start):
            m.d.sync += counters[name].eq(counters[name] + ev_q)
