"""AXI4-Lite slave holding the registers of :mod:`defslice.hw.regmap`."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defslice.hw import regmap
from defslice.hw.regmap import COUNTERS, SETTINGS

__all__ = ["COUNTERS", "SETTINGS", "ControlRegs", "axil_members"]


def axil_members(prefix: str = "s_axil") -> dict[str, wiring.Member]:
    """Flat AXI4-Lite slave ports named as cocotbext-axi expects (``{prefix}_awaddr`` ...),
    from :data:`defslice.hw.regmap.AXIL_PORTS`."""
    return {f"{prefix}_{name}": (Out if port.slave_out else In)(port.width)
            for name, port in regmap.AXIL_PORTS.items()}


class ControlRegs(wiring.Component):
    """Register file behind an AXI4-Lite slave (32-bit data, ``regmap.ADDR_BITS`` address).

    A write is accepted when address and data are both valid (one response per write);
    byte strobes are honoured per byte. Reads return in the cycle after the address.

    Members
    -------
    s_axil_* : AXI4-Lite slave ports.
    start : Out(1)
        One-cycle pulse: CTRL bit 0 written with 1 while no run is active.
    busy, done, error_window, error_resp : In(1)
        STATUS bits 0..3.
    <SETTING> : Out(32)
        ``value_base``, ``query_base``, ``desc_base``, ``out_base``, ``num_desc``.
    <COUNTER> : In(32)
        ``cycles``, ``busy_cycles``, ... (read only).
    """

    def __init__(self) -> None:
        members = axil_members()
        members.update({"start": Out(1), "busy": In(1), "done": In(1),
                        "error_window": In(1), "error_resp": In(1)})
        for name in SETTINGS:
            members[name.lower()] = Out(32)
        for name in COUNTERS:
            members[name.lower()] = In(32)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
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
            with m.If((widx == regmap.offset("CTRL") >> word) & self.s_axil_wstrb[0]
                      & self.s_axil_wdata[0] & ~self.busy):
                m.d.sync += self.start.eq(1)
            for name in SETTINGS:
                reg = getattr(self, name.lower())
                with m.If(widx == regmap.offset(name) >> word):
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
                with m.Case(regmap.offset("STATUS") >> word):
                    m.d.sync += self.s_axil_rdata.eq(
                        self.busy | (self.done << 1) | (self.error_window << 2)
                        | (self.error_resp << 3))
                for name in SETTINGS:
                    with m.Case(regmap.offset(name) >> word):
                        m.d.sync += self.s_axil_rdata.eq(getattr(self, name.lower()))
                for name in COUNTERS:
                    with m.Case(regmap.offset(name) >> word):
                        m.d.sync += self.s_axil_rdata.eq(getattr(self, name.lower()))
                with m.Case(regmap.offset("ID") >> word):
                    m.d.sync += self.s_axil_rdata.eq(regmap.ID_VALUE)
        return m
