"""The row table's entries, filled in its pipeline, against ``row_entry``."""

import numpy as np
import pytest
from layer_support import config_unit, run_bench

from defslice.hw.layer.row_table import ROW_LATENCY, RowTable, row_entry

CONFIGS = ("ldat-a", "ldat-g2-tanh", "ldat-o0", "ldat-sparse")


def _fills(plan, rng, n, depth):
    """Windows (some reaching past the map and above the kernel's reach) and their rows."""
    d = plan.dims
    hmax, wmax = plan.window_max
    out = []
    for _ in range(n):
        win = {"row0": int(rng.integers(0, d.height)), "col0": int(rng.integers(0, d.width)),
               "rows": int(rng.integers(1, hmax + 1)), "cols": int(rng.integers(1, wmax + 1))}
        keys = [(int(rng.integers(0, d.key_rows)), int(rng.integers(0, d.key_cols)),
                 int(rng.integers(0, d.groups))) for _ in range(rng.integers(1, min(4, depth) + 1))]
        out.append((win, keys))
    return out


def rtl(dut, fills):
    """Each window's rows filled back to back (one per cycle), then read back."""
    got = []

    async def bench(sim):
        for win, keys in fills:
            sim.set(dut.window, win)
            for a, key in enumerate(keys):
                sim.set(dut.fill.valid, 1)
                sim.set(dut.fill.payload, {"addr": a, "key": list(key)})
                await sim.tick()
            sim.set(dut.fill.valid, 0)
            await sim.tick().repeat(ROW_LATENCY)
            entries = []
            for a in range(len(keys)):
                sim.set(dut.rd_addr, a)
                v = sim.get(dut.rd_data)
                entries.append({"key": [int(x) for x in v.key], "parity": int(v.parity),
                                "base": int(v.base), "word": int(v.word),
                                "inside": [int(x) for x in v.inside]})
            got.append(entries)

    run_bench(dut, bench)
    return got


@pytest.mark.parametrize("name", CONFIGS)
def test_row_table_entries(name):
    _, plan, hwp = config_unit(name)
    dut = RowTable(plan, hwp.bank_cols[0])
    fills = _fills(plan, np.random.default_rng(sum(map(ord, name))), 40, dut.depth)
    partial = 0
    for (win, keys), entries in zip(fills, rtl(dut, fills), strict=True):
        want = [row_entry(plan.dims, plan.lanes, hwp.bank_cols[0], win, k) for k in keys]
        assert entries == want, (win, keys)
        full = (1 << (plan.dims.kernel + 1)) - 1
        partial += sum(0 < e["inside"][0] < full for e in want)
    assert partial > 0                              # windows cutting the kernel were tried
