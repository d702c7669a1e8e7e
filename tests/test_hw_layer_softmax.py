"""The softmax unit against steps 9c-10f of the fixed-point layer, row by row."""

import numpy as np
import pytest
from layer_support import feed_and_collect

from defslice.config import LayerNumericsConfig
from defslice.hw.layer.softmax import Softmax
from defslice.model.fixedpoint import (
    LayerTables,
    exp2_fixed,
    reciprocal,
    round_half_up_shift,
    saturate,
)


def reference(rows, ln):
    """Probabilities of every row, flattened, with the row-end flags."""
    tb = LayerTables.build(ln)
    out = []
    for qk, bias in rows:
        logit = saturate(np.asarray(qk) + np.asarray(bias), ln.logit_bits)       # 9c
        t = logit - logit.max()                                                  # 10a-b
        u = round_half_up_shift(t * tb.log2e, ln.logit_frac + ln.log2e_frac
                                - ln.exp_index_bits)
        e = exp2_fixed(u, tb.exp2, ln.exp_index_bits, ln.exp_frac)               # 10c
        r = reciprocal(np.array([e.sum()]), ln.exp_frac + ln.recip_frac)[0]      # 10d-e
        p = round_half_up_shift(e * r, ln.exp_frac + ln.recip_frac - ln.prob_frac)
        out += [(int(v), int(k == len(p) - 1)) for k, v in enumerate(p)]
    return out


def rtl(dut, rows, gap_prob, seed):
    payloads = [{"qk": int(qk[k]), "bias": int(bias[k]), "last": int(k == len(qk) - 1)}
                for qk, bias in rows for k in range(len(qk))]
    out = feed_and_collect(dut, payloads, len(payloads), gap_prob, seed)
    return [(int(p.p), int(p.last)) for p in out]


def random_rows(rng, count, max_len, ln, qk_bits, bias_bits):
    rows = []
    for k in range(count):
        n = int(rng.integers(1, max_len + 1)) if k % 5 else 1 + (k % 3)
        spread = 1 << int(rng.integers(ln.logit_frac - 2, ln.logit_bits + 1))
        qk = rng.integers(-spread, spread, size=n)
        bias = rng.integers(-(1 << (bias_bits - 2)), 1 << (bias_bits - 2), size=n)
        if k % 7 == 3:      # saturating logits, ties at the maximum
            qk = np.full(n, (1 << (qk_bits - 1)) - 1)
        rows.append((qk, bias))
    return rows


@pytest.mark.parametrize("gap_prob,max_len", [(0.0, 8), (0.4, 8), (0.0, 3)])
def test_softmax_matches_model(gap_prob, max_len):
    ln = LayerNumericsConfig()
    dut = Softmax(ln, max_len, qk_bits=24, bias_bits=20)
    rows = random_rows(np.random.default_rng(max_len + int(10 * gap_prob)), 40, max_len,
                       ln, 24, 20)
    assert rtl(dut, rows, gap_prob, seed=5) == reference(rows, ln)


def test_softmax_on_the_fixed_layer_trace():
    """The logit rows of a whole sliced layer: each query over its slice's keys."""
    from layer_support import CONFIGS, traced

    plan, fmt, _, _, _, tr = traced(CONFIGS[0])
    slicing = [t.keys for t in plan.tasks]
    dims = plan.dims
    key_of = np.arange(dims.num_keys).reshape(dims.key_rows, dims.key_cols)
    rows, want = [], []
    for t, k in zip(plan.tasks, slicing, strict=True):
        keys = key_of[k.row0:k.row0 + k.rows, k.col0:k.col0 + k.cols].reshape(-1)
        if keys.size == 0:
            continue
        r = t.region
        pix = (r.row0 + np.arange(r.rows))[:, None] * dims.width + r.col0 + np.arange(r.cols)
        for h in range(dims.heads):
            for p in pix.reshape(-1)[:6]:
                rows.append((tr["qk"][0, h, p, keys], tr["bias"][0, h, p, keys]))
                want += [(int(v), int(j == keys.size - 1))
                         for j, v in enumerate(tr["prob"][0, h, p, keys])]
    dut = Softmax(fmt.layer, max(t.num_keys for t in plan.tasks), qk_bits=28, bias_bits=20)
    assert rtl(dut, rows, 0.2, seed=1) == want
