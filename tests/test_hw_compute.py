"""The compute engine on its own: slices, point records and a Python bank model in, output
beats out, equal to the golden model's outputs of those slices."""

import random

import numpy as np
import pytest
from hw_support import memory_of, program, simulate, window_words

from defslice import config as C
from defslice.hw.compute import Compute
from defslice.hw.params import derive
from defslice.model.layout import WINDOW_FIELDS

VARIANTS = {
    "tiny": {},
    "single-lanes1-bus128": {"hw": {"buffering": "single", "lanes": 1, "axi_data_bits": 128}},
    "3lvl-lanes4-drop": {"workload": {"levels": ((8, 8), (4, 4), (2, 2))},
                         "hw": {"lanes": 4}, "slicing": {"clamp": "drop", "overlap": 2}},
    "narrow": {"numerics": {"value_bits": 12, "value_frac": 6, "coord_frac": 4,
                            "weight_bits": 10, "acc_bits": 22, "out_bits": 10, "out_frac": 5,
                            "coord_bits": 14}},
}


def run_compute(cfg, prog, seed, max_cycles=60_000):
    """Feed every slice of ``prog`` through compute; return its output beats."""
    p = derive(cfg)
    dut = Compute(p)
    lay = prog.layout
    rng = random.Random(seed)
    mem = memory_of(prog)
    qbeats = [int.from_bytes(mem[a:a + p.bus_bytes], "little")
              for a in range(lay.query_base, lay.query_base + len(prog.order) * lay.query_stride,
                             p.bus_bytes)]
    n_out = len(prog.order) * lay.out_stride // p.bus_bytes
    res = {"beats": [], "issued": 0, "released": []}

    async def tb(ctx):
        banks = [{} for _ in range(2)]      # set -> (bank, address) -> word
        busy = [False, False]
        offered, reads = 0, []
        for _ in range(max_cycles):
            k = offered
            s = k % 2 if p.sets == 2 else 0
            offer = k < len(prog.descriptors) and not busy[s] and rng.random() < 0.5
            if offer:
                d = prog.descriptors[k]
                ctx.set(dut.slice.payload, {
                    "set": s, "count": d.query_count,
                    "win": [dict(zip(WINDOW_FIELDS, w, strict=True)) for w in d.windows]})
            ctx.set(dut.slice.valid, int(offer))
            qv = int(bool(qbeats) and rng.random() < 0.8)
            ctx.set(dut.queries.valid, qv)
            if qv:
                ctx.set(dut.queries.payload, qbeats[0])
            ctx.set(dut.o.ready, int(rng.random() < 0.7))
            if len(reads) >= 2:     # the words read two cycles ago (READ_LATENCY)
                ctx.set(dut.banks.data, [banks[st].get((b, a), 0)
                                         for b, (st, a) in enumerate(reads[-2])])
            (_, _, s_rdy, q_rdy, addr, ov, o_rdy, od, rel, rel_set,
             issue) = await ctx.tick().sample(
                dut.slice.ready, dut.queries.ready, dut.banks.addr, dut.o.valid, dut.o.ready,
                dut.o.payload, dut.release, dut.release_set, dut.issue)
            # Which set an address falls in (the engine adds the set offset).
            reads.append([(int(a) >= p.set_depth if p.sets == 2 else 0, int(a))
                          for a in addr])
            if offer and s_rdy:
                busy[s] = True
                banks[s] = dict(window_words(p, prog, k))
                offered += 1
            if qv and q_rdy:
                qbeats.pop(0)
            if ov and o_rdy:
                res["beats"].append(int(od))
            if rel:
                busy[rel_set] = False
                res["released"].append(rel_set)
            res["issued"] += issue
            if len(res["beats"]) == n_out and offered == len(prog.descriptors) \
                    and not any(busy):
                return
        raise AssertionError("compute did not finish")

    simulate(dut, tb)
    return p, res


@pytest.mark.parametrize("name", VARIANTS)
def test_compute_alone_matches_the_model(name):
    cfg = C.preset("tiny").replace(**VARIANTS[name])
    prog = program(cfg, 3)
    p, res = run_compute(cfg, prog, seed=len(name))
    raw = b"".join(v.to_bytes(p.bus_bytes, "little") for v in res["beats"])
    got = prog.layout.unpack_outputs(raw, len(prog.order))
    want = prog.expected_outputs()
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).max() > 0
    w = cfg.workload
    assert res["issued"] == len(prog.order) * w.heads * w.num_levels * w.points \
        * p.head_words
    assert len(res["released"]) == len(prog.descriptors)
