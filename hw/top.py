"""``defslice_top``: the loader, compute and writer wired to the AXI ports and registers.

Ports are flat so cocotbext-axi finds them by prefix: ``clk``, ``rst`` (active-high,
synchronous), the AXI4 master ``m_axi_*``, the AXI4-Lite slave ``s_axil_*`` and ``irq``
(= STATUS.done). The blocks (``docs/hw.md``): :class:`~defslice.hw.loader.Loader` (AR and
R channels, window banks, query records), :class:`~defslice.hw.compute.Compute` (sampling
pipeline), :class:`~defslice.hw.writer.Writer` (AW, W, B), and here the registers, the
run control and the performance counters.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from defslice.hw.axi import axi_members, connect_flat
from defslice.hw.compute import Compute
from defslice.hw.loader import Loader
from defslice.hw.params import HwParams, require_params
from defslice.hw.records import COUNT_BITS
from defslice.hw.regs import (
    SETTINGS,
    ControlRegs,
    axi_events,
    axil_members,
    connect_axil,
    performance_counters,
)
from defslice.hw.writer import Writer

__all__ = ["DefsliceTop", "axi_members"]


class DefsliceTop(wiring.Component):
    """The accelerator; see the module docstring and ``docs/hw.md``.

    Arguments
    ---------
    p : HwParams
        From :func:`defslice.hw.params.derive`.

    Members
    -------
    m_axi_* : AXI4 master ports (:func:`~defslice.hw.axi.axi_members`).
    s_axil_* : AXI4-Lite slave ports (:func:`~defslice.hw.regs.axil_members`).
    irq : Out(1)
        STATUS.done.
    """

    def __init__(self, p: HwParams) -> None:
        self.p = require_params(p)
        members = axi_members(p)
        members.update(axil_members())
        members["irq"] = Out(1)
        super().__init__(members)
        #: STATUS.busy and STATUS bits 2|3 (not ports; for board wrappers such as LEDs).
        self.busy_o = Signal()
        self.error_o = Signal()
        #: Observation points for the throughput bench (not ports): compute holds a slice
        #: (RUN or DRAIN), a bilinear sample is issued, compute waits for input.
        self.computing = Signal()
        self.sampling = Signal()
        self.stalling = Signal()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.regs = regs = ControlRegs()
        m.submodules.loader = loader = Loader(self.p)
        m.submodules.compute = compute = Compute(self.p)
        m.submodules.writer = writer = Writer(self.p)
        self._ports(m, regs, loader, writer)
        self._datapath(m, regs, loader, compute, writer)
        run = Signal()
        slices_done = Signal(COUNT_BITS)
        self._run_control(m, regs, loader, compute, writer, run, slices_done)
        self._counters(m, regs, loader, compute, run, slices_done)
        return m

    def _ports(self, m: Module, regs: ControlRegs, loader: Loader, writer: Writer) -> None:
        """AXI4-Lite to the registers, the AXI4 channels to the loader and the writer."""
        connect_axil(m, self, regs)
        connect_flat(m, self, "m_axi_ar", loader.ar)
        connect_flat(m, self, "m_axi_r", loader.r)
        connect_flat(m, self, "m_axi_aw", writer.aw)
        connect_flat(m, self, "m_axi_w", writer.w)
        connect_flat(m, self, "m_axi_b", writer.b)

    def _datapath(self, m: Module, regs: ControlRegs, loader: Loader, compute: Compute,
                  writer: Writer) -> None:
        """Loader -> compute -> writer; a loaded slice goes to compute and its output
        region to the writer in the same cycle."""
        for name in SETTINGS:
            m.d.comb += getattr(loader, name.lower()).eq(getattr(regs, name.lower()))
        m.d.comb += [loader.start.eq(regs.start), writer.start.eq(regs.start)]
        wiring.connect(m, loader.queries, compute.queries)
        wiring.connect(m, loader.banks, compute.banks)
        wiring.connect(m, compute.o, writer.data)
        loaded = loader.slice
        m.d.comb += [
            loaded.ready.eq(compute.slice.ready & writer.region.ready),
            compute.slice.valid.eq(loaded.valid & writer.region.ready),
            compute.slice.payload.eq(loaded.payload),
            writer.region.valid.eq(loaded.valid & compute.slice.ready),
            writer.region.payload.addr.eq(loaded.payload.out_addr),
            writer.region.payload.beats.eq(loaded.payload.out_beats),
            loader.release.eq(compute.release), loader.release_set.eq(compute.release_set),
        ]

    def _run_control(self, m: Module, regs: ControlRegs, loader: Loader, compute: Compute,
                     writer: Writer, run: Signal, slices_done: Signal) -> None:
        """STATUS, ``irq``, and the end of a run: everything requested, computed, written
        and answered (or the run stopped on a refused window)."""
        done = Signal()
        err_win = loader.error_window
        err_resp = loader.error_resp | writer.error_resp
        m.d.comb += [regs.busy.eq(run), regs.done.eq(done), regs.error_window.eq(err_win),
                     regs.error_resp.eq(err_resp), self.irq.eq(done),
                     self.busy_o.eq(run), self.error_o.eq(err_win | err_resp)]
        with m.If(compute.release):
            m.d.sync += slices_done.eq(slices_done + 1)
        finished = Signal()
        m.d.comb += finished.eq(
            loader.done & compute.idle & writer.idle & ~compute.o.valid
            & ((slices_done == regs.num_desc) | err_win))
        with m.If(regs.start):
            m.d.sync += [run.eq(1), done.eq(0), slices_done.eq(0)]
        with m.Elif(run & finished):
            m.d.sync += [run.eq(0), done.eq(1)]

    def _counters(self, m: Module, regs: ControlRegs, loader: Loader, compute: Compute,
                  run: Signal, slices_done: Signal) -> None:
        """The performance counters of ``hw/regmap.py``, cleared by start."""
        stall = Signal()
        m.d.comb += stall.eq(
            (compute.wait_slice & (slices_done != regs.num_desc) & ~loader.error_window)
            | compute.wait_query)
        m.d.comb += [self.computing.eq(compute.computing), self.sampling.eq(compute.issue),
                     self.stalling.eq(run & stall)]
        performance_counters(m, regs, run, {"BUSY_CYCLES": compute.issue,
                                            "STALL_CYCLES": stall, **axi_events(self)})
