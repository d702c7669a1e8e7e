# amaranth: UnusedElaboratable=no
"""Banked buffers against a dictionary: lane-masked writes, reads one cycle later."""

import numpy as np
import pytest
from amaranth.back import verilog
from hw_support import simulate

from defslice.hw.layer.buffers import BankedBuffer


def test_banked_buffer_matches_dictionary():
    dut = BankedBuffer(banks=4, depth=10, lanes=4, bits=12)
    rng = np.random.default_rng(0)
    model = {(b, a): [0] * 4 for b in range(4) for a in range(10)}
    seen, want = [], []

    async def tb(ctx):
        pending = None
        for _ in range(300):
            wr = []
            for _bank in range(4):
                en = int(rng.integers(0, 16)) if rng.random() < 0.5 else 0
                addr = int(rng.integers(0, 10))
                vals = [int(v) for v in rng.integers(-2048, 2048, size=4)]
                wr.append({"en": en, "addr": addr, "data": vals})
            rd = [int(rng.integers(0, 10)) for _ in range(4)]
            ctx.set(dut.wr, wr)
            ctx.set(dut.rd_addr, rd)
            # The read port returns the word before this cycle's write (not transparent).
            expect = [list(model[(b, rd[b])]) for b in range(4)]
            for b, w in enumerate(wr):
                for lane in range(4):
                    if w["en"] >> lane & 1:
                        model[(b, w["addr"])][lane] = w["data"][lane]
            _, _, data = await ctx.tick().sample(dut.rd_data)
            if pending is not None:
                seen.append([[int(v) for v in data[b]] for b in range(4)])
                want.append(pending)
            pending = expect

    simulate(dut, tb)
    assert seen == want and len(seen) > 200


def test_block_ram_style_marks_every_bank():
    """``ram_style="block"`` reaches the Verilog as an attribute on each bank memory (what
    yosys maps by); without it there is none."""
    marked = verilog.convert(BankedBuffer(3, 32, 4, 16, ram_style="block"), name="buf")
    assert marked.count('(* ram_style = "block" *)') == 3
    assert "ram_style" not in verilog.convert(BankedBuffer(3, 32, 4, 16), name="buf")
    with pytest.raises(ValueError, match="ram_style"):
        BankedBuffer(3, 32, 4, 16, ram_style="lut")
