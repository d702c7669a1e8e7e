"""The layer engine on a whole layer in the Amaranth simulator: the core alone (``y``,
cycles, array use) and the whole top against a Python AXI memory (``y``, bursts,
counters)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal, Value, unsigned
from amaranth.lib import memory
from amaranth.sim import Simulator, SimulatorContext

from defslice.config import Config
from defslice.hw.layer.core import LayerCore
from defslice.hw.layer.fetch import X_LATENCY
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.params import derive
from defslice.hw.regmap import LAYER_MAP
from defslice.model.dat_layer_fixed import FixedLayerParams
from defslice.model.layer_layout import SliceTask
from defslice.model.layout import Burst

if TYPE_CHECKING:
    from defslice.hw.layer.top import LayerTop

__all__ = ["CoreHarness", "CoreRun", "TopRun", "simulate_core", "simulate_top", "slice_fields"]


class CoreHarness(Elaboratable):
    """The core with two-set window banks a testbench writes (read latency X_LATENCY)."""

    def __init__(self, cfg: Config, plan: LayerPlan) -> None:
        self.hwp = derive(cfg)
        self.core = LayerCore(plan, self.hwp, cfg.numerics)
        self.word = 16 * plan.lanes
        self.we = Signal(4)
        self.waddr = Signal(range(self.hwp.bank_depth))
        self.wdata = Signal(unsigned(self.word))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.core = core = self.core
        for b in range(4):
            mem = memory.Memory(shape=unsigned(self.word), depth=self.hwp.bank_depth, init=[])
            m.submodules[f"x{b}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.en.eq(self.we[b]), wp.addr.eq(self.waddr), wp.data.eq(self.wdata),
                         rp.addr.eq(core.x_addr[b])]
            out = rp.data
            for _ in range(X_LATENCY - 1):
                reg = Signal.like(out)
                m.d.sync += reg.eq(out)
                out = reg
            m.d.comb += core.x_data[b].eq(out)
        return m


def slice_fields(t: SliceTask, buffer_set: int) -> dict[str, int]:
    """The core's slice payload (``fetch.context_layout``) of task ``t``."""
    w, g, q, k = t.window, t.region, t.qbox, t.keys
    by = t.bias_bounds
    return {"row0": w.row0, "col0": w.col0, "rows": w.rows, "cols": w.cols, "y_lo": w.y_lo,
            "y_hi": w.y_hi, "x_lo": w.x_lo, "x_hi": w.x_hi, "q_row0": q.row0,
            "q_col0": q.col0, "q_rows": q.rows, "q_cols": q.cols, "reg_row0": g.row0,
            "reg_col0": g.col0, "reg_rows": g.rows, "reg_cols": g.cols, "by_lo": by[0],
            "by_hi": by[1], "bx_lo": by[2], "bx_hi": by[3], "key_row0": k.row0,
            "key_col0": k.col0, "key_rows": k.rows, "key_cols": k.cols, "set": buffer_set,
            "num_keys": t.num_keys}


@dataclass
class CoreRun:
    """``y`` (C, H, W); ``cycles`` from the first slice handed over to the last ``y``
    beat; ``array_busy`` steps; ``params_cycles`` to load the parameters."""

    y: np.ndarray
    cycles: int
    array_busy: int
    params_cycles: int


