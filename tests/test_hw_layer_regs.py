"""The layer engine's register map and the register file built from it."""

import random

import pytest
from amaranth.sim import Simulator

from defslice.hw import regmap
from defslice.hw.regs import ControlRegs


def test_layer_map_shares_the_sampling_offsets():
    lay, smp = regmap.LAYER_MAP, regmap.SAMPLING_MAP
    offsets = [o for o, _, _ in lay.registers.values()]
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < 1 << regmap.ADDR_BITS for o in offsets)
    for name in set(lay.registers) & set(smp.registers) - {"ID"}:
        assert lay.offset(name) == smp.offset(name)
    assert set(lay.settings) | set(lay.counters) | {"CTRL", "STATUS", "ID"} \
        == set(lay.registers)
    assert all(lay.registers[n][1] == "rw" for n in lay.settings)
    assert all(lay.registers[n][1] == "r" for n in lay.counters)
    assert lay.id_value != smp.id_value
    assert {"WEIGHT_BASE", "OUT_BASE", "ARRAY_BUSY", "STALL_CYCLES", "LOAD_CYCLES",
            "READ_BURSTS", "WRITE_BEATS"} <= set(lay.registers)


class _Model:
    """Python reference of the register file: byte-strobed writes, reads by offset."""

    def __init__(self, rmap):
        self.rmap = rmap
        self.regs = dict.fromkeys(rmap.settings, 0)

    def write(self, addr, value, strb):
        for name in self.rmap.settings:
            if self.rmap.offset(name) == addr:
                mask = sum(0xFF << (8 * b) for b in range(4) if strb >> b & 1)
                self.regs[name] = self.regs[name] & ~mask | value & mask

    def read(self, addr, counters, status):
        if addr == self.rmap.offset("STATUS"):
            return status
        if addr == self.rmap.offset("ID"):
            return self.rmap.id_value
        for name in self.rmap.settings:
            if self.rmap.offset(name) == addr:
                return self.regs[name]
        for name in self.rmap.counters:
            if self.rmap.offset(name) == addr:
                return counters[name]
        return 0


async def _write(ctx, dut, addr, value, strb=0xF):
    ctx.set(dut.s_axil_awaddr, addr)
    ctx.set(dut.s_axil_wdata, value)
    ctx.set(dut.s_axil_wstrb, strb)
    ctx.set(dut.s_axil_awvalid, 1)
    ctx.set(dut.s_axil_wvalid, 1)
    start = 0
    while True:
        _, _, ready, pulse = await ctx.tick().sample(dut.s_axil_awready, dut.start)
        start |= pulse
        if ready:
            break
    ctx.set(dut.s_axil_awvalid, 0)
    ctx.set(dut.s_axil_wvalid, 0)
    ctx.set(dut.s_axil_bready, 1)
    while True:
        _, _, bvalid, pulse = await ctx.tick().sample(dut.s_axil_bvalid, dut.start)
        start |= pulse
        if bvalid:
            break
    ctx.set(dut.s_axil_bready, 0)
    return start


async def _read(ctx, dut, addr):
    ctx.set(dut.s_axil_araddr, addr)
    ctx.set(dut.s_axil_arvalid, 1)
    await ctx.tick().until(dut.s_axil_arready)
    ctx.set(dut.s_axil_arvalid, 0)
    ctx.set(dut.s_axil_rready, 1)
    while True:
        _, _, rvalid, rdata = await ctx.tick().sample(dut.s_axil_rvalid, dut.s_axil_rdata)
        if rvalid:
            ctx.set(dut.s_axil_rready, 0)
            return rdata


@pytest.mark.parametrize("rmap", [regmap.LAYER_MAP, regmap.SAMPLING_MAP],
                         ids=["layer", "sampling"])
def test_register_file_against_the_model(rmap):
    dut = ControlRegs(rmap)
    model = _Model(rmap)
    rnd = random.Random(3)
    counters = {name: rnd.getrandbits(32) for name in rmap.counters}
    seen = []

    async def tb(ctx):
        for name, value in counters.items():
            ctx.set(getattr(dut, name.lower()), value)
        ctx.set(dut.busy, 0)
        ctx.set(dut.done, 1)
        ctx.set(dut.error_resp, 1)
        for _ in range(40):
            name = rnd.choice(rmap.settings)
            value, strb = rnd.getrandbits(32), rnd.choice([0xF, 0x1, 0x6, 0x8])
            await _write(ctx, dut, rmap.offset(name), value, strb)
            model.write(rmap.offset(name), value, strb)
        for name in rmap.registers:
            seen.append((name, await _read(ctx, dut, rmap.offset(name))))
        # CTRL.start pulses once when idle, never while busy.
        assert await _write(ctx, dut, rmap.offset("CTRL"), 1)
        ctx.set(dut.busy, 1)
        assert not await _write(ctx, dut, rmap.offset("CTRL"), 1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    status = 0b1010
    for name, got in seen:
        assert got == model.read(rmap.offset(name), counters, status), name
    assert {name for name, _ in seen} == set(rmap.registers)
    assert any(v for name, v in seen if name in rmap.settings)
