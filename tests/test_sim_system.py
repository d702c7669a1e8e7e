"""System tests: the generated ``defslice_top`` Verilog against the fixed-point model.

Every case generates the Verilog for a configuration, runs the cocotb bench (AxiRam DRAM,
AxiLiteMaster host, random back-pressure and read latency) and requires: outputs equal
to the model bit for bit, observed AXI bursts equal to ``SlicedProgram.transfers()`` as a
multiset, burst and beat totals equal to the design's own counters. Icarus runs every
configuration; Verilator (slow to build) a small but real set, one with a reset in the
middle of a run. ``SIM_FULL=1`` adds seeds, configurations and Verilator cases.
"""

import pytest

from defslice.sim.configs import CONFIGS, FULL_CONFIGS
from defslice.sim.report import SimReport
from defslice.sim.stage import SimOptions, run
from defslice.sim.testing import FULL, build_dir_for

pytestmark = pytest.mark.sim

ICARUS_CASES = [(name, seed) for name in (FULL_CONFIGS if FULL else CONFIGS)
                for seed in ((1, 2, 3) if FULL else (1,))]
VERILATOR_CASES = ([(name, 11) for name in FULL_CONFIGS] if FULL
                   else [("tiny", 11), ("tiny-1lvl-lanes1-single", 12)])


def _simulate(request, name, simulator, seed, **kw):
    out = build_dir_for(request.node.name)
    rep = run(FULL_CONFIGS[name], out, SimOptions(simulator, seed=seed, **kw))
    assert rep.passed, rep.failure_message()
    return rep.simulators[simulator]


def _assert_traffic_exact(rep):
    t = rep.traffic
    assert t.observed == t.expected == t.rtl_counters == t.traffic_counter
    assert not (t.missing_read_bursts or t.extra_read_bursts
                or t.missing_write_bursts or t.extra_write_bursts)
    assert rep.outputs.mismatches == 0 and rep.outputs.total > 0


@pytest.mark.parametrize(("name", "seed"), ICARUS_CASES)
def test_icarus(request, name, seed):
    rep = _simulate(request, name, "icarus", seed, backpressure=0.3)
    _assert_traffic_exact(rep)
    assert rep.performance.busy_cycles == rep.performance.ideal_busy_cycles


def test_icarus_no_backpressure(request):
    """Without pauses the loader's double buffering must hide most window loads."""
    rep = _simulate(request, "tiny", "icarus", 4, backpressure=0.0)
    _assert_traffic_exact(rep)
    perf = rep.performance
    assert perf.cycles >= perf.busy_cycles > 0


def test_icarus_reset_mid_run(request):
    rep = _simulate(request, "tiny-3x5", "icarus", 5, backpressure=0.2, reset_mid_run=True)
    _assert_traffic_exact(rep)
    assert rep.reset.reset_after_read_beats > 0


@pytest.mark.parametrize(("name", "seed"), VERILATOR_CASES)
def test_verilator(request, name, seed):
    # One build per configuration is the slow part; the run includes a mid-run reset.
    rep = _simulate(request, name, "verilator", seed, backpressure=0.3, reset_mid_run=True)
    _assert_traffic_exact(rep)
    assert rep.reset.reset_after_read_beats > 0


def test_sampled_queries_both_simulators(request):
    """``queries=N`` simulates a sample; one call runs both simulators; ``sim.json`` holds
    the report."""
    out = build_dir_for(request.node.name)
    rep = run(FULL_CONFIGS["tiny-o2"], out, SimOptions("both", seed=6, queries=24))
    assert rep.passed, rep.failure_message()
    assert rep.queries == 24
    assert set(rep.simulators) == {"icarus", "verilator"}
    assert SimReport.load(out / "sim.json") == rep
