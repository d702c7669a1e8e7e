"""The board wrapper: UART bridge -> registers, AXI RAM serving the accelerator."""

import numpy as np

from defslice import config as C
from defslice.hw import regmap
from defslice.hw.board import BoardTop
from defslice.hw.params import derive
from defslice.model.fixed import quantize_inputs
from defslice.model.layout import SlicedProgram
from defslice.model.workload import make_workload

DIV = 4


def test_board_runs_tiny_through_uart_and_ram():
    from amaranth.sim import Simulator

    cfg = C.preset("tiny")
    wl = make_workload(cfg, 1)
    prog = SlicedProgram(cfg, quantize_inputs(cfg.numerics, *wl.args), wl.reference_points)
    lay = prog.layout
    board = BoardTop(derive(cfg), uart_divisor=DIV, image=prog.memory_image())
    assert board.ram_bytes >= lay.total_bytes
    got = {}

    async def tb(ctx):
        br = board._bridge

        async def send(byte):
            for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                ctx.set(br.rx, bit)
                await ctx.tick().repeat(DIV)

        async def recv():
            while ctx.get(br.tx):
                await ctx.tick()
            await ctx.tick().repeat(DIV + DIV // 2)
            value = 0
            for k in range(8):
                value |= ctx.get(br.tx) << k
                await ctx.tick().repeat(DIV)
            return value

        async def command(op, addr, data=0):
            for byte in bytes([ord(op)]) + addr.to_bytes(4, "little") \
                    + data.to_bytes(4, "little"):
                await send(byte)
            n = 1 if op == "W" else 4
            return int.from_bytes(bytes([await recv() for _ in range(n)]), "little")

        assert await command("R", regmap.offset("ID")) == regmap.ID_VALUE
        for name, value in (("VALUE_BASE", lay.value_base), ("QUERY_BASE", lay.query_base),
                            ("DESC_BASE", lay.desc_base), ("OUT_BASE", lay.out_base),
                            ("NUM_DESC", len(prog.descriptors))):
            assert await command("W", regmap.offset(name), value) == ord("K")
            assert await command("R", regmap.offset(name)) == value
        await command("W", regmap.offset("CTRL"), 1)
        for _ in range(20000):
            await ctx.tick()
            if ctx.get(board.top.irq):
                break
        got["status"] = await command("R", regmap.offset("STATUS"))
        # A RAM word through the bridge, then every output word straight from the RAM.
        got["word"] = await command("R", (1 << 31) | lay.out_base)
        mem = board.ram.mem
        words = [ctx.get(mem.data[k]) for k in range(mem.depth)]
        got["ram"] = b"".join(w.to_bytes(lay.bus_bytes, "little") for w in words)

    sim = Simulator(board)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got["status"] == 0b10
    out = lay.unpack_outputs(got["ram"][lay.out_base:], prog.inputs.x.shape[1])
    np.testing.assert_array_equal(out, prog.expected_outputs())
    assert got["word"] == int.from_bytes(got["ram"][lay.out_base:lay.out_base + 4], "little")
