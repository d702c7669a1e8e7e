"""Fixed-point primitives of the DAT++ layer: tables, 1/sqrt, GELU, tanh, exp2, reciprocal
and exact products, each against an independent scalar reading of docs/numerics.md."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defslice import config as C
from defslice.errors import ConfigError, InputError
from defslice.model.fixedpoint import (
    EXACT_FLOAT_BOUND,
    LayerTables,
    bilinear_weights,
    exact_matmul,
    exp2_fixed,
    gelu_fixed,
    reciprocal,
    requantize,
    rsqrt_normalize,
    split_coord,
    tanh_fixed,
)

LN = C.LayerNumericsConfig()
TAB = LayerTables.build(LN)


def rnd(a: int, k: int) -> int:
    return (a + (1 << (k - 1))) >> k if k else a


def rhu(r: float) -> int:
    return math.floor(r + 0.5)


def gelu(u: float) -> float:
    return u * 0.5 * math.erfc(-u / math.sqrt(2.0))


def test_requantize_rounds_half_up_then_saturates():
    acc = np.array([5, -5, 6, -7, 1000, -1000])
    assert requantize(acc, 1, 8).tolist() == [3, -2, 3, -3, 127, -128]


def test_tables_hold_the_documented_entries_and_ranges():
    T, R = LN.rsqrt_index_bits, LN.rsqrt_frac
    for j in (0, 1, 100, TAB.rsqrt.size - 1):
        i = j + (1 << (T - 2))
        assert TAB.rsqrt[j] == rhu(2.0 ** R / math.sqrt((i + 0.5) / 2 ** T))
    assert TAB.rsqrt.size == LN.rsqrt_table_len == 768
    assert (TAB.rsqrt > 1 << R).all() and (TAB.rsqrt < 1 << (R + 1)).all()
    nf = LN.n_frac
    assert TAB.gelu.size == LN.gelu_table_len == 3732
    assert TAB.gelu[600] == rhu(gelu(-600 / 2 ** nf) * 2 ** nf)
    assert TAB.gelu.min() == -174 and TAB.gelu.max() == 0
    # past the table every entry would round to 0; the last one inside does not
    past = np.arange(TAB.gelu.size, TAB.gelu.size + 4000)
    assert all(rhu(gelu(-i / 2 ** nf) * 2 ** nf) == 0 for i in past)
    assert TAB.gelu[-1] == -1
    tf, thf = LN.t_frac, LN.tanh_frac
    assert TAB.tanh.size == LN.tanh_table_len
    assert TAB.tanh[-1] < 1 << thf and rhu(math.tanh(TAB.tanh.size / 2 ** tf) * 2 ** thf) \
        == 1 << thf
    ef = LN.exp_frac
    assert TAB.exp2[0] == 1 << ef and TAB.exp2.size == 1 << LN.exp_index_bits
    assert (TAB.exp2 > 1 << (ef - 1)).all()
    assert TAB.log2e == 47274


@settings(max_examples=60, deadline=None)
@given(v=st.integers(1, (1 << 50) - 1), bits=st.integers(4, 12))
def test_rsqrt_normalize_matches_the_definition(v, bits):
    i, e = rsqrt_normalize(np.array([v]), bits)
    nb = v.bit_length()
    E = nb + nb % 2
    assert e[0] == E and 2 ** (E - 2) <= v < 2 ** E
    want = v >> (E - bits) if E >= bits else v << (bits - E)
    assert i[0] == want and 2 ** (bits - 2) <= want < 2 ** bits


def rsqrt_relative_bound(tab: np.ndarray, T: int, R: int) -> float:
    """Worst relative error of RSQ[i] 2^-R * sqrt(m) - 1 over m in [i, i+1) / 2^T."""
    i = np.arange(1 << (T - 2), 1 << T, dtype=np.float64)
    r = tab / 2.0 ** R
    return float(np.maximum(np.abs(r * np.sqrt(i / 2 ** T) - 1),
                            np.abs(r * np.sqrt((i + 1) / 2 ** T) - 1)).max())


def test_rsqrt_error_over_the_whole_input_range():
    T, R = LN.rsqrt_index_bits, LN.rsqrt_frac
    bound = rsqrt_relative_bound(TAB.rsqrt, T, R)
    assert bound < 2.0 ** -(T - 1)
    rng = np.random.default_rng(0)
    v = np.concatenate([np.arange(1, 1 << 16), rng.integers(1, 1 << 45, 100000)])
    i, e = rsqrt_normalize(v, T)
    approx = TAB.rsqrt[i - (1 << (T - 2))] * 2.0 ** (-R - e // 2)
    rel = np.abs(approx * np.sqrt(v.astype(np.float64)) - 1)
    assert rel.max() <= bound + 1e-12
    assert rel.max() > bound / 2      # the bound is reached, not vacuous


def test_gelu_is_the_correctly_rounded_gelu_of_every_input():
    nf = LN.n_frac
    n = np.arange(-(1 << 15), 1 << 15)
    got = gelu_fixed(n, TAB.gelu)
    sample = np.concatenate([np.arange(-4000, 4000), n[::97]])
    want = [rhu(gelu(int(k) / 2 ** nf) * 2 ** nf) for k in sample]
    assert got[sample + (1 << 15)].tolist() == want
    exact = n * 0.5 * np.vectorize(math.erfc)(-n / 2 ** nf / math.sqrt(2))
    assert np.abs(got - exact).max() <= 0.5 + 1e-9


def test_tanh_sign_magnitude_error_is_half_an_lsb():
    tf, thf = LN.t_frac, LN.tanh_frac
    t = np.arange(-(1 << 15), 1 << 15)
    got = tanh_fixed(t, TAB.tanh, thf)
    half = 1 << 15
    assert (got[half + 1:] == -got[1:half][::-1]).all()      # odd: th(-t) = -th(t)
    for k in (0, 1, -1, 100, -2000, TAB.tanh.size, -(1 << 15), (1 << 15) - 1):
        mag = rhu(math.tanh(abs(k) / 2 ** tf) * 2 ** thf)
        assert got[k + (1 << 15)] == (mag if k >= 0 else -mag)
    assert np.abs(got - np.tanh(t / 2 ** tf) * 2 ** thf).max() <= 0.5 + 1e-9


def test_exp2_matches_the_scalar_definition_and_its_error():
    ub, ef = LN.exp_index_bits, LN.exp_frac
    u = -np.arange(0, (ef + 4) << ub)
    got = exp2_fixed(u, TAB.exp2, ub, ef)
    for k in (0, 1, 1023, 1024, 1500, 5 * 1024 + 7, (ef + 1) << ub, (ef + 2) << ub):
        a, b = k >> ub, k & ((1 << ub) - 1)
        assert got[k] == rnd(int(TAB.exp2[b]), a)
    assert (got[(ef + 2) << ub:] == 0).all() and got[((ef + 2) << ub) - 1] == 0
    exact = 2.0 ** ef * np.exp2(u / 2.0 ** ub)
    # table rounding (1/2 LSB) then the shift's rounding (1/2 LSB of the result)
    assert np.abs(got - exact).max() <= 1.0 + 1e-9
    with pytest.raises(InputError, match="<= 0"):
        exp2_fixed(np.array([1]), TAB.exp2, ub, ef)


def test_reciprocal_is_the_exact_floor():
    s = np.concatenate([np.arange(1, 5000), np.arange(1 << 15, 64 << 15, 997)])
    r = reciprocal(s, 37)
    assert (r * s <= 1 << 37).all() and ((r + 1) * s > 1 << 37).all()
    with pytest.raises(InputError, match=">= 1"):
        reciprocal(np.array([0]), 8)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), big=st.booleans())
def test_exact_matmul_is_exact_on_both_paths(seed, big):
    rng = np.random.default_rng(seed)
    hi = (1 << 28) if big else (1 << 15)    # big: past 2^53, the int64 path
    a = rng.integers(-hi, hi, (3, 5, 7))
    b = rng.integers(-hi, hi, (3, 7, 4))
    got = exact_matmul(a, b)
    want = [[[sum(int(a[n, i, k]) * int(b[n, k, j]) for k in range(7)) for j in range(4)]
             for i in range(5)] for n in range(3)]
    assert got.tolist() == want
    assert (7 * hi * hi >= EXACT_FLOAT_BOUND) == big


def test_split_and_bilinear_weights():
    c = np.array([-1, 0, 255, 256, -257])
    i, fr = split_coord(c, 8)
    assert i.tolist() == [-1, 0, 0, 1, -2] and fr.tolist() == [255, 0, 255, 0, 255]
    w = bilinear_weights(fr, fr[::-1], 8)
    assert (w.sum(-1) == 1 << 16).all()


@pytest.mark.parametrize("change, field", [
    ({"act_bits": 18}, "layer_numerics.act_bits"),
    ({"q_frac": 16}, "layer_numerics.q_frac"),
    ({"n_frac": 11}, "layer_numerics.n_frac"),
    ({"rsqrt_frac": 10}, "layer_numerics.rsqrt_frac"),
    ({"recip_frac": 24}, "layer_numerics.recip_frac"),
    ({"o_frac": 15, "prob_frac": 4, "v_frac": 10}, "layer_numerics.o_frac"),
])
def test_layer_numerics_refuses_bad_formats_naming_the_field(change, field):
    with pytest.raises(ConfigError) as err:
        C.LayerNumericsConfig(**change)
    assert err.value.field == field and field in str(err.value)


def test_layer_numerics_cross_checks_and_toml_round_trip(tmp_path):
    cfg = C.preset("dat56").replace(layer_numerics={"q_frac": 12, "exp_index_bits": 8})
    C.dump(cfg, tmp_path / "c.toml")
    assert C.load(tmp_path / "c.toml") == cfg
    assert C.load(tmp_path / "c.toml").layer_numerics.exp_table_len == 256
    with pytest.raises(ConfigError, match="numerics.coord_frac .* DSP48E1"):
        C.preset("dat56").replace(numerics={"coord_frac": 12})
    with pytest.raises(ConfigError, match=r"layer_numerics.q_frac = .*value_frac \+ proj_q"):
        C.preset("dat56").replace(layer_numerics={"proj_q_frac": 2})


def test_every_product_fits_one_dsp48e1_at_the_extremes():
    ln = C.LayerNumericsConfig(act_bits=17, weight_bits=18, rsqrt_frac=22, logit_bits=24,
                               recip_frac=23, exp_frac=16, prob_frac=16, log2e_frac=16,
                               tanh_frac=16, t_frac=4)
    for _, a, b in ln.dsp_products(16, 8):
        assert min(a, b) <= C.DSP_B_BITS and max(a, b) <= C.DSP_A_BITS
