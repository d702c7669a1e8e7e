"""The output writer against :func:`split_bursts` and a Python AXI memory: bursts, data
placement, WLAST, idle only when every burst is answered, response errors."""

import random

import pytest
from hw_support import simulate

from defslice import config as C
from defslice.hw.params import derive
from defslice.hw.simulate import AxiMemory
from defslice.hw.writer import Writer
from defslice.model.layout import split_bursts


@pytest.mark.parametrize("max_beats", [256, 3])
def test_writer_issues_split_bursts_and_places_the_data(max_beats):
    p = derive(C.preset("tiny").replace(hw={"max_burst_beats": max_beats}))
    bus = p.bus_bytes
    rng = random.Random(max_beats)
    # Regions near and across 4 KiB boundaries, an empty one, long ones.
    regions = [(0x0FE0, 9), (0x2000, 0), (0x2FF0, 2), (0x3000, 700), (0x5010, 1),
               (0x6000 - 5 * bus, 600)]
    data = [[rng.getrandbits(p.bus_bits) for _ in range(n)] for _, n in regions]
    dut = Writer(p)
    memory = AxiMemory(lambda ch, name: getattr(getattr(dut, ch), name),
                       bytearray(0x8000), bus, rng, reads=False)
    idle_while_pending = []

    async def tb(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        todo = list(regions)
        beats = [v for d in data for v in d]
        rv = dv = 0             # a stream source holds VALID until the transfer
        for _ in range(20_000):
            rv = int(bool(todo) and (rv or rng.random() < 0.5))
            ctx.set(dut.region.valid, rv)
            if rv:
                ctx.set(dut.region.payload, {"addr": todo[0][0], "beats": todo[0][1]})
            dv = int(bool(beats) and (dv or rng.random() < 0.7))
            ctx.set(dut.data.valid, dv)
            if dv:
                ctx.set(dut.data.payload, beats[0])
            r_rdy, d_rdy, idle = await memory.step(ctx, dut.region.ready, dut.data.ready,
                                                   dut.idle)
            if rv and r_rdy:
                todo.pop(0)
                rv = 0
            if dv and d_rdy:
                beats.pop(0)
                dv = 0
            if idle and memory.pending_responses:
                idle_while_pending.append(True)
            if idle and not todo and not beats and not memory.pending_responses:
                return
        raise AssertionError("the writer did not finish")

    simulate(dut, tb)
    want = [(a, n) for addr, beats in regions
            for a, n in split_bursts(addr, beats * bus, bus, max_beats)]
    assert [(b.addr, b.beats) for b in memory.bursts] == want
    assert all(b.write for b in memory.bursts)
    for (addr, _), words in zip(regions, data, strict=True):
        for k, v in enumerate(words):
            assert memory.mem[addr + k * bus:addr + (k + 1) * bus] == v.to_bytes(bus, "little")
    assert not idle_while_pending


def test_write_error_is_reported_until_the_next_start():
    p = derive(C.preset("tiny"))
    dut = Writer(p)

    async def tb(ctx):
        ctx.set(dut.region.valid, 1)
        ctx.set(dut.region.payload, {"addr": 0x100, "beats": 1})
        ctx.set(dut.data.valid, 1)
        ctx.set(dut.aw.ready, 1)
        ctx.set(dut.w.ready, 1)
        await ctx.tick().until(dut.region.ready)
        ctx.set(dut.region.valid, 0)
        *_, last = await ctx.tick().sample(dut.w.last).until(dut.w.valid)
        assert last                             # a one-beat burst
        ctx.set(dut.data.valid, 0)
        await ctx.tick()
        assert not ctx.get(dut.idle)            # the burst is not answered yet
        ctx.set(dut.b.valid, 1)
        ctx.set(dut.b.resp, 2)                  # SLVERR
        await ctx.tick()
        ctx.set(dut.b.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.error_resp) and ctx.get(dut.idle)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick()
        assert not ctx.get(dut.error_resp)

    simulate(dut, tb)
