"""Read address generator against :meth:`SlicedProgram.transfers`: the same bursts in the
same order per agent, tags in AR order, no buffer set claimed twice, no query FIFO
overflow."""

import random

import pytest
from hw_support import program, simulate

from defslice import config as C
from defslice.hw.params import derive
from defslice.hw.reader import Reader, Tag, query_fifo_depth
from defslice.model.layout import WINDOW_FIELDS

VARIANTS = {
    "tiny": {},
    "burst2-single": {"hw": {"max_burst_beats": 2, "buffering": "single"}},
    "3lvl-3x5": {"workload": {"levels": ((8, 8), (4, 4), (2, 2))},
                 "slicing": {"slice_h": 3, "slice_w": 5}},
}


def run_reader(cfg, prog, seed, max_cycles=40_000):
    """Drive the reader as the router, the banks and the query consumer would."""
    p = derive(cfg)
    dut = Reader(p)
    lay = prog.layout
    rng = random.Random(seed)
    res = {"ar": [], "tags": [], "max_level": 0, "claims": [], "load_sets": []}

    async def tb(ctx):
        for name, v in (("value_base", lay.value_base), ("desc_base", lay.desc_base),
                        ("num_desc", len(prog.descriptors))):
            ctx.set(getattr(dut, name), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        desc_beats = 0          # descriptor beats requested
        parse = None            # [descriptor, cycles until parsed]
        parsed = 0              # descriptors parsed so far
        busy = {}               # set -> cycles until the slice computed
        in_flight = level = 0   # query beats requested not yet written; FIFO level
        acked = 0
        for _ in range(max_cycles):
            ctx.set(dut.ar.ready, int(rng.random() < 0.7))
            ctx.set(dut.tags.ready, int(rng.random() < 0.6))
            if parse and parse[1] == 0:
                d = prog.descriptors[parse[0]]
                ctx.set(dut.desc.parsed, 1)
                ctx.set(dut.desc.win, [dict(zip(WINDOW_FIELDS, w, strict=True)) for w in d.windows])
                ctx.set(dut.desc.query_addr, lay.query_base + d.query_start * lay.query_stride)
                ctx.set(dut.desc.query_beats, d.query_count * p.query_beats)
            else:
                ctx.set(dut.desc.parsed, 0)
            ctx.set(dut.set_busy, sum(1 << s for s in busy))
            push = int(in_flight > 0 and rng.random() < 0.6)
            ctx.set(dut.q_push, push)
            ctx.set(dut.q_level, level)
            (_, _, arv, arr, addr, alen, tv, tr, tag, ack, claim, cset, lset,
             done) = await ctx.tick().sample(
                dut.ar.valid, dut.ar.ready, dut.ar.addr, dut.ar.len, dut.tags.valid,
                dut.tags.ready, dut.tags.payload, dut.desc.parse_ack, dut.claim, dut.claim_set,
                dut.desc.load_set, dut.done)
            if arv and arr:
                kind = "query" if lay.query_base <= addr < lay.desc_base else \
                    "descriptor" if addr >= lay.desc_base else "value"
                res["ar"].append((addr, alen + 1, kind))
                if kind == "descriptor":
                    desc_beats += alen + 1
                if kind == "query":
                    in_flight += alen + 1
            if tv and tr:
                res["tags"].append(Tag(tag))
            if parse is None and parsed < desc_beats // p.desc_beats:
                parse = [parsed, rng.randrange(6)]
            elif parse and parse[1]:
                parse[1] -= 1
            if ack:
                assert parse and parse[1] == 0
                parse, parsed = None, parsed + 1
            if acked:
                res["load_sets"].append(lset)
            acked = ack
            if claim:
                assert cset not in busy, "a busy buffer set was claimed"
                busy[cset] = rng.randrange(5, 40)
                res["claims"].append(cset)
            busy = {s: t - 1 for s, t in busy.items() if t > 1}
            in_flight -= push
            level += push
            if level and rng.random() < 0.3:
                level -= 1
            res["max_level"] = max(res["max_level"], level + in_flight)
            if done and len(res["tags"]) == len(res["ar"]):
                return
        raise AssertionError("the reader did not finish")

    simulate(dut, tb)
    return p, res


@pytest.mark.parametrize("name", VARIANTS)
def test_reader_issues_the_transfers_in_order(name):
    cfg = C.preset("tiny").replace(**VARIANTS[name])
    prog = program(cfg, 1)
    p, res = run_reader(cfg, prog, seed=len(name))
    want = [(b.addr, b.beats, b.tensor) for b in prog.transfers() if not b.write]
    # Per agent the order is the contract's; between agents bursts interleave.
    for agent in (("descriptor", "value"), ("query",)):
        assert [b for b in res["ar"] if b[2] in agent] == [b for b in want if b[2] in agent]
    kinds = {"descriptor": Tag.DESC, "value": Tag.WINDOW, "query": Tag.QUERY}
    assert res["tags"] == [kinds[b[2]] for b in res["ar"]]
    # The query FIFO never overflows, and it did fill up.
    assert query_fifo_depth(p) // 2 < res["max_level"] <= query_fifo_depth(p)
    sets = [k % 2 for k in range(len(prog.descriptors))] if p.sets == 2 else \
        [0] * len(prog.descriptors)
    assert res["claims"] == sets
    assert res["load_sets"] == sets
    # Query bursts were interleaved with the next slice's window (double buffering).
    if p.sets == 2:
        order = [b[2] for b in res["ar"]]
        assert any(order[k] == "query" and order[k + 1] == "value"
                   for k in range(len(order) - 1))
