"""Burst splitting of the AXI master against :func:`defslice.model.layout.split_bursts`."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from defslice import config as C
from defslice.hw.params import derive
from defslice.hw.top import burst_beats
from defslice.model.layout import split_bursts


def _hw_split(p, regions):
    """Walk each (addr, beats) region with the hardware burst-length logic."""
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


@pytest.mark.parametrize("preset,max_beats", [("tiny", 256), ("dat56", 256), ("tiny", 7),
                                              ("dat56", 1)])
def test_burst_lengths_equal_split_bursts(preset, max_beats):
    cfg = C.preset(preset).replace(hw={"max_burst_beats": max_beats})
    p = derive(cfg)
    rng = np.random.default_rng(max_beats)
    bus = p.bus_bytes
    regions = [(0x0FC0 // bus * bus, 12), (0x1000 - bus, 1), (0x2000, 4096 // bus + 3),
               (0, 600)]
    for _ in range(60):
        regions.append((int(rng.integers(0, 1 << 16)) * bus, int(rng.integers(1, 1200))))
    got = _hw_split(p, regions)
    for (a, n), bursts in zip(regions, got, strict=True):
        assert bursts == split_bursts(a, n * bus, bus, max_beats)
        for addr, beats in bursts:
            assert 1 <= beats <= min(256, max_beats)
            assert addr // 4096 == (addr + beats * bus - 1) // 4096
