"""The step-level engine model against the fixed-point layer: data organisation checks."""

import numpy as np
import pytest
from layer_support import CONFIGS, inputs

from defslice import config as C
from defslice.hw.layer.tlm import EngineModel
from defslice.model.dat_layer_fixed import dat_layer_fixed_forward


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_engine_model_equals_fixed_layer(cfg):
    plan, fmt, qp, x_q = inputs(cfg)
    image = plan.layout.memory_image(x_q[0], qp, plan.tasks)
    y = EngineModel(plan, fmt.numerics, fmt.layer, qp, image).run()
    want, _ = dat_layer_fixed_forward(x_q, qp, plan.dims.spec, fmt, plan.grid)
    assert np.array_equal(y, want[0])


def test_engine_model_dat56():
    cfg = C.preset("dat56").replace(hw={"engine": "layer"})
    plan, fmt, qp, x_q = inputs(cfg)
    image = plan.layout.memory_image(x_q[0], qp, plan.tasks)
    y = EngineModel(plan, fmt.numerics, fmt.layer, qp, image).run()
    want, _ = dat_layer_fixed_forward(x_q, qp, plan.dims.spec, fmt, plan.grid)
    assert np.array_equal(y, want[0])
