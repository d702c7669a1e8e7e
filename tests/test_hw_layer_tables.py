"""GELU and tanh table units against ``gelu_fixed`` and ``tanh_fixed`` on every input."""

import numpy as np
import pytest
from layer_support import pipe

from defslice.config import LayerNumericsConfig
from defslice.hw.layer.tables import HalfTable
from defslice.model.fixedpoint import LayerTables, gelu_fixed, tanh_fixed


def rtl(dut, xs):
    return [int(p.y) for p in pipe(dut, [{"x": int(x), "tag": k % 2}
                                          for k, x in enumerate(xs)])]


def _inputs(size, bits, rng):
    """Every input around the table's end and both range limits, plus random ones."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    edge = np.arange(-size - 3, size + 4)
    return np.concatenate([edge, [lo, hi, lo + 1, 0], rng.integers(lo, hi + 1, 200)])


def test_gelu_table_unit():
    ln = LayerNumericsConfig()
    tb = LayerTables.build(ln)
    dut = HalfTable("gelu", tb.gelu, ln.act_bits, ln.act_bits)
    xs = _inputs(tb.gelu.size, ln.act_bits, np.random.default_rng(0))
    assert rtl(dut, xs) == gelu_fixed(xs, tb.gelu).tolist()


@pytest.mark.parametrize("t_frac,tanh_frac", [(9, 11), (6, 8)])
def test_tanh_table_unit(t_frac, tanh_frac):
    ln = LayerNumericsConfig(t_frac=t_frac, tanh_frac=tanh_frac)
    tb = LayerTables.build(ln)
    dut = HalfTable("tanh", tb.tanh, ln.act_bits, tanh_frac + 2, sat_frac=tanh_frac)
    xs = _inputs(tb.tanh.size, ln.act_bits, np.random.default_rng(1))
    assert rtl(dut, xs) == tanh_fixed(xs, tb.tanh, tanh_frac).tolist()
