"""Window banks against a Python memory: random writes and reads, chunked or not, and the
busy flags of the buffer sets."""

import random

import pytest
from hw_support import simulate

from defslice import config as C
from defslice.hw.banks import BANKS, READ_LATENCY, WindowBanks
from defslice.hw.params import bank_chunk_depths, derive


@pytest.mark.parametrize("preset", ["tiny", "dat56"])
def test_reads_return_what_was_written(preset):
    p = derive(C.preset(preset))
    chunks = len(bank_chunk_depths(p.bank_depth, p.word_bits))
    assert chunks == (1 if preset == "tiny" else 5)
    dut = WindowBanks(p)
    rng = random.Random(3)
    model = [dict() for _ in range(BANKS)]      # bank -> {address: word}
    # Addresses near the chunk boundaries and at both ends, then anywhere.
    hot = sorted({0, p.bank_depth - 1, *range(500, 530), *range(1020, 1030)}
                 & set(range(p.bank_depth)))
    checked = [0]

    def addr():
        return rng.choice(hot) if rng.random() < 0.5 else rng.randrange(p.bank_depth)

    async def tb(ctx):
        expect = []          # per cycle: the words the read of that cycle must return
        for cycle in range(600):
            en = rng.randrange(16)
            waddr, wdata = addr(), rng.getrandbits(p.word_bits)
            raddr = [addr() for _ in range(BANKS)]
            ctx.set(dut.wr_en, en)
            ctx.set(dut.wr_addr, waddr)
            ctx.set(dut.wr_data, wdata)
            ctx.set(dut.rd.addr, raddr)
            # A read sees the memory before this cycle's write (not transparent).
            expect.append([model[b].get(raddr[b]) for b in range(BANKS)])
            for b in range(BANKS):
                if en >> b & 1:
                    model[b][waddr] = wdata
            if cycle >= READ_LATENCY:
                got = ctx.get(dut.rd.data)
                for b, want in enumerate(expect[cycle - READ_LATENCY]):
                    if want is not None:
                        assert int(got[b]) == want, (cycle, b)
                        checked[0] += 1
            await ctx.tick()

    simulate(dut, tb)
    assert checked[0] > 500


def test_set_flags_follow_claims_releases_and_clear():
    p = derive(C.preset("tiny"))
    assert p.sets == 2
    dut = WindowBanks(p)
    rng = random.Random(8)

    async def tb(ctx):
        busy = 0
        for _ in range(300):
            assert ctx.get(dut.busy) == busy
            claim, cset = rng.randrange(2), rng.randrange(2)
            release, rset = rng.randrange(2), rng.randrange(2)
            if claim and release and cset == rset:
                release = 0                     # never the set being claimed
            clear = int(rng.random() < 0.05)
            for name, v in (("claim", claim), ("claim_set", cset), ("release", release),
                            ("release_set", rset), ("clear", clear)):
                ctx.set(getattr(dut, name), v)
            if claim:
                busy |= 1 << cset
            if release:
                busy &= ~(1 << rset)
            if clear:
                busy = 0
            await ctx.tick()

    simulate(dut, tb)
