"""The layer core (sequencer, operand fetch, array, units, buffers, writer) on whole
layers in the Amaranth simulator, against the fixed-point layer bit for bit."""

import numpy as np
import pytest
from layer_support import CONFIGS, traced

from defslice.hw.layer.simulate import simulate_core
from defslice.sim.testing import FULL


def run_core(cfg, seed=0, ready_prob=1.0):
    _, _, qp, x_q, y_want, _ = traced(cfg, seed)
    run = simulate_core(cfg, x_q, qp, ready_prob, seed)
    return run.y, y_want[0]


#: About 40 s each in the Amaranth simulator: two by default (two groups, tanh offsets,
#: overlap 3, slices that do not divide the map; slices without keys), all with SIM_FULL=1.
CORE_CASES = CONFIGS if FULL else [c for c in CONFIGS if c.name in ("ldat-g2-tanh",
                                                                    "ldat-sparse")]


@pytest.mark.parametrize("cfg", CORE_CASES, ids=lambda c: c.name)
def test_core_equals_fixed_layer(cfg):
    # The y consumer takes a beat on 60% of the cycles: the writer is back-pressured.
    y, want = run_core(cfg, ready_prob=0.6)
    assert np.array_equal(y, want)
