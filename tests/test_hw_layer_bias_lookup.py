"""The position-bias lookup against step 9b of the fixed-point layer."""

import numpy as np
import pytest
from layer_support import pipe

from defslice.hw.layer.bias_lookup import BiasLookup
from defslice.model.fixedpoint import bilinear_weights, round_half_up_shift, split_coord
from defslice.model.layer_layout import rpe_banks


def reference(table, keys, queries, H, W, f, shift, heads, groups):
    """``rnd(sum_corners RPE[h, qy - cy + H - 1, qx - cx + W - 1] w, shift)``, 0 outside."""
    out = []
    for qy, qx, h, k in queries:
        py, px = keys[(h * groups // heads, k)]
        (y0, fy), (x0, fx) = split_coord(py, f), split_coord(px, f)
        w = bilinear_weights(fy, fx, f)
        total = 0
        for c, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            ty, tx = qy - (y0 + dy) + H - 1, qx - (x0 + dx) + W - 1
            if 0 <= ty <= 2 * H - 2 and 0 <= tx <= 2 * W - 2:
                total += int(table[h, ty, tx]) * int(w[c])
        out.append(int(round_half_up_shift(total, shift)))
    return out


def rtl(dut, table, keys, queries):
    banks = rpe_banks(table)
    pw = dut.per_word

    async def setup(ctx):
        words = np.zeros((4, dut.bank_words * pw), dtype=np.int64)
        words[:, :banks.shape[1]] = banks
        for a in range(dut.bank_words):
            ctx.set(dut.table_w.valid, 1)
            ctx.set(dut.table_w.payload, {
                "addr": a, "data": [words[b, a * pw:(a + 1) * pw].tolist() for b in range(4)]})
            await ctx.tick()
        ctx.set(dut.table_w.valid, 0)
        for (g, k), (py, px) in keys.items():
            ctx.set(dut.key_w.valid, 1)
            ctx.set(dut.key_w.payload, {"key": k, "group": g, "py": py, "px": px})
            await ctx.tick()
        ctx.set(dut.key_w.valid, 0)

    payloads = [{"qy": qy, "qx": qx, "head": h, "key": k, "tag": n % 2}
                for n, (qy, qx, h, k) in enumerate(queries)]
    return [int(p.bias) for p in pipe(dut, payloads, setup=setup)]


@pytest.mark.parametrize("H,W,heads,groups,per_word", [(6, 5, 2, 1, 1), (5, 7, 4, 2, 2)])
def test_bias_lookup(H, W, heads, groups, per_word):
    f, rf, lf, max_keys = 4, 13, 10, 6
    shift = 2 * f + rf - lf
    rng = np.random.default_rng(H * W + heads)
    table = rng.integers(-(1 << 15), 1 << 15, size=(heads, 2 * H - 1, 2 * W - 1))
    # Positions inside the map, on its edges, and beyond it (clamped only by interior
    # bounds, so the table index may leave the table).
    keys = {}
    for g in range(groups):
        for k in range(max_keys):
            py = int(rng.integers(-3 << f, (H + 3) << f))
            px = int(rng.integers(-3 << f, (W + 3) << f))
            if k == 0:
                py, px = 0, (W - 1) << f
            keys[(g, k)] = (py, px)
    queries = [(int(rng.integers(0, H)), int(rng.integers(0, W)),
                int(rng.integers(0, heads)), int(rng.integers(0, max_keys)))
               for _ in range(150)]
    dut = BiasLookup(H, W, heads, groups, max_keys, coord_bits=14, coord_frac=f,
                     rpe_bits=16, shift=shift, per_word=per_word)
    assert rtl(dut, table, keys, queries) == reference(table, keys, queries, H, W, f,
                                                        shift, heads, groups)


def test_bias_lookup_on_the_fixed_layer_trace():
    """Position biases of a whole sliced layer, every head, keys of the query's slice."""
    from layer_support import CONFIGS, traced

    plan, fmt, qp, _, _, tr = traced(CONFIGS[1])
    d, num, ln = plan.dims, fmt.numerics, fmt.layer
    keys = {(g, k): tuple(int(v) for v in tr["pos_bias"][0, g, k])
            for g in range(d.groups) for k in range(d.num_keys)}
    rng = np.random.default_rng(4)
    queries, want = [], []
    for _ in range(200):
        p, h, k = (int(rng.integers(0, m)) for m in (d.height * d.width, d.heads,
                                                      d.num_keys))
        queries.append((p // d.width, p % d.width, h, k))
        want.append(int(tr["bias"][0, h, p, k]))
    shift = 2 * num.coord_frac + ln.rpe_frac - ln.logit_frac
    dut = BiasLookup(d.height, d.width, d.heads, d.groups, d.num_keys, num.coord_bits,
                     num.coord_frac, ln.weight_bits, shift, per_word=2)
    assert rtl(dut, qp.rpe, keys, queries) == want
