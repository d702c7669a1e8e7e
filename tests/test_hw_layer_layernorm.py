"""The LayerNorm + GELU unit against steps 3a-4 of the fixed-point layer."""

import numpy as np
import pytest
from layer_support import feed_and_collect

from defslice.config import LayerNumericsConfig
from defslice.hw.layer.layernorm import LayerNormUnit
from defslice.model.fixedpoint import LayerTables, gelu_fixed, requantize, rsqrt_normalize


def reference(rows, gamma, beta, ln, eps_q):
    tb = LayerTables.build(ln)
    out = []
    for h in rows:
        cg = len(h)
        mean = (2 * int(h.sum()) + cg) // (2 * cg)                       # 3a
        d = h - mean
        var = int((d * d).sum()) // cg                                   # 3b
        i, e = rsqrt_normalize(np.array([max(var + eps_q, 1)]), ln.rsqrt_index_bits)
        rsq = tb.rsqrt[int(i[0]) - (1 << (ln.rsqrt_index_bits - 2))]     # 3c
        z = requantize(d * rsq, ln.rsqrt_frac + int(e[0]) // 2 - ln.z_frac, ln.act_bits)
        n = requantize(z * gamma + beta, ln.z_frac + ln.norm_frac - ln.n_frac, ln.act_bits)
        g = gelu_fixed(n, tb.gelu)                                       # 4
        out += [(int(v), int(k == cg - 1)) for k, v in enumerate(g)]
    return out


def rtl(dut, rows, gamma, beta, gap_prob, seed):
    async def params(ctx):
        for c in range(dut.cg):
            ctx.set(dut.params_w.valid, 1)
            ctx.set(dut.params_w.payload, {"c": c, "gamma": int(gamma[c]), "beta": int(beta[c]),
                                           "set_gamma": 1, "set_beta": 1})
            await ctx.tick()
        ctx.set(dut.params_w.valid, 0)

    words = [{"h": [int(v) for v in h[w * dut.width:(w + 1) * dut.width]]}
             for h in rows for w in range(dut.cg // dut.width)]
    total = sum(len(h) for h in rows)
    out = feed_and_collect(dut, words, total, gap_prob, seed, setup=params,
                           cycles=10 * total + 200 * len(rows) + 500)
    return [(int(p.g), int(p.last)) for p in out]


def random_rows(rng, count, cg, bits):
    rows = []
    for k in range(count):
        spread = 1 << int(rng.integers(0, bits - 1))
        h = rng.integers(-spread, spread, size=cg)
        if k % 6 == 1:
            h = np.full(cg, int(rng.integers(-spread, spread)))      # zero variance
        if k % 6 == 4:
            h = rng.choice([-(1 << (bits - 1)), (1 << (bits - 1)) - 1], size=cg)
        rows.append(h.astype(np.int64))
    return rows


@pytest.mark.parametrize("cg,width,gap_prob", [(8, 4, 0.0), (8, 2, 0.5), (12, 4, 0.2)])
def test_layernorm_matches_model(cg, width, gap_prob):
    ln = LayerNumericsConfig()
    eps_q = 42
    rng = np.random.default_rng(cg * 10 + width)
    gamma = rng.integers(-(1 << 15), 1 << 15, size=cg)
    beta = rng.integers(-(1 << 26), 1 << 26, size=cg)
    rows = random_rows(rng, 14, cg, ln.act_bits)
    dut = LayerNormUnit(ln, cg, width, eps_q)
    assert rtl(dut, rows, gamma, beta, gap_prob, seed=3) == \
        reference(rows, gamma, beta, ln, eps_q)


def test_layernorm_on_the_fixed_layer_trace():
    """The rows the offset convolution of a whole layer produces (two groups)."""
    from layer_support import CONFIGS, traced

    plan, fmt, qp, _, _, tr = traced(CONFIGS[1])
    h, g = tr["h"][0], tr["g"][0]                          # (G, Cg, Nk)
    rows = [h[grp, :, k] for grp in range(h.shape[0]) for k in range(h.shape[2])]
    want = [(int(v), int(c == h.shape[1] - 1)) for grp in range(h.shape[0])
            for k in range(h.shape[2]) for c, v in enumerate(g[grp, :, k])]
    dut = LayerNormUnit(fmt.layer, h.shape[1], plan.lanes, qp.eps)
    assert rtl(dut, rows, qp.norm_w, qp.norm_b, 0.0, seed=0) == want


@pytest.mark.parametrize("cg,width", [(16, 4), (12, 4)])
def test_row_latency_is_the_units(cg, width):
    """``row_latency`` (the cycle model's) is the simulated unit's: from a row's last input
    word to its last g, beyond the 2 Cg channel reads (a shift or the divider for Cg)."""
    from amaranth.sim import Simulator

    ln = LayerNumericsConfig()
    dut = LayerNormUnit(ln, cg, width, 42)
    rng = np.random.default_rng(cg)
    seen = []

    async def tb(ctx):
        for _ in range(cg // width):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"h": [int(v) for v in rng.integers(-500, 500, width)]})
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for k in range(1, 400):
            _, _, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and p.last:
                seen.append(k)
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [2 * cg + LayerNormUnit.row_latency(ln, cg)]
