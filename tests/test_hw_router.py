"""Read data router against the DRAM image: bank words at the documented addresses, query
beats in order, slices handed off as described, oversized windows refused."""

import random
from dataclasses import replace

import pytest
from hw_support import memory_of, program, simulate, window_words

from defslice import config as C
from defslice.hw.params import derive
from defslice.hw.reader import Tag
from defslice.hw.router import Router
from defslice.model.layout import WINDOW_FIELDS

VARIANTS = {
    "tiny": {},
    "3lvl-lanes4-single": {"workload": {"levels": ((8, 8), (4, 4), (2, 2))},
                           "slicing": {"slice_h": 3, "slice_w": 5},
                           "hw": {"lanes": 4, "buffering": "single"}},
    "bus128-lanes1-burst3": {"hw": {"lanes": 1, "axi_data_bits": 128, "max_burst_beats": 3}},
}


def read_bursts(prog, rng):
    """The read bursts in an order the reader may issue: descriptor, window rows, with the
    previous slice's query bursts slipped in between."""
    tensor_tag = {"descriptor": Tag.DESC, "value": Tag.WINDOW, "query": Tag.QUERY}
    per_slice, cur = [], None
    for b in prog.transfers():
        if b.tensor == "descriptor":
            cur = {"window": [], "query": []}
            per_slice.append(cur)
        if not b.write:
            cur["query" if b.tensor == "query" else "window"].append(
                (b.addr, b.beats, tensor_tag[b.tensor]))
    out, pending = [], []
    for s in per_slice:
        for burst in s["window"]:
            out.append(burst)
            while pending and rng.random() < 0.5:
                out.append(pending.pop(0))
        out += pending
        pending = list(s["query"])
    return out + pending


def run_router(cfg, prog, seed, max_cycles=60_000):
    """Serve ``prog``'s read bursts to the router; return what it did."""
    p = derive(cfg)
    dut = Router(p)
    lay = prog.layout
    mem = memory_of(prog)
    rng = random.Random(seed)
    bursts = read_bursts(prog, rng)
    res = {"queries": [], "slices": [], "banks_ok": [], "error": 0}

    async def tb(ctx):
        ctx.set(dut.query_base, lay.query_base)
        ctx.set(dut.out_base, lay.out_base)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        banks, acks, ack_wait, beat, seen = {}, 0, None, 0, False
        for _ in range(max_cycles):
            cur = bursts[0] if bursts else None
            rvalid = int(cur is not None and rng.random() < 0.8)
            ctx.set(dut.tags.valid, int(cur is not None))
            if cur is not None:
                ctx.set(dut.tags.payload, cur[2])
                a = cur[0] + beat * p.bus_bytes
                ctx.set(dut.r.data, int.from_bytes(mem[a:a + p.bus_bytes], "little"))
                ctx.set(dut.r.last, int(beat == cur[1] - 1))
            ctx.set(dut.r.valid, rvalid)
            ctx.set(dut.queries.ready, int(rng.random() < 0.7))
            ctx.set(dut.slice.ready, int(rng.random() < 0.5))
            ack = int(ack_wait == 0)
            ctx.set(dut.desc.parse_ack, ack)
            if ack:
                ctx.set(dut.desc.load_set, acks % 2 if p.sets == 2 else 0)
                acks += 1
            (_, _, rready, wr_en, wr_addr, wr_data, qv, qr, qd, sv, sr, sd, parsed,
             err) = await ctx.tick().sample(
                dut.r.ready, dut.wr_en, dut.wr_addr, dut.wr_data, dut.queries.valid,
                dut.queries.ready, dut.queries.payload, dut.slice.valid, dut.slice.ready,
                dut.slice.payload, dut.desc.parsed, dut.error_window)
            ack_wait = None if ack else ack_wait
            if parsed and ack_wait is None and not ack:
                ack_wait = rng.randrange(4)
            elif ack_wait:
                ack_wait -= 1
            if rvalid and rready:
                beat += 1
                if beat == cur[1]:
                    bursts.pop(0)
                    beat = 0
            for b in range(4):
                if wr_en >> b & 1:
                    banks[b, wr_addr] = wr_data
            if qv and qr:
                res["queries"].append(qd)
            if sv and not seen:
                want = window_words(p, prog, len(res["slices"]))
                res["banks_ok"].append(all(banks.get(k) == v for k, v in want.items()))
            seen = sv and not sr
            if sv and sr:
                res["slices"].append(sd)
            if err:
                res["error"] = 1
                return
            if not bursts and len(res["slices"]) == len(prog.descriptors) \
                    and len(res["queries"]) * p.bus_bytes >= len(prog.order) * lay.query_stride:
                return
        raise AssertionError("the router did not finish")

    simulate(dut, tb)
    return p, res


@pytest.mark.parametrize("name", VARIANTS)
def test_router_fills_banks_queries_and_handoffs(name):
    cfg = C.preset("tiny").replace(**VARIANTS[name])
    prog = program(cfg, 2)
    p, res = run_router(cfg, prog, seed=len(name))
    lay = prog.layout
    assert res["banks_ok"] == [True] * len(prog.descriptors)
    mem = memory_of(prog)
    qbytes = b"".join(int(q).to_bytes(p.bus_bytes, "little") for q in res["queries"])
    assert qbytes == bytes(mem[lay.query_base:lay.query_base + len(prog.order)
                               * lay.query_stride])
    for k, (dsc, s) in enumerate(zip(prog.descriptors, res["slices"], strict=True)):
        assert int(s.count) == dsc.query_count
        assert int(s.set) == (k % 2 if p.sets == 2 else 0)
        assert tuple(tuple(int(getattr(s.win[lvl], n)) for n in WINDOW_FIELDS)
                     for lvl in range(p.num_levels)) == dsc.windows
        assert int(s.out_addr) == lay.out_base + dsc.query_start * lay.out_stride
        assert int(s.out_beats) == dsc.query_count * lay.out_stride // lay.bus_bytes
    assert not res["error"]


def test_oversized_window_is_refused():
    cfg = C.preset("tiny")
    prog = program(cfg)
    dsc = prog.descriptors[1]
    bad = list(dsc.windows)
    bad[1] = (*bad[1][:3], derive(cfg).win_max[1][1] + 1, *bad[1][4:])   # one column too many
    prog.descriptors[1] = replace(dsc, windows=tuple(bad))
    _, res = run_router(cfg, prog, seed=1)
    assert res["error"] == 1
    assert len(res["slices"]) == 1          # the first slice was handed off
