"""Window banks against a Python memory: random writes and reads, chunked or not, and the
busy flags of the buffer sets."""

import dataclasses
import random

import pytest
from hw_support import simulate

from defslice import config as C
from defslice.hw.banks import BANKS, READ_LATENCY, WindowBanks
from defslice.hw.params import bank_chunk_depths, derive


@pytest.mark.parametrize(("preset", "set_depth", "chunks"), [
    ("tiny", None, [None]),
    ("dat56", None, [2048, 112]),               # 2 sets x 1080 words of 128 bits
    ("dat56", 1600, [2048, 512, 512, 128]),     # a 2048-word chunk, then 512-word ones
])
def test_reads_return_what_was_written(preset, set_depth, chunks):
    p = derive(C.preset(preset))
    if set_depth is not None:
        p = dataclasses.replace(p, set_depth=set_depth)
    assert bank_chunk_depths(p.bank_depth, p.word_bits) == \
        ([p.bank_depth] if chunks == [None] else chunks)
    dut = WindowBanks(p)
    rng = random.Random(3)
    model = [dict() for _ in range(BANKS)]      # bank -> {address: word}
    # Addresses near the chunk boundaries and at both ends, then anywhere.
    edges = {a for e in (512, 1024, 2048, 2560, 3072) for a in range(e - 8, e + 8)}
    hot = sorted({0, p.bank_depth - 1, *edges} & set(range(p.bank_depth)))
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
