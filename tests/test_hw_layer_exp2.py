"""The exp2 unit against steps 10b-10c of the fixed-point softmax."""

import numpy as np
import pytest
from layer_support import pipe

from defslice.config import LayerNumericsConfig
from defslice.hw.layer.exp2 import Exp2Unit
from defslice.model.fixedpoint import LayerTables, exp2_fixed, round_half_up_shift


def reference(ts, ln, tb):
    shift = ln.logit_frac + ln.log2e_frac - ln.exp_index_bits
    u = round_half_up_shift(np.asarray(ts) * tb.log2e, shift)
    return exp2_fixed(u, tb.exp2, ln.exp_index_bits, ln.exp_frac).tolist()


def rtl(dut, ts):
    return [int(p.e) for p in pipe(dut, [{"t": int(t), "tag": k % 2}
                                          for k, t in enumerate(ts)])]


@pytest.mark.parametrize("ln", [LayerNumericsConfig(),
                                LayerNumericsConfig(exp_index_bits=6, exp_frac=12,
                                                    logit_bits=16, logit_frac=8)])
def test_exp2_unit(ln):
    tb = LayerTables.build(ln)
    lo = -(1 << ln.logit_bits) + 1            # l - m of two saturated logits
    rng = np.random.default_rng(ln.exp_frac)
    ts = np.concatenate([np.arange(-300, 1), [lo, lo + 1, -(1 << ln.logit_frac)],
                         -rng.integers(0, -lo + 1, 300),
                         -rng.integers(0, 40 << ln.logit_frac, 300)])
    dut = Exp2Unit(ln.logit_bits + 1, tb.log2e,
                   ln.logit_frac + ln.log2e_frac - ln.exp_index_bits, tb.exp2, ln.exp_frac)
    assert rtl(dut, ts) == reference(ts, ln, tb)
