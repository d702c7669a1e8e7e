"""The pipelined divider against Python's integer division (softmax reciprocal, /Cg)."""

import numpy as np
import pytest
from layer_support import pipe

from defslice.hw.layer.divider import Divider
from defslice.model.fixedpoint import reciprocal


def rtl(dut, pairs):
    return [int(p.quot) for p in pipe(dut, [{"num": n, "den": d, "tag": k % 2}
                                             for k, (n, d) in enumerate(pairs)],
                                       dut.latency + 1)]


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_softmax_reciprocal(steps):
    # floor(2^37 / s) for sums s in [2^15, 64 * 2^15] (step 10e at the defaults).
    ef, rcf = 15, 22
    rng = np.random.default_rng(steps)
    sums = np.concatenate([[1 << ef, (1 << ef) + 1, 64 << ef, 3 << ef],
                           rng.integers(1 << ef, 64 << ef, size=40)])
    dut = Divider(ef + rcf + 1, 22, rcf + 1, steps_per_stage=steps)
    got = rtl(dut, [(1 << (ef + rcf), int(s)) for s in sums])
    assert got == reciprocal(sums, ef + rcf).tolist()
    assert dut.latency == -(-(rcf + 1) // steps) + 1


def test_division_by_a_constant():
    # LayerNorm: floor((2 S1 + Cg) / (2 Cg)) and floor(sum d^2 / Cg) for Cg = 96.
    rng = np.random.default_rng(3)
    nums = [*rng.integers(0, 96 << 20, size=50).tolist(), 0, 96 * (1 << 20) - 1]
    dut = Divider(27, 8, 21, steps_per_stage=3)
    assert rtl(dut, [(n, 96) for n in nums]) == [n // 96 for n in nums]
