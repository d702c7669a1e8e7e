"""Fixed-point datapath: primitives, an independent scalar reference, the error bound
against float, and saturation instead of wrap-around."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defslice import config as C
from defslice.errors import InputError
from defslice.model.fixed import (
    FixedInputs,
    dequantize_inputs,
    error_bound,
    fixed_forward,
    quantize_inputs,
)
from defslice.model.fixedpoint import quantize, round_half_up_shift, saturate
from defslice.model.msda import msda_forward
from defslice.model.workload import make_workload


def test_round_half_up_ties_go_up_on_both_signs():
    x = np.array([5, -5, 3, -3, 4, -4, 7])  # /2: 2.5 -2.5 1.5 -1.5 2 -2 3.5
    assert round_half_up_shift(x, 1).tolist() == [3, -2, 2, -1, 2, -2, 4]
    assert round_half_up_shift(x, 0).tolist() == x.tolist()


def test_saturate_and_quantize_clip_never_wrap():
    assert saturate(np.array([200, -200, 5]), 8).tolist() == [127, -128, 5]
    q = quantize(np.array([1e9, -1e9, np.inf, -np.inf, 0.5, -0.5]), 4, 8)
    assert q.tolist() == [127, -128, 127, -128, 8, -8]
    with pytest.raises(InputError, match="weights contains NaN"):
        quantize(np.array([np.nan]), 4, 8, name="weights")


def scalar_reference(num, inp, windows, clamp):
    """Steps 2-8 of docs/numerics.md written out point by point, independently of the
    vectorized model."""
    f = num.coord_frac
    n, _, m, d = inp.value.shape
    _, lq, _, n_lvl, p = inp.x.shape
    starts = np.concatenate([[0], np.cumsum(inp.shapes[:, 0] * inp.shapes[:, 1])])
    lo_acc, hi_acc = -(1 << (num.acc_bits - 1)), (1 << (num.acc_bits - 1)) - 1
    lo_out, hi_out = -(1 << (num.out_bits - 1)), (1 << (num.out_bits - 1)) - 1
    out = np.zeros((n, lq, m * d), dtype=np.int64)
    for b in range(n):
        for q in range(lq):
            for h in range(m):
                acc = [0] * d
                for lvl in range(n_lvl):
                    row0, col0, rows, cols, ylo, yhi, xlo, xhi = (int(v) for v in
                                                                   windows[b, q, lvl])
                    W = int(inp.shapes[lvl, 1])
                    for pt in range(p):
                        x, y = int(inp.x[b, q, h, lvl, pt]), int(inp.y[b, q, h, lvl, pt])
                        if clamp == "clamp":
                            x = min(max(x, xlo << f), xhi << f)
                            y = min(max(y, ylo << f), yhi << f)
                        x0, y0, fx, fy = x >> f, y >> f, x % (1 << f), y % (1 << f)
                        one = 1 << f
                        corners = [(y0, x0, (one - fy) * (one - fx)), (y0, x0 + 1, (one - fy) * fx),
                                   (y0 + 1, x0, fy * (one - fx)), (y0 + 1, x0 + 1, fy * fx)]
                        a = int(inp.weight[b, q, h, lvl, pt])
                        for c in range(d):
                            tot = 0
                            for cy, cx, wgt in corners:
                                if row0 <= cy < row0 + rows and col0 <= cx < col0 + cols:
                                    tot += int(inp.value[b, starts[lvl] + cy * W + cx, h, c]) * wgt
                            sample = (tot + (1 << (2 * f - 1))) >> (2 * f)
                            acc[c] = min(max(acc[c] + sample * a, lo_acc), hi_acc)
                sh = num.out_shift
                for c in range(d):
                    r = (acc[c] + (1 << (sh - 1))) >> sh if sh else acc[c]
                    out[b, q, h * d + c] = min(max(r, lo_out), hi_out)
    return out


def random_fixed_inputs(rng, num, shapes, n=1, m=2, d=3, lq=5, p=2, spread=3.0):
    shapes = np.array(shapes)
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    vb, cb, wb = num.value_bits, num.coord_bits, num.weight_bits
    value = rng.integers(-(1 << (vb - 1)), 1 << (vb - 1), size=(n, s, m, d))
    size = shapes[:, ::-1][None, None, None, :, None, :]
    pix = rng.uniform(-spread, 1 + spread, size=(n, lq, m, len(shapes), p, 2)) * size
    coords = np.clip(np.round(pix * (1 << num.coord_frac)), -(1 << (cb - 1)),
                     (1 << (cb - 1)) - 1).astype(np.int64)
    weight = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(n, lq, m, len(shapes), p))
    return FixedInputs(value, shapes, coords[..., 0], coords[..., 1], weight)


def random_windows(rng, shapes, n, lq):
    win = np.zeros((n, lq, len(shapes), 8), dtype=np.int64)
    for lvl, (h, w) in enumerate(shapes):
        r0 = rng.integers(0, h, size=(n, lq))
        c0 = rng.integers(0, w, size=(n, lq))
        rows = rng.integers(1, h - r0 + 1)
        cols = rng.integers(1, w - c0 + 1)
        win[..., lvl, :] = np.stack([
            r0, c0, rows, cols, np.where(r0 > 0, r0, -1),
            np.where(r0 + rows < h, r0 + rows - 1, h), np.where(c0 > 0, c0, -1),
            np.where(c0 + cols < w, c0 + cols - 1, w)], axis=-1)
    return win


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), clamp=st.sampled_from(["clamp", "drop"]),
       narrow=st.booleans())
def test_vectorized_model_equals_scalar_reference(seed, clamp, narrow):
    rng = np.random.default_rng(seed)
    # narrow: small accumulator and output, so saturation paths are exercised too
    num = C.NumericsConfig(value_bits=8, value_frac=4, coord_bits=12, coord_frac=4,
                           weight_bits=6, acc_bits=14 if narrow else 30,
                           out_bits=6 if narrow else 16, out_frac=3)
    shapes = [[5, 7], [3, 2]]
    inp = random_fixed_inputs(rng, num, shapes)
    win = random_windows(rng, shapes, 1, inp.x.shape[1])
    np.testing.assert_array_equal(fixed_forward(num, inp, win, clamp),
                                  scalar_reference(num, inp, win, clamp))


@pytest.mark.parametrize("name", ["tiny", "dat56"])
def test_fixed_matches_float_within_the_stated_bound(name):
    cfg = C.preset(name)
    num = cfg.numerics
    wl = make_workload(cfg, seed=3)
    inp = quantize_inputs(num, *wl.args)
    fixed = fixed_forward(num, inp) / 2.0 ** num.out_frac
    # float on the very same quantized inputs isolates the datapath's own rounding
    ref = msda_forward(*dequantize_inputs(num, inp))
    err = np.abs(fixed - ref).reshape(*ref.shape[:2], cfg.workload.heads, -1)
    bound = error_bound(num, inp.weight)
    assert (err <= bound + 1e-12).all()
    assert err.max() > bound.max() / 8  # the bound is not vacuous
    # and against float on the raw inputs: quantization of the inputs adds a little
    raw = msda_forward(*wl.args)
    assert np.abs(fixed - raw).max() < 0.05


def test_output_saturates_instead_of_wrapping():
    num = C.NumericsConfig(out_bits=8, out_frac=4)
    inp = FixedInputs(value=np.full((1, 4, 1, 2), 30000), shapes=np.array([[2, 2]]),
                      x=np.zeros((1, 2, 1, 1, 1), dtype=np.int64),
                      y=np.zeros((1, 2, 1, 1, 1), dtype=np.int64),
                      weight=np.array([16384, -16384]).reshape(1, 2, 1, 1, 1))
    inp.value[0, :, 0, 1] = -30000
    out = fixed_forward(num, inp)
    # +117 / -117 in real units would wrap in 8 bits; it saturates at the extremes.
    assert out[0, 0].tolist() == [127, -128]
    assert out[0, 1].tolist() == [-128, 127]


def test_accumulator_saturates_in_level_then_point_order():
    num = C.NumericsConfig(value_bits=16, weight_bits=16, acc_bits=32, out_bits=32,
                           out_frac=22)
    big = (1 << 15) - 1
    inp = FixedInputs(value=np.full((1, 1, 1, 1), big), shapes=np.array([[1, 1]]),
                      x=np.zeros((1, 1, 1, 1, 4), dtype=np.int64),
                      y=np.zeros((1, 1, 1, 1, 4), dtype=np.int64),
                      weight=np.array([big, big, big, -(1 << 15)]).reshape(1, 1, 1, 1, 4))
    out = fixed_forward(num, inp)
    term = big * big
    acc = min(term * 3, (1 << 31) - 1) - big * (1 << 15)  # saturate, then subtract
    assert out[0, 0, 0] == acc
    assert acc != term * 3 - big * (1 << 15)  # a plain sum would differ


def test_out_of_range_inputs_are_refused():
    num = C.NumericsConfig()
    inp = FixedInputs(value=np.full((1, 1, 1, 1), 1 << 20), shapes=np.array([[1, 1]]),
                      x=np.zeros((1, 1, 1, 1, 1), dtype=np.int64),
                      y=np.zeros((1, 1, 1, 1, 1), dtype=np.int64),
                      weight=np.zeros((1, 1, 1, 1, 1), dtype=np.int64))
    with pytest.raises(InputError, match="value holds values outside the 16-bit"):
        fixed_forward(num, inp)
