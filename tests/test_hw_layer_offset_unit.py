"""The offset unit against steps 5a'-6 of the fixed-point layer, both factor modes."""

import numpy as np
import pytest
from layer_support import pipe

from defslice.config import LayerNumericsConfig
from defslice.hw.layer.offset_unit import OffsetUnit
from defslice.model.fixedpoint import LayerTables, requantize, saturate, tanh_fixed
from defslice.model.layer_layout import OPEN_HI, OPEN_LO

H, W, F, CB = 20, 13, 8, 24


def reference(items, mode, ln, scale):
    tb = LayerTables.build(ln)
    out = []
    for off, ref, win, bias in items:
        sample, biased = [], []
        for a in range(2):
            if mode == "clamp":
                pos = min(max(ref[a] + off[a], 0), ((H, W)[a] - 1) << F)
            else:
                th = int(tanh_fixed(np.array([off[a]]), tb.tanh, ln.tanh_frac)[0])
                o = int(requantize(th * scale[a], ln.tanh_frac + ln.offset_scale_frac - F, CB))
                pos = int(saturate(ref[a] + o, CB))
            lo, hi = win[2 * a], win[2 * a + 1]
            sample.append(min(max(pos, lo << F), hi << F))
            lo, hi = bias[2 * a], bias[2 * a + 1]
            p = pos if lo == OPEN_LO else max(pos, lo << F)
            biased.append(p if hi == OPEN_HI else min(p, hi << F))
        out.append((sample, biased))
    return out


def rtl(dut, items):
    names = ("y_lo", "y_hi", "x_lo", "x_hi")
    payloads = [{"off": list(off), "ref": list(ref), "win": dict(zip(names, win, strict=True)),
                 "bias": dict(zip(names, bias, strict=True)), "tag": k % 2}
                for k, (off, ref, win, bias) in enumerate(items)]
    return [([int(v) for v in p.sample], [int(v) for v in p.bias]) for p in pipe(dut, payloads)]


def _items(rng, n, in_bits):
    items = []
    for k in range(n):
        r0, c0 = int(rng.integers(0, H)), int(rng.integers(0, W))
        r1, c1 = int(rng.integers(r0 + 1, H + 1)), int(rng.integers(c0 + 1, W + 1))
        win = (r0 if r0 else -1, r1 - 1 if r1 < H else H, c0 if c0 else -1,
               c1 - 1 if c1 < W else W)
        bias = (r0 if r0 else OPEN_LO, r1 - 1 if r1 < H else OPEN_HI,
                c0 if c0 else OPEN_LO, c1 - 1 if c1 < W else OPEN_HI)
        ref = (int(rng.integers(0, (H + 4) << F)), int(rng.integers(0, (W + 4) << F)))
        lim = 1 << (in_bits - 1)
        off = tuple(int(v) for v in rng.integers(-lim, lim, size=2))
        if k % 4 == 0:
            off = tuple(int(v) for v in rng.integers(-(6 << F), 6 << F, size=2))
        items.append((off, ref, win, bias))
    return items


@pytest.mark.parametrize("mode", ["clamp", "tanh"])
def test_offset_unit(mode):
    ln = LayerNumericsConfig()
    scale = (1100, 700)
    dut = OffsetUnit(ln, CB, F, H, W, mode, scale)
    items = _items(np.random.default_rng(len(mode)), 200, dut.in_bits)
    assert rtl(dut, items) == reference(items, mode, ln, scale)


@pytest.mark.parametrize("which", [0, 1])
def test_offset_unit_on_the_fixed_layer_trace(which):
    """Every key of a whole layer (clamp mode, and tanh mode with two groups)."""
    from layer_support import CONFIGS, traced

    plan, fmt, qp, _, _, tr = traced(CONFIGS[which])
    d, num = plan.dims, fmt.numerics
    mode = "clamp" if d.spec.offset_range_factor < 0 else "tanh"
    scale = tuple(int(v) for v in qp.offset_scale) if mode == "tanh" else (0, 0)
    owner = {}
    for t in plan.tasks:
        for i in range(t.keys.row0, t.keys.row0 + t.keys.rows):
            for j in range(t.keys.col0, t.keys.col0 + t.keys.cols):
                owner[(i, j)] = t
    items, want = [], []
    raw = tr["off"] if mode == "clamp" else tr["t"]
    for g in range(d.groups):
        for k in range(d.num_keys):
            i, j = divmod(k, d.key_cols)
            w = owner[(i, j)].window
            items.append((tuple(int(v) for v in raw[0, g, k]),
                          (int(qp.ref_y[i]), int(qp.ref_x[j])),
                          (w.y_lo, w.y_hi, w.x_lo, w.x_hi), owner[(i, j)].bias_bounds))
            want.append(([int(v) for v in tr["pos_sample"][0, g, k]],
                         [int(v) for v in tr["pos_bias"][0, g, k]]))
    dut = OffsetUnit(fmt.layer, num.coord_bits, num.coord_frac, d.height, d.width, mode,
                     scale)
    assert rtl(dut, items) == want
