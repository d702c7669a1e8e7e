"""``defslice_top`` of the layer engine: loader, parameter reader, core, y writer, registers.

Ports as the sampling engine's top (``hw/top.py``): ``clk``, ``rst``, the AXI4 master
``m_axi_*``, the AXI4-Lite slave ``s_axil_*`` (:data:`~defslice.hw.regmap.LAYER_MAP`) and
``irq`` (= STATUS.done). The blocks (``docs/hw_layer.md``):
:class:`~defslice.hw.axi_slice.AxiSlice` on the R channel (``m_axi_rready`` a flip-flop),
:class:`~defslice.hw.layer.param_reader.ParamReader` (the parameter region first, then the
read channels to the loader), :class:`~defslice.hw.loader.Loader` (descriptors and
windows into the window banks), :class:`~defslice.hw.layer.core.LayerCore`,
:class:`~defslice.hw.layer.y_writer.YWriter`; here the run control and the counters.
"""

from __future__ import annotations

from dataclasses import replace

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from defslice.config import Config
from defslice.errors import ConfigError
from defslice.hw.axi import ReadDataSignature, axi_members, connect_flat
from defslice.hw.axi_slice import AxiSlice
from defslice.hw.layer.core import LayerCore
from defslice.hw.layer.fetch import context_layout
from defslice.hw.layer.param_reader import ParamReader
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.y_writer import YWriter
from defslice.hw.loader import Loader
from defslice.hw.params import HwParams, derive
from defslice.hw.records import COUNT_BITS
from defslice.hw.regmap import LAYER_MAP
from defslice.hw.regs import (
    ControlRegs,
    axi_events,
    axil_members,
    connect_axil,
    performance_counters,
)
from defslice.model.layer_layout import DESC_FIELDS

__all__ = ["LayerTop", "descriptor_fields", "layer_params"]


def descriptor_fields() -> data.StructLayout:
    """The layer descriptor's :data:`~defslice.model.layer_layout.DESC_FIELDS`, each a
    little-endian ``i16``, first field lowest."""
    return data.StructLayout({name: signed(16) for name in DESC_FIELDS})


