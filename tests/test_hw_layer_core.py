"""The layer core (sequencer, operand fetch, array, units, buffers, writer) on whole
layers in the Amaranth simulator, against the fixed-point layer bit for bit."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal, unsigned
from amaranth.lib import memory
from amaranth.sim import Simulator
from layer_support import CONFIGS, traced

from defslice.hw.layer.core import LayerCore
from defslice.hw.layer.fetch import X_LATENCY
from defslice.hw.params import derive
from defslice.sim.testing import FULL


class Harness(Elaboratable):
    """The core with window banks the testbench writes (read latency X_LATENCY)."""

    def __init__(self, cfg, plan):
        self.hwp = derive(cfg)
        self.core = LayerCore(plan, self.hwp, cfg.numerics)
        self.word = 16 * plan.lanes
        self.we = Signal(4)
        self.waddr = Signal(range(self.hwp.bank_depth))
        self.wdata = Signal(unsigned(self.word))

    def elaborate(self, platform):
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


def _slice_fields(t, buffer_set):
    w, g, q, k = t.window, t.region, t.qbox, t.keys
    by = t.bias_bounds
    return {"row0": w.row0, "col0": w.col0, "rows": w.rows, "cols": w.cols, "y_lo": w.y_lo,
            "y_hi": w.y_hi, "x_lo": w.x_lo, "x_hi": w.x_hi, "q_row0": q.row0,
            "q_col0": q.col0, "q_rows": q.rows, "q_cols": q.cols, "reg_row0": g.row0,
            "reg_col0": g.col0, "reg_rows": g.rows, "reg_cols": g.cols, "by_lo": by[0],
            "by_hi": by[1], "bx_lo": by[2], "bx_hi": by[3], "key_row0": k.row0,
            "key_col0": k.col0, "key_rows": k.rows, "key_cols": k.cols, "set": buffer_set,
            "num_keys": t.num_keys}


def run_core(cfg, seed=0, ready_prob=1.0):
    plan, _, qp, x_q, y_want, _ = traced(cfg, seed)
    h = Harness(cfg, plan)
    core, hwp = h.core, h.hwp
    lay = plan.layout
    bus = lay.bus_bytes
    image = lay.pack_params(qp)
    beats = [int.from_bytes(image[k:k + bus], "little") for k in range(0, len(image), bus)]
    d, L = plan.dims, plan.lanes
    x = x_q[0]
    total = d.height * d.width * core.pb
    y = np.zeros((d.channels, d.height, d.width), dtype=np.int64)
    got = []
    rng = np.random.default_rng(seed)
    released = [True, True]

    async def load_window(ctx, t, s):
        w = t.window
        for r in range(w.rows):
            for c in range(w.cols):
                for word in range(d.channels // L):
                    vals = x[word * L:(word + 1) * L, w.row0 + r, w.col0 + c]
                    packed = sum((int(v) & 0xFFFF) << (16 * e) for e, v in enumerate(vals))
                    addr = s * hwp.set_depth + ((r >> 1) * hwp.bank_cols[0] + (c >> 1)) \
                        * (d.channels // L) + word
                    ctx.set(h.we, 1 << (2 * (r & 1) + (c & 1)))
                    ctx.set(h.waddr, addr)
                    ctx.set(h.wdata, packed)
                    await ctx.tick()
        ctx.set(h.we, 0)

    async def driver(ctx):
        ctx.set(core.params_start, 1)
        await ctx.tick()
        ctx.set(core.params_start, 0)
        for beat in beats:
            ctx.set(core.params.valid, 1)
            ctx.set(core.params.payload, beat)
            await ctx.tick().until(core.params.ready)
        ctx.set(core.params.valid, 0)
        for k, t in enumerate(plan.tasks):
            s = k % 2
            while not released[s]:
                await ctx.tick()
            released[s] = False
            await load_window(ctx, t, s)
            ctx.set(core.slice.payload, _slice_fields(t, s))
            ctx.set(core.slice.valid, 1)
            await ctx.tick().until(core.slice.ready)
            ctx.set(core.slice.valid, 0)

    async def monitor(ctx):
        async for _, _, rel, rel_set in ctx.tick().sample(core.release, core.release_set):
            if rel:
                released[rel_set] = True

    async def sink(ctx):
        per = bus // 2
        while len(got) < total:
            ready = int(rng.random() < ready_prob)
            ctx.set(core.y.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(core.y.valid, core.y.payload)
            if valid and ready:
                got.append(1)
                raw = int(payload.data)
                for e in range(per):
                    ch = int(payload.beat) * per + e
                    if ch < d.channels:
                        v = (raw >> (16 * e)) & 0xFFFF
                        y[ch, int(payload.row), int(payload.col)] = v - (1 << 16) \
                            if v >> 15 else v

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(sink)
    sim.run()
    return y, y_want[0]


#: About 40 s each in the Amaranth simulator: two by default (two groups, tanh offsets,
#: overlap 3, slices that do not divide the map; slices without keys), all with SIM_FULL=1.
CORE_CASES = CONFIGS if FULL else [c for c in CONFIGS if c.name in ("ldat-g2-tanh",
                                                                    "ldat-sparse")]


@pytest.mark.parametrize("cfg", CORE_CASES, ids=lambda c: c.name)
def test_core_equals_fixed_layer(cfg):
    y, want = run_core(cfg)
    assert np.array_equal(y, want)
