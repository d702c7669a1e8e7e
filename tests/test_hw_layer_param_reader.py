"""The parameter reader against split_bursts and a Python AXI memory: the parameter
region's bursts first, its beats in order into the parameter stream, the loader's reads
after them and their beats to the loader, under random back-pressure."""

import random

import pytest
from hw_support import simulate
from layer_support import CONFIGS

from defslice import config as C
from defslice.hw.layer.param_reader import ParamReader
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.params import derive
from defslice.hw.simulate import AxiMemory
from defslice.model.layout import Burst, split_bursts


def _run(cfg, base, beats, loader_bursts, seed):
    """Start the reader, offer the loader's bursts from the first cycle on; return the
    bursts on the bus, the parameter beats and the loader's beats received."""
    p = derive(cfg)
    bus = p.bus_bytes
    rng = random.Random(seed)
    top = max([base + beats * bus] + [a + n * bus for a, n in loader_bursts])
    mem = bytearray(rng.getrandbits(8) for _ in range(top))
    dut = ParamReader(p, beats)
    memory = AxiMemory(lambda ch, name: getattr(getattr(dut, ch), name), mem, bus, rng,
                       writes=False)
    got_params, got_loader = [], []
    want_loader = sum(n for _, n in loader_bursts)

    async def tb(ctx):
        ctx.set(dut.weight_base, base)
        ctx.set(dut.start, 1)
        await memory.step(ctx)
        ctx.set(dut.start, 0)
        todo = list(loader_bursts)
        for _ in range(50_000):
            if todo:                        # an AR, held until accepted
                ctx.set(dut.loader_ar.valid, 1)
                ctx.set(dut.loader_ar.addr, todo[0][0])
                ctx.set(dut.loader_ar.len, todo[0][1] - 1)
            else:
                ctx.set(dut.loader_ar.valid, 0)
            p_rdy, l_rdy = rng.random() < 0.6, rng.random() < 0.6
            ctx.set(dut.params.ready, p_rdy)
            ctx.set(dut.loader_r.ready, l_rdy)
            (ar_ok, pv, pd, lv, ld, busy) = await memory.step(
                ctx, dut.loader_ar.ready, dut.params.valid, dut.params.payload,
                dut.loader_r.valid, dut.loader_r.data, dut.busy)
            if todo and ar_ok:
                todo.pop(0)
            if pv and p_rdy:
                got_params.append(pd)
            if lv and l_rdy:
                got_loader.append(ld)
            if not busy and not todo and len(got_loader) == want_loader:
                return
        raise AssertionError("the reads did not finish")

    simulate(dut, tb)
    words = [int.from_bytes(mem[a:a + bus], "little") for a in range(base, top, bus)]
    return memory.bursts, got_params, got_loader, words, mem


@pytest.mark.parametrize("cfg", [CONFIGS[0], C.preset("dat56").replace(hw={"engine": "layer"})],
                         ids=lambda c: c.name)
def test_parameter_region_then_the_loader(cfg):
    p = derive(cfg)
    bus = p.bus_bytes
    lay = LayerPlan.from_config(cfg).layout
    beats = lay.param_bytes // bus
    assert beats * bus == lay.param_bytes
    base = lay.param_base + 0x0FC0          # across 4 KiB boundaries
    loader = [(base + (beats + 3) * bus, 5), (base + (beats + 40) * bus, 2)]
    bursts, params, got_loader, _, mem = _run(cfg, base, beats, loader, seed=1)
    want = [Burst(a, n, False, "") for a, n in split_bursts(base, beats * bus, bus,
                                                              p.max_beats)]
    assert bursts[:len(want)] == want
    assert [(b.addr, b.beats) for b in bursts[len(want):]] == loader
    assert params == [int.from_bytes(mem[base + k * bus:base + (k + 1) * bus], "little")
                      for k in range(beats)]
    assert got_loader == [int.from_bytes(mem[a + k * bus:a + (k + 1) * bus], "little")
                          for a, n in loader for k in range(n)]


def test_short_bursts_near_a_page_boundary():
    cfg = CONFIGS[1].replace(hw={"max_burst_beats": 3})
    p = derive(cfg)
    bus = p.bus_bytes
    for seed, base in ((2, 0x1000 - 2 * p.bus_bytes), (3, 0x40)):
        bursts, params, _, _, mem = _run(cfg, base, 7, [], seed)
        assert [(b.addr, b.beats) for b in bursts] == split_bursts(base, 7 * bus, bus, 3)
        assert len(params) == 7
        assert params[-1] == int.from_bytes(mem[base + 6 * bus:base + 7 * bus], "little")
