# amaranth: UnusedElaboratable=no
"""A memory cut at 2048 words against a Python list: lane-masked writes, reads one cycle
later, across the chunk boundaries."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import unsigned
from amaranth.lib import data
from hw_support import simulate

from defslice.hw.bram import DEEP_WORDS, deep_chunk_depths
from defslice.hw.deep_memory import DeepMemory


def test_chunk_depths():
    assert deep_chunk_depths(100) == [100]
    assert deep_chunk_depths(DEEP_WORDS) == [DEEP_WORDS]
    assert deep_chunk_depths(2160) == [2048, 112]
    assert deep_chunk_depths(4096 + 5) == [2048, 2048, 5]


def _run(dut, depth, lanes, rng, cycles=400):
    """Random writes and reads, half of them near the chunk boundaries; returns the words
    read and the words a Python list gives for the same accesses."""
    edges = [a for e in range(DEEP_WORDS, depth, DEEP_WORDS) for a in range(e - 4, e + 4)]
    hot = sorted({0, depth - 1, *edges})

    def addr():
        return int(rng.choice(hot)) if rng.random() < 0.5 else int(rng.integers(0, depth))

    model = [[0] * lanes for _ in range(depth)]
    seen, want = [], []

    async def tb(ctx):
        pending = None
        for _ in range(cycles):
            en = int(rng.integers(0, 1 << lanes)) if rng.random() < 0.6 else 0
            waddr, raddr = addr(), addr()
            vals = [int(v) for v in rng.integers(0, 1 << 9, size=lanes)]
            ctx.set(dut.w_en, en)
            ctx.set(dut.w_addr, waddr)
            ctx.set(dut.w_data, vals if lanes > 1 else vals[0])
            ctx.set(dut.r_addr, raddr)
            expect = list(model[raddr])     # not transparent: the word before this write
            for lane in range(lanes):
                if en >> lane & 1:
                    model[waddr][lane] = vals[lane]
            _, _, got = await ctx.tick().sample(dut.r_data)
            if pending is not None:
                seen.append([int(v) for v in got] if lanes > 1 else [int(got)])
                want.append(pending)
            pending = expect

    simulate(dut, tb)
    return seen, want


@pytest.mark.parametrize(("depth", "lanes"), [(100, 4), (2048, 2), (2160, 4), (4200, 1)])
def test_deep_memory_matches_list(depth, lanes):
    shape = data.ArrayLayout(unsigned(9), lanes) if lanes > 1 else unsigned(9)
    dut = DeepMemory(shape, depth, lanes if lanes > 1 else None)
    assert dut.depths == deep_chunk_depths(depth)
    seen, want = _run(dut, depth, lanes, np.random.default_rng(depth))
    assert seen == want and len(seen) > 300


def test_each_chunk_is_its_own_memory():
    """The Verilog holds one memory per chunk, each with the attributes given."""
    text = verilog.convert(DeepMemory(unsigned(64), 2160, attrs={"ram_style": "block"}),
                           name="deep")
    assert text.count('(* ram_style = "block" *)') == 2
    assert "reg [63:0] chunk0 [2047:0]" in text and "reg [63:0] chunk1 [111:0]" in text


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="depth"):
        DeepMemory(unsigned(8), 0)
    with pytest.raises(ValueError, match="lanes=4"):
        DeepMemory(unsigned(8), 16, lanes=4)
