"""Layer-engine test configurations and inputs shared by the tests of its blocks."""

import numpy as np

from defslice.hw.layer.plan import LayerPlan
from defslice.model.dat_layer import init_params
from defslice.model.dat_layer_fixed import (
    LayerFormats,
    dat_layer_fixed_forward,
    quantize_layer_input,
    quantize_layer_params,
)
from defslice.sim.configs import LAYER_FULL_CONFIGS

#: The small layers of the engine's system tests (:data:`defslice.sim.configs.LAYER_CONFIGS`
#: and the other ``ldat-*`` of ``LAYER_FULL_CONFIGS``: non-dividing slices, overlap 0 and
#: 3, two groups, tanh offsets, a non-square map, one slice over the map, keyless slices).
CONFIGS = [cfg for name, cfg in LAYER_FULL_CONFIGS.items() if name.startswith("ldat-")]


def inputs(cfg, seed=0):
    """Random parameters (LayerNorm and bias table made non-trivial) and map:
    ``(plan, formats, FixedLayerParams, x_q (1, C, H, W))``."""
    rng = np.random.default_rng(seed)
    fmt = LayerFormats.from_config(cfg)
    plan = LayerPlan.from_config(cfg)
    d = plan.dims
    params = init_params(d.spec, d.channels, d.height, d.width, seed=seed)
    params["conv_offset.1.norm.weight"] = rng.uniform(0.5, 1.5, d.group_channels)
    params["conv_offset.1.norm.bias"] = rng.uniform(-0.3, 0.3, d.group_channels)
    params["rpe_table"] = rng.standard_normal(params["rpe_table"].shape) * 0.5
    params["conv_offset.3.weight"] *= 4
    x = rng.standard_normal((1, d.channels, d.height, d.width)) * 1.5
    qp = quantize_layer_params(params, d.spec, fmt, (d.height, d.width))
    return plan, fmt, qp, quantize_layer_input(x, fmt)


def traced(cfg, seed=0):
    """:func:`inputs` plus the fixed-point layer's ``(y, trace)``."""
    plan, fmt, qp, x_q = inputs(cfg, seed)
    y, tr = dat_layer_fixed_forward(x_q, qp, plan.dims.spec, fmt, plan.grid)
    return plan, fmt, qp, x_q, y, tr


def run_bench(dut, bench):
    """Run the testbench ``bench(ctx)`` on ``dut`` with a clock."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def config_unit(name):
    """``(cfg, plan, hw params)`` of a bench configuration."""
    from defslice.hw.params import derive
    from defslice.sim.configs import sim_config

    cfg = sim_config(name)
    return cfg, LayerPlan.from_config(cfg), derive(cfg)


def pipe(dut, payloads, drain=None, setup=None):
    """Run ``payloads`` through an always-ready pipeline ``dut.i -> dut.o``, one per cycle
    (after ``setup(ctx)`` if given), then ``drain`` (default ``dut.latency``) idle cycles;
    every ``dut.o.payload`` seen with ``dut.o.valid``, in order."""
    from amaranth.sim import Simulator

    out = []

    async def tb(ctx):
        if setup is not None:
            await setup(ctx)
        for item in [*payloads, *([None] * (dut.latency if drain is None else drain))]:
            ctx.set(dut.i.valid, item is not None)
            if item is not None:
                ctx.set(dut.i.payload, item)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                out.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def feed_and_collect(dut, payloads, count, gap_prob=0.0, seed=0, setup=None, cycles=None):
    """Offer ``payloads`` on the ready-capable ``dut.i`` (valid dropped on random cycles
    with ``gap_prob``), after ``setup(ctx)`` if given; collect ``count`` payloads from the
    always-ready ``dut.o``. Stops after ``cycles`` if given."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(seed)
    out = []

    async def feed(ctx):
        if setup is not None:
            await setup(ctx)
        for item in payloads:
            while rng.random() < gap_prob:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, item)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        while len(out) < count:
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                out.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(collect)
    sim.run_until(1e-8 * (cycles or 20 * count + 500))
    return out
