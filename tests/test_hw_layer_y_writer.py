"""The y writer against layer_transfers and a Python AXI memory: the output bursts of
every slice in order, each y beat at its pixel's address, under random back-pressure."""

import random

import pytest
from hw_support import simulate
from layer_support import CONFIGS

from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.y_writer import YWriter
from defslice.hw.params import derive
from defslice.hw.simulate import AxiMemory
from defslice.model.layer_layout import layer_transfers


@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[2].replace(hw={"max_burst_beats": 4})],
                         ids=lambda c: c.name)
def test_slices_rows_as_the_transfer_list(cfg):
    p = derive(cfg)
    plan = LayerPlan.from_config(cfg)
    lay, tasks, d = plan.layout, plan.tasks, plan.dims
    bus = lay.bus_bytes
    pb = lay.out_stride // bus
    rng = random.Random(5)
    # Every slice's pixels row-major, pb beats each: ((row, col, beat), word).
    beats = [((r, c, k), rng.getrandbits(8 * bus)) for t in tasks
             for r in range(t.region.row0, t.region.row0 + t.region.rows)
             for c in range(t.region.col0, t.region.col0 + t.region.cols) for k in range(pb)]
    dut = YWriter(p, d.width, lay.out_stride)
    memory = AxiMemory(lambda ch, name: getattr(getattr(dut, ch), name),
                       bytearray(lay.y_base + d.height * d.width * lay.out_stride), bus, rng,
                       reads=False)

    async def tb(ctx):
        ctx.set(dut.out_base, lay.y_base)
        ctx.set(dut.start, 1)
        await memory.step(ctx)
        ctx.set(dut.start, 0)
        todo, ys = list(tasks), list(beats)
        sv = yv = 0                     # a stream source holds VALID until the transfer
        for _ in range(100_000):
            sv = int(bool(todo) and (sv or rng.random() < 0.3))
            ctx.set(dut.slices.valid, sv)
            if sv:
                g = todo[0].region
                ctx.set(dut.slices.payload, {"row0": g.row0, "col0": g.col0, "rows": g.rows,
                                             "cols": g.cols})
            yv = int(bool(ys) and (yv or rng.random() < 0.7))
            ctx.set(dut.y.valid, yv)
            if yv:
                ctx.set(dut.y.payload, ys[0][1])
            s_rdy, y_rdy, idle = await memory.step(ctx, dut.slices.ready, dut.y.ready,
                                                   dut.idle)
            if sv and s_rdy:
                todo.pop(0)
                sv = 0
            if yv and y_rdy:
                ys.pop(0)
                yv = 0
            if idle and not todo and not ys and not memory.pending_responses:
                return
        raise AssertionError("the writer did not finish")

    simulate(dut, tb)
    want = [(b.addr, b.beats) for b in layer_transfers(lay, tasks) if b.write]
    assert [(b.addr, b.beats) for b in memory.bursts] == want
    for (r, c, k), word in beats:
        a = lay.y_addr(r, c) + k * bus
        assert memory.mem[a:a + bus] == word.to_bytes(bus, "little")
