"""Coordinate unit, bilinear multiply lanes and accumulator against the fixed-point model.

The reference is :mod:`defslice.model.fixed`: single sampling points are run through
``fixed_forward`` and through CoordUnit -> banked buffer lookup -> MacUnit -> Accumulator,
on random and edge inputs, and must agree bit for bit.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from defslice import config as C
from defslice.hw.datapath import Accumulator, CoordUnit, MacUnit
from defslice.hw.params import derive
from defslice.model.fixed import FixedInputs, _saturating_sum, fixed_forward
from defslice.model.fixedpoint import round_half_up_shift, saturate
from defslice.model.layout import WINDOW_FIELDS


def _cfg(clamp="clamp", **numerics):
    base = C.preset("tiny")
    num = {"value_bits": 12, "value_frac": 6, "coord_frac": 4, "weight_bits": 10,
           "acc_bits": 26, "out_bits": 10, "out_frac": 5, "coord_bits": 14}
    num.update(numerics)
    return base.replace(numerics=num, slicing={"clamp": clamp})


def _run(dut, feed, collect_valid, collect_payload, cycles):
    """Drive ``feed`` (per cycle, a list of (signal, value) pairs), return the payload
    of every cycle whose valid was high."""
    out = []

    async def tb(ctx):
        for k in range(cycles):
            for sig, val in (feed[k] if k < len(feed) else ()):
                ctx.set(sig, val)
            *_, valid, payload = await ctx.tick().sample(collect_valid, collect_payload)
            if valid:
                out.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def _random_points(rng, n, H, W, f):
    """Windows inside an H x W map and coordinates around them, with edge cases mixed in."""
    items = []
    for k in range(n):
        row0, col0 = int(rng.integers(0, H)), int(rng.integers(0, W))
        rows, cols = int(rng.integers(1, H - row0 + 1)), int(rng.integers(1, W - col0 + 1))
        y_lo = row0 if row0 > 0 else -1
        y_hi = row0 + rows - 1 if row0 + rows < H else H
        x_lo = col0 if col0 > 0 else -1
        x_hi = col0 + cols - 1 if col0 + cols < W else W
        win = (row0, col0, rows, cols, y_lo, y_hi, x_lo, x_hi)
        if k % 5 == 0:     # exactly on a bound, on a pixel, or half a pixel off
            x = (x_lo << f) + int(rng.integers(-1, 2)) * (1 << (f - 1))
            y = (y_hi << f) + int(rng.integers(-1, 2))
        else:
            x = int(rng.integers(-3 << f, (W + 3) << f))
            y = int(rng.integers(-3 << f, (H + 3) << f))
        items.append((x, y, win))
    return items


def _hw_point_path(cfg, values, items, attn):
    """CoordUnit -> Python banked buffer of each window -> MacUnit -> Accumulator."""
    p = derive(cfg)
    H, W = values.shape[:2]
    coord = CoordUnit(p, 8)
    bank_cols = p.bank_cols[0]
    assert (H, W) == p.win_max[0]       # windows up to the size of the real buffer
    feed = [[(coord.o.ready, 1), (coord.i.valid, 1), (coord.i.payload, {
        "x": x, "y": y, "bank_cols": bank_cols, "tag": k,
        "win": dict(zip(WINDOW_FIELDS, win, strict=True))})]
        for k, (x, y, win) in enumerate(items)]
    feed.append([(coord.i.valid, 0)])
    co = _run(coord, feed, coord.o.valid, coord.o.payload, len(items) + 6)
    assert len(co) == len(items)
    # The window buffer, banked by (row, column) parity inside the window.
    mac = MacUnit(p, 2)
    acc = Accumulator(p, mac.term_bits)
    m = Module()
    m.submodules.mac, m.submodules.acc = mac, acc
    m.d.comb += [acc.i_valid.eq(mac.o.valid), acc.i_term.eq(mac.o.payload.term),
                 acc.i_first.eq(1), acc.i_last.eq(1)]
    feed, corner_banks = [], []
    for k, ((_, _, win), out) in enumerate(zip(items, co, strict=True)):
        row0, col0 = win[0], win[1]
        value_words, weights = [], []
        banks_seen = set()
        for b in range(4):
            w = int(out.weight[b])
            pix = int(out.pixel[b])
            rh, ch = divmod(pix, bank_cols)
            r, c = 2 * rh + (b >> 1), 2 * ch + (b & 1)
            if w:
                banks_seen.add((r, c))
                value_words.append([int(v) for v in values[row0 + r, col0 + c]])
            else:
                value_words.append([0] * p.lanes)
            weights.append(w)
        corner_banks.append(banks_seen)
        feed.append([(mac.i.valid, 1), (mac.i.payload, {
            "value": value_words, "weight": weights, "attn": int(attn[k]), "tag": 0})])
    feed.append([(mac.i.valid, 0)])
    res = _run(m, feed, acc.o_valid, acc.o_data, len(feed) + 8)
    return [[int(v) for v in r] for r in res], co, corner_banks


@pytest.mark.parametrize("clamp", ["clamp", "drop"])
def test_point_path_matches_fixed_forward(clamp):
    cfg = _cfg(clamp)
    num = cfg.numerics
    f = num.coord_frac
    rng = np.random.default_rng(1 if clamp == "clamp" else 2)
    H, W, lanes = *derive(cfg).win_max[0], cfg.hw.lanes
    vlo, vhi = -(1 << (num.value_bits - 1)), (1 << (num.value_bits - 1)) - 1
    values = rng.integers(vlo, vhi + 1, size=(H, W, lanes))
    values[0, 0] = vhi      # extremes in a corner that edge points hit
    values[H - 1, W - 1] = vlo
    items = _random_points(rng, 150, H, W, f)
    wlo, whi = -(1 << (num.weight_bits - 1)), (1 << (num.weight_bits - 1)) - 1
    attn = rng.integers(wlo, whi + 1, size=len(items))
    attn[:4] = [wlo, whi, 0, 1]
    got, _, _ = _hw_point_path(cfg, values, items, attn)
    n = len(items)
    inp = FixedInputs(
        value=np.broadcast_to(values.reshape(1, H * W, 1, lanes), (1, H * W, 1, lanes)),
        shapes=np.array([[H, W]]),
        x=np.array([x for x, _, _ in items]).reshape(1, n, 1, 1, 1),
        y=np.array([y for _, y, _ in items]).reshape(1, n, 1, 1, 1),
        weight=attn.reshape(1, n, 1, 1, 1))
    windows = np.array([w for _, _, w in items]).reshape(1, n, 1, 8)
    want = fixed_forward(num, inp, windows, clamp)[0]
    np.testing.assert_array_equal(np.array(got), want)


def test_coordinate_unit_weights_and_banks_match_model_steps():
    cfg = _cfg("clamp")
    f = cfg.numerics.coord_frac
    one = 1 << f
    rng = np.random.default_rng(5)
    H, W = derive(cfg).win_max[0]
    items = _random_points(rng, 150, H, W, f)
    values = np.zeros((H, W, cfg.hw.lanes), dtype=np.int64)
    _, co, corner_banks = _hw_point_path(cfg, values, items, np.zeros(len(items)))
    for (x, y, win), out, seen in zip(items, co, corner_banks, strict=True):
        row0, col0, rows, cols, y_lo, y_hi, x_lo, x_hi = win
        xc, yc = np.clip(x, x_lo << f, x_hi << f), np.clip(y, y_lo << f, y_hi << f)
        x0, y0, fx, fy = xc >> f, yc >> f, xc & (one - 1), yc & (one - 1)
        expect = {}
        for dy, dx, w in ((0, 0, (one - fy) * (one - fx)), (0, 1, (one - fy) * fx),
                          (1, 0, fy * (one - fx)), (1, 1, fy * fx)):
            r, c = y0 + dy - row0, x0 + dx - col0
            inside = 0 <= r < rows and 0 <= c < cols
            bank = 2 * (r & 1) + (c & 1)
            assert bank not in expect          # the 4 corners sit in 4 distinct banks
            expect[bank] = (int(w) if inside else 0, (r, c))
        for b in range(4):
            w, rc = expect[b]
            assert int(out.weight[b]) == w
            if w:
                assert rc in seen
        assert sum(int(out.weight[b]) for b in range(4)) <= one * one


def test_banking_is_conflict_free_for_every_footprint():
    # Every 2x2 footprint at every window position (including -1) uses all four banks.
    for r0 in range(-1, 9):
        for c0 in range(-1, 9):
            banks = {2 * ((r0 + dy) & 1) + ((c0 + dx) & 1) for dy in (0, 1) for dx in (0, 1)}
            assert banks == {0, 1, 2, 3}


def test_accumulator_saturates_and_rounds_like_the_model():
    cfg = _cfg(value_bits=8, value_frac=4, weight_bits=8, acc_bits=16, out_bits=8,
               out_frac=2)
    p = derive(cfg)
    assert p.head_words == 2
    rng = np.random.default_rng(9)
    heads, terms_per_head = 30, 5
    terms = rng.integers(-(1 << 14), 1 << 14, size=(heads, terms_per_head, p.head_words,
                                                    p.lanes))
    terms[0] = (1 << 14) - 1        # saturates high
    terms[1] = -(1 << 14)           # saturates low
    terms[2, :, :, 0] = [[5], [-9], [3], [1], [-2]] * np.ones((1, p.head_words))
    acc = Accumulator(p, 20)
    feed = []
    for h in range(heads):
        for k in range(terms_per_head):
            for g in range(p.head_words):
                feed.append([(acc.i_valid, 1), (acc.i_term, [int(v) for v in terms[h, k, g]]),
                             (acc.i_first, int(k == 0)),
                             (acc.i_last, int(k == terms_per_head - 1))])
                if (h + k + g) % 3 == 0:       # bubbles do not disturb the order
                    feed.append([(acc.i_valid, 0)])
    feed.append([(acc.i_valid, 0)])
    got = _run(acc, feed, acc.o_valid, acc.o_data, len(feed) + 3)
    got = np.array([[int(v) for v in word] for word in got]).reshape(heads, p.head_words,
                                                                    p.lanes)
    want = _saturating_sum(terms.reshape(heads, terms_per_head, p.head_words * p.lanes),
                           p.acc_bits)
    want = saturate(round_half_up_shift(want, p.out_shift), p.out_bits)
    np.testing.assert_array_equal(got.reshape(heads, -1), want)
    assert (got == (1 << 7) - 1).any() and (got == -(1 << 7)).any()
