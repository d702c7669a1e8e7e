"""Parameter memories filled from the packed parameter region, checked word by word."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from layer_support import CONFIGS, inputs

from defslice.hw.layer.param_memories import ParamMemories
from defslice.model.layer_layout import rpe_banks


def load_and_read(plan, image, gap_prob, seed):
    """Feed the region's beats, then read every word of the weight, depthwise, bias and
    reference memories; collect the LayerNorm and bias-table writes."""
    rng = np.random.default_rng(seed)
    dut = ParamMemories(plan)
    bus = plan.layout.bus_bytes
    beats = [int.from_bytes(image[k:k + bus], "little") for k in range(0, len(image), bus)]
    got = {"w": [], "dw": [], "b": [], "ref": [], "ln": [], "rpe": []}

    async def feed(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for beat in beats:
            while rng.random() < gap_prob:
                ctx.set(dut.beat.valid, 0)
                await ctx.tick()
            ctx.set(dut.beat.valid, 1)
            ctx.set(dut.beat.payload, beat)
            await ctx.tick().until(dut.beat.ready)
        ctx.set(dut.beat.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.done)
        for key, addr, data, count in (("w", dut.w_addr, dut.w_data, dut.weight_words),
                                       ("dw", dut.dw_addr, dut.dw_data, dut.dw_words),
                                       ("b", dut.b_addr, dut.b_data,
                                        dut.bias_values // plan.lanes)):
            for a in range(count):
                ctx.set(addr, a)
                await ctx.tick()
                got[key].append([int(v) for v in ctx.get(data)])
        for a in range(dut.refs):
            ctx.set(dut.ref_addr, [a, a])
            await ctx.tick()
            got["ref"].append(int(ctx.get(dut.ref_data)[0]))

    async def watch(ctx):
        async for _, _, lnv, lnp, *rpe in ctx.tick().sample(
                dut.ln_w.valid, dut.ln_w.payload,
                *((dut.rpe_w.valid, dut.rpe_w.payload) if plan.dims.use_pe else ())):
            if lnv:
                got["ln"].append((int(lnp.c), int(lnp.set_gamma), int(lnp.gamma),
                                  int(lnp.set_beta), int(lnp.beta)))
            if rpe and rpe[0]:
                got["rpe"].append((int(rpe[1].addr), [[int(v) for v in rpe[1].data[b]]
                                                      for b in range(4)]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(watch, background=True)
    sim.run()
    return dut, got


@pytest.mark.parametrize("cfg,gap", [(CONFIGS[0], 0.0), (CONFIGS[1], 0.3)],
                         ids=["ldat-a", "ldat-g2-tanh"])
def test_param_memories_hold_the_parameters(cfg, gap):
    plan, _, qp, _ = inputs(cfg)
    lay = plan.layout
    dut, got = load_and_read(plan, lay.pack_params(qp), gap, seed=2)
    el = lay.param_elements(qp)
    L, N = plan.lanes, plan.cols
    tiles = np.concatenate([el[n][0] for n in ("proj_q", "proj_k", "proj_v", "proj_out",
                                                "offset_proj")])
    assert np.array_equal(np.array(got["w"]).reshape(-1), tiles)
    assert np.array_equal(np.array(got["dw"]).reshape(-1), el["dwconv"][0])
    assert np.array_equal(np.array(got["b"]).reshape(-1), el["bias"][0])
    assert got["ref"] == el["reference"][0].tolist()
    cg = plan.dims.group_channels
    gammas = {c: g for c, sg, g, _, _ in got["ln"] if sg}
    betas = {c: b for c, _, _, sb, b in got["ln"] if sb}
    assert [gammas[c] for c in range(cg)] == qp.norm_w.tolist()
    assert [betas[c] for c in range(cg)] == qp.norm_b.tolist()
    banks = rpe_banks(qp.rpe)
    per = lay.bus_bytes // 8
    for addr, words in got["rpe"]:
        for b in range(4):
            want = banks[b, addr * per:(addr + 1) * per]
            assert words[b][:want.size] == want.tolist()
    assert len(got["rpe"]) * per >= banks.shape[1]
    assert dut.tile == L * N
