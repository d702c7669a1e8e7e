"""The layer engine's benchmark figures (``defslice bench --only layer``) from a run's
counters, against the cycle model they are put beside."""

import pytest

from defslice import config as C
from defslice.bench import BENCHES, LAYER_BENCH_CONFIGS, layer_figures
from defslice.hw.layer.cycles import estimate
from defslice.hw.layer.plan import LayerPlan
from defslice.sim.configs import sim_config


def test_layer_benches_are_registered():
    assert {"layer", "layer-dat56"} <= set(BENCHES)
    for name in LAYER_BENCH_CONFIGS:
        assert sim_config(name).hw.engine == "layer"


def test_layer_figures_of_a_run_as_the_model_predicts():
    cfg = C.preset("dat56").replace(hw={"engine": "layer"})
    est = estimate(LayerPlan.from_config(cfg))
    load = est.first_load + est.exposed_load
    counters = {"CYCLES": est.total, "ARRAY_BUSY": est.array_busy,
                "STALL_CYCLES": est.total - est.array_busy - load, "LOAD_CYCLES": load,
                "READ_BEATS": est.read_beats, "WRITE_BEATS": est.write_beats}
    f = layer_figures(cfg, counters)
    assert f["multipliers"] == 128
    assert f["rtl_over_model"] == 1.0
    assert f["array_utilisation"] == pytest.approx(est.utilisation, abs=1e-4)
    assert f["model_load_cycles"] == f["load_cycles"]
    assert f["cycles_over_compute_bound"] == pytest.approx(est.total / est.compute_bound,
                                                           abs=1e-3)
    assert f["read_port_utilisation"] == pytest.approx(est.read_beats / est.total, abs=1e-4)


def test_layer_figures_of_a_slower_run():
    cfg = sim_config("ldat-a")
    est = estimate(LayerPlan.from_config(cfg))
    counters = {"CYCLES": 2 * est.total, "ARRAY_BUSY": est.array_busy, "STALL_CYCLES": 0,
                "LOAD_CYCLES": 0, "READ_BEATS": est.total, "WRITE_BEATS": 0}
    f = layer_figures(cfg, counters)
    assert f["rtl_over_model"] == 2.0
    assert f["read_port_utilisation"] == 0.5
    assert f["array_utilisation"] == pytest.approx(est.utilisation / 2, abs=1e-4)


@pytest.mark.parametrize("name", ["ldat-a", "ldat-sparse"])
def test_the_model_predicts_the_rtl_cycles(name):
    """The cycle model walks the schedule the RTL runs: each slice's cycles from the
    sequencer taking it to its ``done`` exactly, the run's CYCLES and LOAD_CYCLES within
    0.5% (always-ready memory), its steps are ARRAY_BUSY."""
    import numpy as np
    from layer_support import CONFIGS, traced

    from defslice.hw.layer.cycles import slice_cycles
    from defslice.hw.layer.simulate import simulate_top

    def watch(top):
        seq = top.core.sequencer
        return [seq.slice.valid & seq.slice.ready, seq.done]

    cfg = next(c for c in CONFIGS if c.name == name)
    plan, _, qp, x_q, y_want, _ = traced(cfg, 1)
    run = simulate_top(cfg, x_q, qp, seed=None, watch=watch)
    assert np.array_equal(run.y, y_want[0])
    taken, done = (np.flatnonzero([cycle[k] for cycle in run.trace]) for k in range(2))
    keyed = [t for t in plan.tasks if t.num_keys]
    assert list(done - taken) == [slice_cycles(plan, t)[0] for t in keyed]
    est = estimate(plan)
    c = run.counters
    assert c["ARRAY_BUSY"] == est.array_busy
    assert est.total == pytest.approx(c["CYCLES"], rel=0.005)
    assert est.first_load + est.exposed_load == pytest.approx(c["LOAD_CYCLES"], rel=0.005)
