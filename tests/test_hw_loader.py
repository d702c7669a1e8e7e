"""The loader on its own (reader + router + banks) against a Python AXI memory: every
slice's window read back from the banks, the query records, the read bursts of
:meth:`SlicedProgram.transfers`."""

import random

import pytest
from hw_support import memory_of, program, simulate, window_words

from defslice import config as C
from defslice.hw.banks import BANKS, READ_LATENCY
from defslice.hw.loader import Loader
from defslice.hw.params import derive
from defslice.hw.simulate import AxiMemory
from defslice.model.layout import WINDOW_FIELDS

VARIANTS = {
    "tiny": {},
    "single-burst3": {"hw": {"buffering": "single", "max_burst_beats": 3}},
    "3lvl-lanes4": {"workload": {"levels": ((8, 8), (4, 4), (2, 2))}, "hw": {"lanes": 4},
                    "slicing": {"slice_h": 3, "slice_w": 5}},
}


def run_loader(cfg, prog, seed, max_cycles=60_000):
    """Load ``prog`` and, per handed-off slice, read its window back and release it."""
    p = derive(cfg)
    dut = Loader(p)
    lay = prog.layout
    rng = random.Random(seed)
    memory = AxiMemory(lambda ch, name: getattr(getattr(dut, ch), name), memory_of(prog),
                       lay.bus_bytes, rng, writes=False, tensor=lay.tensor_at)
    res = {"slices": [], "queries": [], "mismatches": 0, "checked": 0, "done": False}

    async def tb(ctx):
        for name in ("value_base", "query_base", "desc_base", "out_base"):
            ctx.set(getattr(dut, name), getattr(lay, name))
        ctx.set(dut.num_desc, len(prog.descriptors))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        todo, pending, holding = [], [], None     # words to read, reads in flight, set
        for _ in range(max_cycles):
            release = holding is not None and not todo and not pending
            ctx.set(dut.release, int(release))
            ctx.set(dut.release_set, holding or 0)
            if release:
                holding = None
            ctx.set(dut.slice.ready, int(holding is None and rng.random() < 0.5))
            ctx.set(dut.queries.ready, int(rng.random() < 0.7))
            batch = {}
            while todo and todo[0][0] not in batch:
                bank, addr, want = todo.pop(0)
                batch[bank] = (addr, want)
            ctx.set(dut.banks.addr, [batch.get(b, (0, None))[0] for b in range(BANKS)])
            pending.append(batch)
            sv, sr, sd, qv, qr, qd, data, done = await memory.step(
                ctx, dut.slice.valid, dut.slice.ready, dut.slice.payload, dut.queries.valid,
                dut.queries.ready, dut.queries.payload, dut.banks.data, dut.done)
            if len(pending) > READ_LATENCY:
                for b, (_, want) in pending.pop(0).items():
                    res["checked"] += 1
                    res["mismatches"] += int(data[b]) != want
            if not todo and all(not x for x in pending):
                pending = []
            if sv and sr:
                res["slices"].append(sd)
                holding = int(sd.set)
                todo = [(*k, v) for k, v in window_words(p, prog, len(res["slices"]) - 1)
                        .items()]
            if qv and qr:
                res["queries"].append(qd)
            if done and len(res["slices"]) == len(prog.descriptors) and holding is None \
                    and len(res["queries"]) == len(prog.order) * p.query_beats:
                res["done"] = True
                return
        raise AssertionError("the loader did not finish")

    simulate(dut, tb)
    res["bursts"] = memory.bursts
    return p, res


@pytest.mark.parametrize("name", VARIANTS)
def test_loader_alone_loads_every_slice(name):
    cfg = C.preset("tiny").replace(**VARIANTS[name])
    prog = program(cfg, 7)
    p, res = run_loader(cfg, prog, seed=len(name) + 1)
    lay = prog.layout
    assert res["done"]
    assert res["mismatches"] == 0
    assert res["checked"] == sum(len(window_words(p, prog, k))
                                 for k in range(len(prog.descriptors)))
    for dsc, s in zip(prog.descriptors, res["slices"], strict=True):
        assert int(s.count) == dsc.query_count
        assert tuple(tuple(int(getattr(s.win[lvl], n)) for n in WINDOW_FIELDS)
                     for lvl in range(p.num_levels)) == dsc.windows
    qbytes = b"".join(int(q).to_bytes(p.bus_bytes, "little") for q in res["queries"])
    mem = memory_of(prog)
    assert qbytes == bytes(mem[lay.query_base:lay.query_base + len(prog.order)
                               * lay.query_stride])
    want = [b for b in prog.transfers() if not b.write]
    for agent in (("descriptor", "value"), ("query",)):
        assert [b for b in res["bursts"] if b.tensor in agent] == \
            [b for b in want if b.tensor in agent]
