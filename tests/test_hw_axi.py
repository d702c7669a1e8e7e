# amaranth: UnusedElaboratable=no
"""AXI4 ports and burst rules against :func:`defslice.model.layout.split_bursts` and the
bus names cocotbext-axi expects."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, Shape, Signal
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from cocotbext.axi import axi_channels
from hw_support import simulate

from defslice import config as C
from defslice.hw.axi import (
    AddressSignature,
    BurstWalker,
    ReadDataSignature,
    axi_members,
    burst_beats,
)
from defslice.hw.params import derive
from defslice.model.layout import split_bursts


def _regions(p, seed):
    rng = np.random.default_rng(seed)
    bus = p.bus_bytes
    regions = [(0x0FC0 // bus * bus, 12), (0x1000 - bus, 1), (0x2000, 4096 // bus + 3),
               (0, 600)]
    for _ in range(60):
        regions.append((int(rng.integers(0, 1 << 16)) * bus, int(rng.integers(1, 1200))))
    return regions


def _hw_split(p, regions):
    """Walk each (addr, beats) region with the combinational burst-length logic."""
    m = Module()
    addr = Signal(p.addr_bits)
    rem = Signal(32)
    beats = burst_beats(m, p, addr, rem, "t")
    out = []

    async def tb(ctx):
        for a, n in regions:
            bursts = []
            while n:
                ctx.set(addr, a)
                ctx.set(rem, n)
                b = ctx.get(beats)
                bursts.append((a, b))
                a += b * p.bus_bytes
                n -= b
            out.append(bursts)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    return out


def _reference(p, regions):
    return [split_bursts(a, n * p.bus_bytes, p.bus_bytes, p.max_beats) for a, n in regions]


CASES = [("tiny", 256), ("dat56", 256), ("tiny", 7), ("dat56", 1)]


@pytest.mark.parametrize("preset,max_beats", CASES)
def test_burst_lengths_equal_split_bursts(preset, max_beats):
    p = derive(C.preset(preset).replace(hw={"max_burst_beats": max_beats}))
    regions = _regions(p, max_beats)
    got = _hw_split(p, regions)
    assert got == _reference(p, regions)
    for bursts in got:
        for addr, beats in bursts:
            assert 1 <= beats <= min(256, max_beats)
            assert addr // 4096 == (addr + beats * p.bus_bytes - 1) // 4096


@pytest.mark.parametrize("preset,max_beats", CASES[:3])
def test_burst_walker_issues_split_bursts_with_random_acceptance(preset, max_beats):
    p = derive(C.preset(preset).replace(hw={"max_burst_beats": max_beats}))
    regions = _regions(p, 100 + max_beats)[:30]
    dut = BurstWalker(p, "t")
    rng = random.Random(max_beats)
    got = []

    async def tb(ctx):
        for a, n in regions:
            ctx.set(dut.load_addr, a)
            ctx.set(dut.load_beats, n)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            assert not ctx.get(dut.ok)          # beats are one cycle late after a load
            bursts = []
            while True:
                await ctx.tick()
                for _ in range(rng.randrange(3)):   # the burst waits for acceptance
                    assert ctx.get(dut.ok)
                    await ctx.tick()
                assert ctx.get(dut.ok)
                addr, beats, last = ctx.get(dut.addr), ctx.get(dut.beats), ctx.get(dut.last)
                bursts.append((addr, beats))
                ctx.set(dut.advance, 1)
                await ctx.tick()
                ctx.set(dut.advance, 0)
                assert not ctx.get(dut.ok)
                if last:
                    assert ctx.get(dut.remaining) == 0
                    break
            got.append(bursts)

    simulate(dut, tb)
    assert got == _reference(p, regions)


def test_flat_ports_are_the_names_cocotbext_axi_expects():
    p = derive(C.preset("tiny"))
    members = axi_members(p)
    ours = {name.removeprefix("m_axi_") for name in members}
    required, optional = set(), set()
    for bus in ("AxiAWBus", "AxiWBus", "AxiBBus", "AxiARBus", "AxiRBus"):
        cls = getattr(axi_channels, bus)
        required |= set(cls._signals)
        optional |= set(cls._optional_signals)
    assert required <= ours <= required | optional
    # a master drives the address, write data and the two response READYs
    for name, member in members.items():
        sig = name.removeprefix("m_axi_")
        master_drives = (sig[:2] in ("aw", "ar") or sig[0] == "w") != sig.endswith("ready")
        assert member.flow == (Out if master_drives else In), name
    assert Shape.cast(members["m_axi_awaddr"].shape).width == p.addr_bits
    assert Shape.cast(members["m_axi_rdata"].shape).width == p.bus_bits


def test_signatures_refuse_bad_widths():
    with pytest.raises(ValueError, match="addr_bits"):
        AddressSignature(0)
    with pytest.raises(ValueError, match="data_bits"):
        ReadDataSignature(12)
    with pytest.raises(TypeError, match="HwParams"):
        BurstWalker(None, "x")
