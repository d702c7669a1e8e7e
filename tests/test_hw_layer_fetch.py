# amaranth: UnusedElaboratable=no
"""Operand fetch: kernel-tap and sample addresses, masks and the quad rotation against the
window banks' layout, from row-table entries."""

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data
from layer_support import config_unit, run_bench

from defslice.hw.layer.fetch import FETCH_LATENCY, OperandFetch, tag_layout
from defslice.hw.layer.mac_array import MacArray
from defslice.hw.layer.row_table import row_entry
from defslice.hw.layer.sequencer import PHASE_CODE

CONFIGS = ("ldat-a", "ldat-g2-tanh", "ldat-o0", "ldat-sparse")


def _fetch(name):
    _, plan, hwp = config_unit(name)
    arr = MacArray(plan.lanes, plan.cols, a_bits=17, b_bits=18, acc_bits=plan.ln.acc_bits,
                   tag_bits=tag_layout().size)
    corner = data.StructLayout({"pixel": data.ArrayLayout(unsigned(12), 4),
                                "weight": data.ArrayLayout(unsigned(9), 4)})
    dut = OperandFetch(plan, arr.in_layout, corner, hwp.bank_cols[0], hwp.set_depth)
    return dut, plan, hwp


def _word(y, x, bank_cols, pw, cword):
    """Window pixel ``(y, x)``'s bank (parity banks) and word address in it."""
    return 2 * (y & 1) + (x & 1), ((y >> 1) * bank_cols + (x >> 1)) * pw + cword


def reference(plan, hwp, step):
    """Expected ``(mask, {bank: address})`` of a ``dwconv`` or ``sample`` step."""
    d, L = plan.dims, plan.lanes
    ctx, key, phase, idx = step["ctx"], step["key"], step["phase"], step["index"]
    pw, gw = d.channels // L, d.group_channels // L
    if phase == "sample":
        base = hwp.set_depth * ctx["set"] + key[2] * gw + idx[3]
        return [1] * 4, {b: base + step["pixel"][b] * pw for b in range(4)}
    k, qn = d.kernel, (d.kernel + 1) // 2
    mask, addr = [], {}
    for r in range(4):
        ky, kx = 2 * (idx[3] // qn) + r // 2, 2 * (idx[3] % qn) + r % 2
        y = key[0] * d.stride - d.spec.padding + ky - ctx["row0"]
        x = key[1] * d.stride - d.spec.padding + kx - ctx["col0"]
        real = ky < k and kx < k and 0 <= y < ctx["rows"] and 0 <= x < ctx["cols"]
        mask.append(int(real))
        if real:
            bank, word = _word(y, x, hwp.bank_cols[0], pw, key[2] * gw + idx[2])
            addr[bank] = (r, word)
    return mask, addr


def _steps(plan, rng, n):
    d = plan.dims
    hmax, wmax = plan.window_max
    out = []
    for _ in range(n):
        rows, cols = int(rng.integers(1, hmax + 1)), int(rng.integers(1, wmax + 1))
        ctx = {"row0": int(rng.integers(0, d.height)), "col0": int(rng.integers(0, d.width)),
               "rows": rows, "cols": cols, "set": int(rng.integers(0, 2))}
        key = (int(rng.integers(0, d.key_rows)), int(rng.integers(0, d.key_cols)),
               int(rng.integers(0, d.groups)))
        if rng.random() < 0.8:
            idx = (0, int(rng.integers(0, 8)), int(rng.integers(0, d.group_channels // plan.lanes)),
                   int(rng.integers(0, d.tap_quads)))
            out.append({"phase": "dwconv", "ctx": ctx, "key": key, "index": idx})
        else:
            idx = (0, 0, int(rng.integers(0, 8)),
                   int(rng.integers(0, d.group_channels // plan.lanes)))
            out.append({"phase": "sample", "ctx": ctx, "key": key, "index": idx,
                        "pixel": [int(v) for v in rng.integers(0, 1 << 8, size=4)]})
    return out


def rtl(dut, plan, hwp, steps):
    """Each step alone through the fetch: the bank addresses two cycles after it is
    taken, the tag at the array's input."""
    got = []

    async def bench(sim):
        for s in steps:
            sim.set(dut.ctx, s["ctx"])
            sim.set(dut.row_info, row_entry(plan.dims, plan.lanes, hwp.bank_cols[0], s["ctx"],
                                            s["key"]))
            sim.set(dut.corner.pixel, s.get("pixel", [0] * 4))
            sim.set(dut.step.payload, {"phase": PHASE_CODE[s["phase"]], "index": list(s["index"]),
                                       "first": 1, "last": 1})
            sim.set(dut.step.valid, 1)
            await sim.tick()
            sim.set(dut.step.valid, 0)
            await sim.tick()
            port = dut.q_addr if s["phase"] == "dwconv" else dut.x_addr
            addr = [sim.get(port[b]) for b in range(4)]
            for _ in range(FETCH_LATENCY - 2):
                await sim.tick()
            assert sim.get(dut.o.valid)
            tag = tag_layout().from_bits(sim.get(dut.o.payload.tag))
            got.append((addr, tag))
            await sim.tick()

    run_bench(dut, bench)
    return got


@pytest.mark.parametrize("name", CONFIGS)
def test_fetch_taps_and_samples(name):
    dut, plan, hwp = _fetch(name)
    steps = _steps(plan, np.random.default_rng(sum(map(ord, name))), 120)
    taps_in = 0
    for s, (addr, tag) in zip(steps, rtl(dut, plan, hwp, steps), strict=True):
        mask, want = reference(plan, hwp, s)
        assert [(tag.mask >> r) & 1 for r in range(4)] == mask, s
        assert [int(v) for v in tag.row] == list(s["key"]), s
        if s["phase"] == "sample":
            assert addr == [want[b] for b in range(4)], s
            continue
        parity = int(tag.parity)
        for bank, (r, word) in want.items():
            assert r ^ parity == bank, s
            assert addr[bank] == word, s
        taps_in += len(want)
    assert taps_in > 0
