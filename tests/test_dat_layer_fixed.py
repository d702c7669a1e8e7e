"""Bit-exact DAT++ layer: the vectorized model against an independent scalar reading of
docs/numerics.md ("DAT++ layer in fixed point"), slicing, host quantization, and its
error against the float layer."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defslice import config as C
from defslice.errors import InputError
from defslice.model.dat_layer import DatLayerSpec, dat_layer_trace, init_params
from defslice.model.dat_layer_error import nonlinearity_errors
from defslice.model.dat_layer_fixed import (
    LayerFormats,
    _position_bias,
    _ref_points,
    calibrate_formats,
    dat_layer_fixed_forward,
    dequantize_output,
    layer_trace_widths,
    quantize_layer_input,
    quantize_layer_params,
    rail_counts,
)
from defslice.model.slicing import SliceGrid


def rnd(a: int, k: int) -> int:
    return (a + (1 << (k - 1))) >> k if k else a


def sat(a: int, bits: int) -> int:
    return min(max(a, -(1 << (bits - 1))), (1 << (bits - 1)) - 1)


def rq(a: int, k: int, bits: int) -> int:
    return sat(rnd(a, k), bits)


def rhu(r: float) -> int:
    return math.floor(r + 0.5)


class Scalar:
    """Steps 1-12 of the contract, one integer at a time (Python ints), written from the
    document only: host constants (reference points, tables, log2 e) are recomputed here;
    the quantized weights and the slice windows are taken as given."""

    def __init__(self, qp, spec, fm, grid):
        self.qp, self.spec, self.num, self.ln, self.grid = qp, spec, fm.numerics, fm.layer, grid
        self.H, self.W = qp.map_size
        k, s = spec.offset_kernel, spec.stride
        self.pad = 0 if k == s else k // 2
        self.hk = (self.H + 2 * self.pad - k) // s + 1
        self.wk = (self.W + 2 * self.pad - k) // s + 1

    # host constants ---------------------------------------------------------------------
    def ref(self, i: int, size: int, keys: int) -> int:
        return ((2 * i + 1) * (size - 1) * (1 << self.num.coord_frac) + keys - 1) \
            // (2 * (keys - 1))

    def key_slice(self, i: int, j: int) -> int:
        py = min(max(math.floor((i + 0.5) * (self.H - 1) / (self.hk - 1) + 0.5), 0), self.H - 1)
        px = min(max(math.floor((j + 0.5) * (self.W - 1) / (self.wk - 1) + 0.5), 0), self.W - 1)
        return (py // self.grid.slice_h) * self.grid.n_cols + px // self.grid.slice_w

    def rsq(self, i: int) -> int:
        T, R = self.ln.rsqrt_index_bits, self.ln.rsqrt_frac
        return rhu(2.0 ** R / math.sqrt((i + 0.5) / 2 ** T))

    def gelu(self, n: int) -> int:
        nf = self.ln.n_frac

        def tab(i: int) -> int:
            if i >= self.ln.gelu_table_len:
                return 0
            u = -i / 2 ** nf
            return rhu(u * 0.5 * math.erfc(-u / math.sqrt(2)) * 2 ** nf)

        return n + tab(n) if n >= 0 else tab(-n)

    def tanh(self, t: int) -> int:
        tf, thf = self.ln.t_frac, self.ln.tanh_frac
        mag = abs(t)
        val = rhu(math.tanh(mag / 2 ** tf) * 2 ** thf) if mag < self.ln.tanh_table_len \
            else 1 << thf
        return -val if t < 0 else val

    def exp2(self, u: int) -> int:
        ub, ef = self.ln.exp_index_bits, self.ln.exp_frac
        a, b = (-u) >> ub, (-u) & ((1 << ub) - 1)
        return rnd(rhu(2.0 ** ef * 2.0 ** (-b / 2 ** ub)), a)

    # datapath ------------------------------------------------------------------------------
    def run(self, x):
        n_img, c = x.shape[:2]
        return np.array([self.image(x[b].tolist()) for b in range(n_img)]).reshape(
            n_img, c, self.H, self.W)

    def proj(self, wb, xs, shift, bits):
        w, b = wb
        return [rq(int(b[o]) + sum(int(w[o, i]) * xs[i] for i in range(len(xs))), shift, bits)
                for o in range(w.shape[0])]

    def image(self, x):
        num, ln, qp, H, W = self.num, self.ln, self.qp, self.H, self.W
        C = len(x)
        xs = [[x[c][p // W][p % W] for c in range(C)] for p in range(H * W)]
        q = [self.proj(qp.proj_q, xs[p], num.value_frac + ln.proj_q_frac - ln.q_frac,
                       ln.act_bits) for p in range(H * W)]
        keys = [(i, j) for i in range(self.hk) for j in range(self.wk)]
        ks = [self.key_slice(i, j) for i, j in keys]
        pos = [[self.position(q, g, i, j, ks[n]) for n, (i, j) in enumerate(keys)]
               for g in range(self.spec.groups)]
        samples = [self.sample(x, pos, n, ks[n]) for n in range(len(keys))]
        k = [self.proj(qp.proj_k, s, num.value_frac + ln.proj_k_frac - ln.k_frac, ln.act_bits)
             for s in samples]
        v = [self.proj(qp.proj_v, s, num.value_frac + ln.proj_v_frac - ln.v_frac, ln.act_bits)
             for s in samples]
        y = []
        for p in range(H * W):
            qs = (p // W) // self.grid.slice_h * self.grid.n_cols + (p % W) // self.grid.slice_w
            mine = [n for n in range(len(keys)) if ks[n] == qs]
            o = self.attend(q[p], k, v, pos, mine, p)
            y.append(self.proj(qp.proj_out, o, ln.o_frac + ln.proj_out_frac - num.out_frac,
                               num.out_bits))
        return [[y[p][c] for p in range(H * W)] for c in range(C)]

    def window(self, s: int):
        return self.grid.window(s, 0)

    def position(self, q, g, i, j, s):
        """Steps 2-6 for one key of group g: (sample position, bias position)."""
        num, ln, qp, spec, H, W = self.num, self.ln, self.qp, self.spec, self.H, self.W
        cg = qp.conv_w.shape[0]
        kk, f, win = spec.offset_kernel, num.coord_frac, self.window(s)
        h = []
        for c in range(cg):
            acc = int(qp.conv_b[c])
            for r in range(kk):
                for t in range(kk):
                    py, px = i * spec.stride - self.pad + r, j * spec.stride - self.pad + t
                    if (win.row0 <= py < win.row0 + win.rows
                            and win.col0 <= px < win.col0 + win.cols):
                        acc += int(qp.conv_w[c, r * kk + t]) * q[py * W + px][g * cg + c]
            h.append(rq(acc, ln.q_frac + ln.offset_conv_frac - ln.h_frac, ln.act_bits))
        mean = (2 * sum(h) + cg) // (2 * cg)
        d = [hc - mean for hc in h]
        var = sum(dc * dc for dc in d) // cg
        V = max(var + rhu(1e-5 * 2.0 ** (2 * ln.h_frac)), 1)
        nb = V.bit_length()
        E = nb + nb % 2
        T = ln.rsqrt_index_bits
        idx = V >> (E - T) if E >= T else V << (T - E)
        z = [sat(rnd(dc * self.rsq(idx), ln.rsqrt_frac + E // 2 - ln.z_frac), ln.act_bits)
             for dc in d]
        nn = [rq(z[c] * int(qp.norm_w[c]) + int(qp.norm_b[c]),
                 ln.z_frac + ln.norm_frac - ln.n_frac, ln.act_bits) for c in range(cg)]
        gl = [self.gelu(v) for v in nn]
        refs = (self.ref(i, H, self.hk), self.ref(j, W, self.wk))
        pos = []
        for a, size in ((0, H), (1, W)):
            acc = sum(int(qp.offset_w[a, c]) * gl[c] for c in range(cg))
            if spec.offset_range_factor < 0:
                off = rq(acc, ln.n_frac + ln.offset_proj_frac - f, num.coord_bits)
                pos.append(min(max(refs[a] + off, 0), (size - 1) << f))
            else:
                t = rq(acc, ln.n_frac + ln.offset_proj_frac - ln.t_frac, ln.act_bits)
                sc = rhu(spec.offset_range_factor * (size - 1)
                         / (2 * ((self.hk, self.wk)[a] - 1)) * 2 ** ln.offset_scale_frac)
                off = rq(self.tanh(t) * sc, ln.tanh_frac + ln.offset_scale_frac - f,
                         num.coord_bits)
                pos.append(sat(refs[a] + off, num.coord_bits))
        if self.grid.clamp != "clamp":
            return pos, pos
        bounds = ((win.y_lo, win.y_hi, H), (win.x_lo, win.x_hi, W))
        ps = [min(max(pos[a], lo << f), hi << f) for a, (lo, hi, _) in enumerate(bounds)]
        pb = list(pos)
        for a, (lo, hi, size) in enumerate(bounds):   # interior bounds only
            if lo != -1:
                pb[a] = max(pb[a], lo << f)
            if hi != size:
                pb[a] = min(pb[a], hi << f)
        return ps, pb

    def corners(self, pos):
        f = self.num.coord_frac
        (y0, fy), (x0, fx) = ((p >> f, p & ((1 << f) - 1)) for p in pos)
        one = 1 << f
        return [(y0, x0, (one - fy) * (one - fx)), (y0, x0 + 1, (one - fy) * fx),
                (y0 + 1, x0, fy * (one - fx)), (y0 + 1, x0 + 1, fy * fx)]

    def sample(self, x, pos, n, s):
        win, f = self.window(s), self.num.coord_frac
        C, G = len(x), self.spec.groups
        out = []
        for c in range(C):
            tot = 0
            for cy, cx, w in self.corners(pos[c // (C // G)][n][0]):
                if win.row0 <= cy < win.row0 + win.rows and win.col0 <= cx < win.col0 + win.cols:
                    tot += x[c][cy][cx] * w
            out.append(rnd(tot, 2 * f))
        return out

    def logit(self, qv, kv, pb, h, p):
        ln, f, H, W = self.ln, self.num.coord_frac, self.H, self.W
        qk = rnd(sum(a * b for a, b in zip(qv, kv, strict=True)),
                 ln.q_frac + ln.k_frac - ln.logit_frac)
        bias = 0
        if self.qp.rpe is not None:
            acc = 0
            for cy, cx, w in self.corners(pb):
                r, c = p // W - cy + H - 1, p % W - cx + W - 1
                if 0 <= r <= 2 * H - 2 and 0 <= c <= 2 * W - 2:
                    acc += int(self.qp.rpe[h, r, c]) * w
            bias = rnd(acc, 2 * f + ln.rpe_frac - ln.logit_frac)
        return sat(qk + bias, ln.logit_bits)

    def attend(self, qv, k, v, pos, mine, p):
        ln = self.ln
        nh, C = self.spec.heads, len(qv)
        hd, hg = C // nh, nh // self.spec.groups
        o = [0] * C
        if not mine:
            return o
        l2e = rhu(math.log2(math.e) * 2 ** ln.log2e_frac)
        for h in range(nh):
            ch = range(h * hd, (h + 1) * hd)
            logits = [self.logit([qv[c] for c in ch], [k[n][c] for c in ch],
                                 pos[h // hg][n][1], h, p) for n in mine]
            m = max(logits)
            e = [self.exp2(rnd((lv - m) * l2e, ln.logit_frac + ln.log2e_frac
                               - ln.exp_index_bits)) for lv in logits]
            r = (1 << (ln.exp_frac + ln.recip_frac)) // sum(e)
            prob = [rnd(ev * r, ln.exp_frac + ln.recip_frac - ln.prob_frac) for ev in e]
            for c in ch:
                o[c] = rq(sum(pv * v[n][c] for pv, n in zip(prob, mine, strict=True)),
                          ln.prob_frac + ln.v_frac - ln.o_frac, ln.act_bits)
        return o


NARROW = {"act_bits": 10, "q_frac": 6, "h_frac": 6, "z_frac": 6, "n_frac": 5, "t_frac": 5,
          "k_frac": 6, "v_frac": 6, "o_frac": 6, "logit_bits": 9, "logit_frac": 5,
          "rsqrt_frac": 9, "exp_index_bits": 5}


def small_case(seed: int, factor: float, groups: int, use_pe: bool, sliced: str,
               narrow: bool, clamp: str = "clamp"):
    rng = np.random.default_rng(seed)
    H, W, c = 9, 11, 8
    spec = DatLayerSpec(heads=2, groups=groups, stride=4, offset_kernel=5,
                        offset_range_factor=factor, use_pe=use_pe)
    params = init_params(spec, c, H, W, seed=seed)
    params["conv_offset.3.weight"] = params["conv_offset.3.weight"] * rng.uniform(0.5, 3)
    if use_pe:
        params["rpe_table"] = params["rpe_table"] * 50
    cfg = C.preset("dat56").replace(numerics={"coord_frac": 4, "coord_bits": 12},
                                    layer_numerics=NARROW if narrow else {})
    fm = LayerFormats.from_config(cfg)
    qp = quantize_layer_params(params, spec, fm, (H, W))
    scale = rng.choice([0.5, 2.0, 40.0])
    x_q = quantize_layer_input(rng.standard_normal((1, c, H, W)) * scale, fm)
    grid = {"none": SliceGrid.unsliced([(H, W)]),
            "slices": SliceGrid([(H, W)], int(rng.integers(2, H)), int(rng.integers(2, W)),
                                int(rng.integers(0, 3)), clamp)}[sliced]
    return x_q, qp, spec, fm, grid


@settings(max_examples=24, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), factor=st.sampled_from([-1.0, 0.0, 2.0]),
       groups=st.sampled_from([1, 2]), use_pe=st.booleans(),
       sliced=st.sampled_from(["none", "slices"]), narrow=st.booleans(),
       clamp=st.sampled_from(["clamp", "drop"]))
def test_vectorized_layer_equals_scalar_reference(seed, factor, groups, use_pe, sliced,
                                                  narrow, clamp):
    x_q, qp, spec, fm, grid = small_case(seed, factor, groups, use_pe, sliced, narrow, clamp)
    y, _ = dat_layer_fixed_forward(x_q, qp, spec, fm, grid)
    np.testing.assert_array_equal(y, Scalar(qp, spec, fm, grid).run(x_q))


def test_one_slice_over_the_map_is_the_unsliced_layer():
    x_q, qp, spec, fm, _ = small_case(5, -1.0, 2, True, "none", False)
    y0, t0 = dat_layer_fixed_forward(x_q, qp, spec, fm)
    y1, t1 = dat_layer_fixed_forward(x_q, qp, spec, fm, SliceGrid([(9, 11)], 9, 11, 0))
    np.testing.assert_array_equal(y0, y1)
    assert all(np.array_equal(t0[k], t1[k]) for k in t0)


def test_reference_points_are_the_exactly_rounded_rationals():
    from fractions import Fraction

    for size, keys, f in ((56, 7, 8), (9, 3, 4), (100, 13, 8), (37, 5, 6)):
        want = [math.floor(Fraction((2 * i + 1) * (size - 1) * 2 ** f, 2 * (keys - 1))
                           + Fraction(1, 2)) for i in range(keys)]
        assert _ref_points(size, keys, f).tolist() == want


def test_position_bias_at_positions_far_outside_the_table():
    _, qp, spec, fm, grid = small_case(3, 2.0, 2, True, "none", False)
    sc = Scalar(qp, spec, fm, grid)
    f, ln = fm.numerics.coord_frac, fm.layer
    rng = np.random.default_rng(0)
    H, W = qp.map_size
    pos = rng.integers(-(3 * H) << f, (3 * H) << f, size=(1, 2, 9, 2))
    pos[0, 0, :4] = [[-(H + 2) << f, 0], [(2 * H) << f, 5], [3, -(W + 3) << f], [7, 2 * W << f]]
    got = _position_bias(pos, qp, 2, f, 2 * f + ln.rpe_frac - ln.logit_frac)
    for h in range(2):
        for p in range(0, H * W, 7):
            for n in range(9):
                pb = pos[0, h, n].tolist()
                want = sc.logit([0], [0], pb, h, p)     # q.k = 0: the bias alone
                assert got[0, h, p, n] == want


def test_host_quantization_refuses_what_does_not_fit():
    spec = DatLayerSpec(heads=2, groups=1, stride=4, offset_kernel=5)
    params = init_params(spec, 8, 9, 11)
    fm = LayerFormats.from_config(C.preset("dat56"))
    params["proj_v.weight"] = params["proj_v.weight"] * 20
    with pytest.raises(InputError, match=r"proj_v.weight: \|w\| up to .*at most 12 hold it"):
        quantize_layer_params(params, spec, fm, (9, 11))
    params = init_params(spec, 8, 9, 11)
    params["proj_q.bias"] = params["proj_q.bias"] * 1e12
    with pytest.raises(InputError, match="proj_q.bias: the bias does not fit the 48-bit"):
        quantize_layer_params(params, spec, fm, (9, 11))
    with pytest.raises(InputError, match="prepared for 8 x 9 x 11"):
        qp = quantize_layer_params(init_params(spec, 8, 9, 11), spec, fm, (9, 11))
        dat_layer_fixed_forward(np.zeros((1, 8, 9, 12), dtype=np.int64), qp, spec, fm)


def dat56_case(name: str, seed: int = 0, factor: float | None = None):
    cfg = C.preset(name)
    if factor is not None:
        cfg = cfg.replace(workload={"offset_range_factor": factor})
    spec = DatLayerSpec.from_config(cfg)
    H, W = cfg.workload.levels[0]
    params = init_params(spec, cfg.workload.embed_dim, H, W, seed=seed)
    x = np.random.default_rng(seed + 1).standard_normal((1, cfg.workload.embed_dim, H, W))
    return cfg, spec, params, x, SliceGrid.from_config(cfg)


def relative_rms_error(cfg, spec, params, x, grid):
    fm = LayerFormats.from_config(cfg)
    qp = quantize_layer_params(params, spec, fm, cfg.workload.levels[0])
    y, tr = dat_layer_fixed_forward(quantize_layer_input(x, fm), qp, spec, fm, grid)
    ref = dat_layer_trace(x, params, spec, grid).y
    err = dequantize_output(y, fm) - ref
    return float(np.sqrt((err ** 2).mean() / (ref ** 2).mean())), tr, fm


@pytest.mark.parametrize("name, factor, limit", [
    ("dat56", None, 0.04), ("dat56-b", None, 0.04), ("dat56", 2.0, 0.04)])
def test_fixed_layer_tracks_the_float_layer_and_stays_in_its_formats(name, factor, limit):
    cfg, spec, params, x, grid = dat56_case(name, factor=factor)
    rel, tr, fm = relative_rms_error(cfg, spec, params, x, grid)
    assert rel < limit
    ln = fm.layer
    widths = layer_trace_widths(tr)
    for key in ("q", "h", "z", "n", "g", "k", "v", "o"):
        assert widths[key] <= ln.act_bits
    assert widths["logit"] <= ln.logit_bits
    assert tr["exp"].max() <= 1 << ln.exp_frac and tr["prob"].max() <= 1 << ln.prob_frac
    assert tr["recip"].max() <= 1 << ln.recip_frac
    has_key = tr["sum"] > 0
    assert (tr["sum"][has_key] >= 1 << ln.exp_frac).all()
    # probabilities of a query sum to one within their rounding
    total = tr["prob"].sum(-1)[has_key]
    assert np.abs(total - (1 << ln.prob_frac)).max() <= tr["prob"].shape[-1]


def test_calibrated_formats_are_valid_and_more_accurate():
    cfg, spec, params, x, grid = dat56_case("dat56", seed=2)
    cal = calibrate_formats(LayerFormats.from_config(cfg), spec, params, x, grid).into(cfg)
    assert cal.layer_numerics != cfg.layer_numerics
    before, _, _ = relative_rms_error(cfg, spec, params, x, grid)
    after, _, _ = relative_rms_error(cal, spec, params, x, grid)
    assert after < 0.7 * before


def test_nonlinearity_errors_meet_their_stated_bounds():
    ln = C.LayerNumericsConfig()
    err = nonlinearity_errors(ln, 49)
    assert err["rsqrt"]["worst"] <= 2.0 ** -(ln.rsqrt_index_bits - 1)
    assert err["rsqrt"]["seen"] <= err["rsqrt"]["worst"]
    assert 2.0 ** -(ln.n_frac + 2) < err["gelu"]["worst"] <= 2.0 ** -(ln.n_frac + 1) + 1e-12
    assert 2.0 ** -(ln.tanh_frac + 2) < err["tanh"]["worst"] <= 2.0 ** -(ln.tanh_frac + 1)
    assert err["exp2"]["worst"] <= 2.0 ** -ln.exp_frac
    assert 0 < err["reciprocal"]["worst"] <= 49 * 2.0 ** -ln.recip_frac


def test_defslice_model_reports_the_fixed_point_layer(tmp_path, capsys):
    from defslice.cli import main

    assert main(["model", "--preset", "dat56", "--out", str(tmp_path)]) == 0
    assert "fixed-point layer vs float" in capsys.readouterr().out
    text = (tmp_path / "model.md").read_text()
    assert "## DAT++ layer in fixed point against float" in text and "| reciprocal |" in text
    import json

    lf = json.loads((tmp_path / "model.json").read_text())["layer_fixed"]
    assert lf["sliced"]["raw"]["y_rel_rms"] < 0.05


def test_rail_counts_show_a_format_too_narrow_for_the_model():
    cfg, spec, params, x, grid = dat56_case("dat56", seed=4)
    params["conv_offset.0.weight"] = params["conv_offset.0.weight"] * 12   # h past +-4
    fm = LayerFormats.from_config(cfg)
    qp = quantize_layer_params(params, spec, fm, (56, 56))
    y, tr = dat_layer_fixed_forward(quantize_layer_input(x, fm), qp, spec, fm, grid)
    rails = rail_counts(tr, y, fm)
    assert rails["h"][0] > 0.01 * rails["h"][1] and rails["y"][1] == y.size
    cal = calibrate_formats(fm, spec, params, x, grid)
    assert cal.layer.h_frac < fm.layer.h_frac
    qp = quantize_layer_params(params, spec, cal, (56, 56))
    y, tr = dat_layer_fixed_forward(quantize_layer_input(x, cal), qp, spec, cal, grid)
    assert all(r == 0 for r, _ in rail_counts(tr, y, cal).values())