def _packed_words(plan: LayerPlan, x: np.ndarray, t: SliceTask, s: int,
                  hwp: object) -> list[tuple[int, int, int]]:
    """(bank, address, word) of every window word of ``t`` in buffer set ``s``."""
    d, L = plan.dims, plan.lanes
    w = t.window
    out = []
    for r in range(w.rows):
        for c in range(w.cols):
            for word in range(d.channels // L):
                vals = x[word * L:(word + 1) * L, w.row0 + r, w.col0 + c]
                packed = sum((int(v) & 0xFFFF) << (16 * e) for e, v in enumerate(vals))
                addr = s * hwp.set_depth + ((r >> 1) * hwp.bank_cols[0] + (c >> 1)) \
                    * (d.channels // L) + word
                out.append((2 * (r & 1) + (c & 1), addr, packed))
    return out


class _Bench:
    """The testbenches of :func:`simulate_core` and what they share."""

    def __init__(self, cfg: Config, x_q: np.ndarray, qp: FixedLayerParams,
                 ready_prob: float, seed: int) -> None:
        self.plan = plan = LayerPlan.from_config(cfg)
        self.h = CoreHarness(cfg, plan)
        lay = plan.layout
        self.bus = lay.bus_bytes
        image = lay.pack_params(qp)
        self.beats = [int.from_bytes(image[k:k + self.bus], "little")
                      for k in range(0, len(image), self.bus)]
        d = plan.dims
        self.x = x_q[0]
        self.total = d.height * d.width * self.h.core.pb
        self.y = np.zeros((d.channels, d.height, d.width), dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.ready_prob = ready_prob
        self.released = [True, True]
        self.got = self.now = self.busy = self.params = 0
        self.start: int | None = None

    async def driver(self, ctx: SimulatorContext) -> None:
        core, h = self.h.core, self.h
        ctx.set(core.params_start, 1)
        await ctx.tick()
        ctx.set(core.params_start, 0)
        for beat in self.beats:
            ctx.set(core.params.valid, 1)
            ctx.set(core.params.payload, beat)
            await ctx.tick().until(core.params.ready)
        ctx.set(core.params.valid, 0)
        self.params = self.now
        for k, t in enumerate(self.plan.tasks):
            s = k % 2
            while not self.released[s]:
                await ctx.tick()
            self.released[s] = False
            for bank, addr, word in _packed_words(self.plan, self.x, t, s, h.hwp):
                ctx.set(h.we, 1 << bank)
                ctx.set(h.waddr, addr)
                ctx.set(h.wdata, word)
                await ctx.tick()
            ctx.set(h.we, 0)
            ctx.set(core.slice.payload, slice_fields(t, s))
            ctx.set(core.slice.valid, 1)
            await ctx.tick().until(core.slice.ready)
            if self.start is None:
                self.start = self.now
            ctx.set(core.slice.valid, 0)

    async def monitor(self, ctx: SimulatorContext) -> None:
        core = self.h.core
        async for _, _, rel, rel_set, busy in ctx.tick().sample(
                core.release, core.release_set, core.busy_array):
            self.now += 1
            self.busy += int(busy)
            if rel:
                self.released[rel_set] = True

    async def sink(self, ctx: SimulatorContext) -> None:
        core = self.h.core
        per = self.bus // 2
        channels = self.plan.dims.channels
        while self.got < self.total:
            ready = int(self.rng.random() < self.ready_prob)
            ctx.set(core.y.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(core.y.valid, core.y.payload)
            if not (valid and ready):
                continue
            self.got += 1
            raw = int(payload.data)
            for e in range(per):
                ch = int(payload.beat) * per + e
                if ch < channels:
                    v = (raw >> (16 * e)) & 0xFFFF
                    self.y[ch, int(payload.row), int(payload.col)] = v - (v >> 15 << 16)


def simulate_core(cfg: Config, x_q: np.ndarray, qp: FixedLayerParams,
                  ready_prob: float = 1.0, seed: int = 0) -> CoreRun:
    """Parameters in, then every slice: its window written into the free buffer set
    (one word per cycle, before the slice is handed over), the slice handed to the core;
    ``y`` taken on a cycle with probability ``ready_prob``."""
    b = _Bench(cfg, x_q, qp, ready_prob, seed)
    sim = Simulator(b.h)
    sim.add_clock(1e-8)
    sim.add_testbench(b.driver)
    sim.add_testbench(b.monitor, background=True)
    sim.add_testbench(b.sink)
    sim.run()
    return CoreRun(b.y, b.now - (b.start or 0), b.busy, b.params)


@dataclass
class TopRun:
    """What a run of the layer top produced: ``y`` (C, H, W); every AXI burst in issue
    order (``tensor`` from the layout's regions); the counters by register name; STATUS
    at the end and right after a mid-run reset, and the bursts before that reset; the
    watched values, one tuple a cycle (``simulate_top(watch=...)``)."""

    y: np.ndarray
    bursts: list[Burst] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    status: int = 0
    status_after_reset: int | None = None
    bursts_before_reset: list[Burst] = field(default_factory=list)
    trace: list[tuple[int, ...]] = field(default_factory=list)


def simulate_top(cfg: Config, x_q: np.ndarray, qp: FixedLayerParams, *,
                 seed: int | None = None, reset_after: int | None = None,
                 max_cycles: int = 5_000_000,
                 watch: Callable[[LayerTop], Sequence[Value]] | None = None) -> TopRun:
    """One run of the layer top (``hw.engine = "layer"``) on the memory image of ``x_q``
    and ``qp``, driven through its registers as host software would.

    ``seed``: ``None``, the memory is always ready; otherwise random stalls on every AXI
    channel, reproducible from the seed. ``reset_after``: first start a run and reset the
    design (and the memory model, ``y`` cleared) that many cycles after its start, then
    run again; the result is the second run's. ``watch``: given the elaborated top (its
    ``core``, the core's ``sequencer``), values to record every cycle from the first
    register write on, into :attr:`TopRun.trace`.
    """
    from defslice.hw.layer.top import LayerTop
    from defslice.hw.simulate import AxiMemory, axil_read, finish_run, start_run

    dut = LayerTop(cfg)
    rst = Signal()
    plan = dut.plan
    lay, tasks, d = plan.layout, plan.tasks, plan.dims
    y_bytes = d.height * d.width * lay.out_stride
    mem = bytearray(lay.y_base + y_bytes)
    for base, blob in lay.memory_image(x_q[0], qp, tasks).items():
        mem[base:base + len(blob)] = blob
    rng = random.Random(seed) if seed is not None else None

    def new_memory() -> AxiMemory:
        return AxiMemory(lambda ch, name: getattr(dut, f"m_axi_{ch}{name}"), mem,
                         lay.bus_bytes, rng, tensor=lay.tensor_at)

    memory = new_memory()
    run = TopRun(y=np.zeros(0))

    settings = {"VALUE_BASE": lay.x_base, "WEIGHT_BASE": lay.param_base,
                "DESC_BASE": lay.desc_base, "OUT_BASE": lay.y_base, "NUM_DESC": len(tasks)}

    async def testbench(ctx: SimulatorContext) -> None:
        nonlocal memory
        await ctx.tick()
        if reset_after is not None:
            await start_run(ctx, dut, LAYER_MAP, settings)
            for _ in range(reset_after):
                await memory.step(ctx)
            ctx.set(rst, 1)
            ctx.set(dut.m_axi_rvalid, 0)
            ctx.set(dut.m_axi_bvalid, 0)
            await ctx.tick().repeat(4)
            ctx.set(rst, 0)
            mem[lay.y_base:] = bytes(y_bytes)
            run.bursts_before_reset = memory.bursts
            memory = new_memory()
            run.status_after_reset = await axil_read(ctx, dut, LAYER_MAP.offset("STATUS"))
        await start_run(ctx, dut, LAYER_MAP, settings)
        run.status, run.counters = await finish_run(ctx, dut, memory, LAYER_MAP, max_cycles)

    sim = Simulator(ResetInserter(rst)(dut))
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if watch is not None:
        values = watch(dut)                 # the simulator has elaborated the design

        async def watcher(ctx: SimulatorContext) -> None:
            async for _, _, *now in ctx.tick().sample(*values):
                run.trace.append(tuple(int(v) for v in now))

        sim.add_testbench(watcher, background=True)
    sim.run()
    run.y = lay.unpack_y(bytes(mem[lay.y_base:]))
    run.bursts = memory.bursts
    return run