def layer_params(cfg: Config) -> tuple[LayerPlan, HwParams]:
    """The layer plan and the loader's constants of ``cfg``: the sampling engine's
    :func:`~defslice.hw.params.derive` with the layer descriptor's size.

    Raises
    ------
    ConfigError
        For what the plan refuses (:meth:`LayerPlan.from_config`), what the loader
        refuses (:func:`~defslice.hw.params.derive`), and layouts the two disagree on.
    """
    plan = LayerPlan.from_config(cfg)
    hwp = derive(cfg)
    lay = plan.layout
    if lay.pixel_stride != hwp.pixel_stride:
        raise ConfigError("hw.axi_data_bits", cfg.hw.axi_data_bits,
                          f"a bus on which a pixel of x is {hwp.pixel_stride} bytes for the "
                          f"loader and the layer layout alike (layout: {lay.pixel_stride})")
    return plan, replace(hwp, desc_stride=lay.desc_stride,
                         desc_beats=lay.desc_stride // lay.bus_bytes)


class LayerTop(wiring.Component):
    """The layer engine; see the module docstring and ``docs/hw_layer.md``.

    Arguments
    ---------
    cfg : Config
        ``hw.engine = "layer"``; refused as :func:`layer_params` says.

    Members
    -------
    m_axi_* : AXI4 master ports (:func:`~defslice.hw.axi.axi_members`).
    s_axil_* : AXI4-Lite slave ports (:func:`~defslice.hw.regs.axil_members`).
    irq : Out(1)
        STATUS.done.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        try:
            self.plan, self.p = layer_params(cfg)
        except ConfigError:
            self._MustUse__silence = True    # refused: nothing to elaborate
            raise
        members = axi_members(self.p)
        members.update(axil_members())
        members["irq"] = Out(1)
        super().__init__(members)
        #: STATUS.busy and STATUS bits 2|3 (not ports; for board wrappers such as LEDs).
        self.busy_o = Signal()
        self.error_o = Signal()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p, plan = self.p, self.plan
        lay = plan.layout
        m.submodules.regs = regs = ControlRegs(LAYER_MAP)
        m.submodules.params = pr = ParamReader(p, lay.param_bytes // lay.bus_bytes)
        m.submodules.loader = loader = Loader(p)
        m.submodules.core = core = LayerCore(plan, p, self.cfg.numerics)
        #: The core of the last elaboration (simulation traces inspect it).
        self.core = core
        m.submodules.ywriter = yw = YWriter(p, plan.dims.width, lay.out_stride)
        m.submodules.r_slice = r_slice = AxiSlice(ReadDataSignature(p.bus_bits))
        self._ports(m, regs, pr, r_slice, yw)
        wiring.connect(m, r_slice.inner, pr.r)
        wiring.connect(m, loader.ar, pr.loader_ar)
        wiring.connect(m, loader.r, pr.loader_r)
        wiring.connect(m, pr.params, core.params)
        start = regs.start
        m.d.comb += [
            pr.start.eq(start), pr.weight_base.eq(regs.weight_base),
            core.params_start.eq(start),
            loader.start.eq(start), loader.value_base.eq(regs.value_base),
            loader.query_base.eq(0), loader.desc_base.eq(regs.desc_base),
            loader.out_base.eq(regs.out_base), loader.num_desc.eq(regs.num_desc),
            loader.queries.ready.eq(1),
            yw.start.eq(start), yw.out_base.eq(regs.out_base),
            loader.release.eq(core.release), loader.release_set.eq(core.release_set),
        ]
        for b in range(4):
            m.d.comb += [loader.banks.addr[b].eq(core.x_addr[b]),
                         core.x_data[b].eq(loader.banks.data[b])]
        taken = Signal(COUNT_BITS)
        self._slices(m, loader, core, yw, taken, start)
        run = Signal()
        self._run_control(m, regs, pr, loader, core, yw, run)
        self._counters(m, regs, loader, core, run, taken)
        return m

    def _ports(self, m: Module, regs: ControlRegs, pr: ParamReader, r_slice: AxiSlice,
               yw: YWriter) -> None:
        """AXI4-Lite to the registers; AR through the parameter reader, R through the
        register slice (``m_axi_rready`` a flip-flop) to it; AW, W and B from the y
        writer."""
        connect_axil(m, self, regs)
        connect_flat(m, self, "m_axi_ar", pr.ar)
        connect_flat(m, self, "m_axi_r", r_slice.bus)
        connect_flat(m, self, "m_axi_aw", yw.aw)
        connect_flat(m, self, "m_axi_w", yw.w)
        connect_flat(m, self, "m_axi_b", yw.b)

    def _slices(self, m: Module, loader: Loader, core: LayerCore, yw: YWriter,
                taken: Signal, start: Signal) -> None:
        """A loaded slice goes to the core (once the parameters are in) and its own
        pixels to the y writer in the same cycle; its fields are the descriptor's."""
        loaded = loader.slice
        layout = descriptor_fields()
        desc = data.View(layout, loaded.payload.desc[:layout.size])
        ctx = core.slice.payload
        m.d.comb += [getattr(ctx, name).eq(getattr(desc, name))
                     for name, _ in context_layout() if name != "set"]
        m.d.comb += ctx.set.eq(loaded.payload.set)
        rect = yw.slices.payload
        m.d.comb += [rect.row0.eq(desc.reg_row0), rect.col0.eq(desc.reg_col0),
                     rect.rows.eq(desc.reg_rows), rect.cols.eq(desc.reg_cols)]
        go = loaded.valid & core.params_done
        m.d.comb += [
            core.slice.valid.eq(go & yw.slices.ready),
            yw.slices.valid.eq(go & core.slice.ready),
            loaded.ready.eq(core.params_done & core.slice.ready & yw.slices.ready),
            yw.y.valid.eq(core.y.valid), yw.y.payload.eq(core.y.payload.data),
            core.y.ready.eq(yw.y.ready),
        ]
        with m.If(start):
            m.d.sync += taken.eq(0)
        with m.Elif(core.slice.valid & core.slice.ready):
            m.d.sync += taken.eq(taken + 1)

    def _run_control(self, m: Module, regs: ControlRegs, pr: ParamReader, loader: Loader,
                     core: LayerCore, yw: YWriter, run: Signal) -> None:
        """STATUS, ``irq``, and the end of a run: every ``y`` beat of the map written and
        answered (or the run stopped on a refused window), every read consumed."""
        d, lay = self.plan.dims, self.plan.layout
        total = d.height * d.width * (lay.out_stride // lay.bus_bytes)
        done = Signal()
        y_beats = Signal(range(total + 1))
        err_win = loader.error_window
        err_resp = loader.error_resp | pr.error_resp | yw.error_resp
        m.d.comb += [regs.busy.eq(run), regs.done.eq(done), regs.error_window.eq(err_win),
                     regs.error_resp.eq(err_resp), self.irq.eq(done),
                     self.busy_o.eq(run), self.error_o.eq(err_win | err_resp)]
        with m.If(regs.start):
            m.d.sync += y_beats.eq(0)
        with m.Elif(yw.y.valid & yw.y.ready):
            m.d.sync += y_beats.eq(y_beats + 1)
        finished = Signal()
        m.d.comb += finished.eq(~pr.busy & loader.done & core.idle & yw.idle
                                & ((y_beats == total) | err_win))
        with m.If(regs.start):
            m.d.sync += [run.eq(1), done.eq(0)]
        with m.Elif(run & finished):
            m.d.sync += [run.eq(0), done.eq(1)]

    def _counters(self, m: Module, regs: ControlRegs, loader: Loader, core: LayerCore,
                  run: Signal, taken: Signal) -> None:
        """The counters of :data:`~defslice.hw.regmap.LAYER_MAP`, cleared by start; every
        cycle of a run is one of array-busy, stall and load."""
        busy, load = core.busy_array, Signal()
        waiting = core.slice.ready & ~(loader.slice.valid & core.params_done)
        m.d.comb += load.eq(~busy & waiting & (taken != regs.num_desc)
                            & ~loader.error_window)
        performance_counters(m, regs, run, {
            "ARRAY_BUSY": busy, "STALL_CYCLES": ~busy & ~load, "LOAD_CYCLES": load,
            **axi_events(self)})
