"""System tests of the layer engine: the generated ``defslice_top`` (``hw.engine = "layer"``)
against the fixed-point DAT++ layer.

Every case runs the cocotb bench (AxiRam DRAM with random back-pressure and read latency,
AxiLiteMaster host) on the layer engine's program (:mod:`defslice.sim.layer_stimulus`)
and requires: ``y`` equal to ``dat_layer_fixed_forward`` bit for bit; the AXI bursts on
the bus equal to ``layer_transfers`` as a multiset, and the burst and beat totals equal to
the DRAM-traffic counter's layer scope and to the design's own counters; ``ARRAY_BUSY``
equal to the schedule's array steps and ``CYCLES = ARRAY_BUSY + STALL_CYCLES +
LOAD_CYCLES``. A small layer design simulates about 10,000 cycles in 20 to 45 s on
Icarus and builds in 2 to 3 minutes on Verilator here, so the default set is small:
Icarus and Verilator on one configuration each, both with a reset in the middle of a
first run, and a generated design whose requantizer truncates instead of rounding, which
must fail. ``SIM_FULL=1``: every configuration of
:data:`~defslice.sim.configs.LAYER_FULL_CONFIGS` (``dat56`` among them) on both
simulators, two seeds on Icarus, no back-pressure, and a flipped weight bit in DRAM.
"""

import dataclasses
from pathlib import Path

import pytest

from defslice.hw import generate_verilog
from defslice.sim.configs import LAYER_CONFIGS, LAYER_FULL_CONFIGS
from defslice.sim.stage import SimOptions, run
from defslice.sim.testing import FULL, build_dir_for

pytestmark = pytest.mark.sim

#: (configuration, seed, back-pressure, reset in the middle of a first run) on Icarus;
#: ``dat56-layer`` (about 400,000 cycles with back-pressure) with one seed only.
ICARUS_CASES = ([(name, seed, 0.3, seed == 2) for name in LAYER_FULL_CONFIGS
                 for seed in ((2,) if name == "dat56-layer" else (1, 2))]
                + [("ldat-a", 4, 0.0, False)] if FULL
                else [("ldat-g2-tanh", 1, 0.3, True)])
VERILATOR_CASES = list(LAYER_FULL_CONFIGS) if FULL else ["ldat-a"]
#: Deliberate faults that must fail (``design``: the requantizer truncates).
FAULT_CASES = ["design", "input-bit"] if FULL else ["design"]

_VERILOG: dict[str, Path] = {}


def _verilog(name):
    """The generated Verilog of configuration ``name``, generated once per session."""
    if name not in _VERILOG:
        _VERILOG[name] = generate_verilog(LAYER_FULL_CONFIGS[name],
                                          build_dir_for(f"layer-rtl-{name}"))
    return _VERILOG[name]


def _simulate(request, name, simulator, seed, **kw):
    out = build_dir_for(request.node.name)
    rep = run(LAYER_FULL_CONFIGS[name], out,
              SimOptions(simulator, seed=seed, verilog=_verilog(name), **kw))
    assert rep.passed, rep.failure_message()
    return rep.simulators[simulator]


def _assert_exact(rep):
    t, p = rep.traffic, rep.performance
    assert t.observed == t.expected == t.rtl_counters == t.traffic_counter
    assert not (t.missing_read_bursts or t.extra_read_bursts
                or t.missing_write_bursts or t.extra_write_bursts)
    assert rep.outputs.mismatches == 0 and rep.outputs.total > 0
    assert p.busy_cycles == p.ideal_busy_cycles
    assert p.cycles == p.busy_cycles + p.stall_cycles + p.load_cycles


@pytest.mark.parametrize(("name", "seed", "backpressure", "reset"), ICARUS_CASES)
def test_layer_icarus(request, name, seed, backpressure, reset):
    rep = _simulate(request, name, "icarus", seed, backpressure=backpressure,
                    reset_mid_run=reset)
    _assert_exact(rep)
    assert (rep.reset is not None and rep.reset.reset_after_read_beats > 0) == reset


@pytest.mark.parametrize("name", VERILATOR_CASES)
def test_layer_verilator(request, name):
    rep = _simulate(request, name, "verilator", 11, backpressure=0.3, reset_mid_run=True)
    _assert_exact(rep)
    assert rep.reset.reset_after_read_beats > 0


@pytest.mark.parametrize("fault", FAULT_CASES)
def test_layer_fault_is_caught(request, monkeypatch, fault):
    """``design``: a generated design whose requantizer truncates (``acc >> shift``)
    instead of rounding half up. ``input-bit``: one bit of ``proj_out``'s first weight
    flipped in DRAM, so the design computes ``y`` from it and the model from the true
    weight (output channel 0 differs). Either way only the outputs are blamed."""
    cfg, options = LAYER_CONFIGS["ldat-a"], SimOptions("icarus", seed=1,
                                                        waves_on_failure=False)
    if fault == "design":
        monkeypatch.setattr("defslice.hw.layer.requantizer.half_lsb", lambda shift: 0)
    else:
        options = dataclasses.replace(options, verilog=_verilog("ldat-a"), fault=fault)
    rep = run(cfg, build_dir_for(request.node.name), options)
    sim = rep.simulators["icarus"]
    assert not rep.passed and sim.outputs.mismatches > 0
    assert "differ from the fixed-point model; first: pixel" in sim.failures[0]
    assert sim.traffic.observed == sim.traffic.expected == sim.traffic.rtl_counters
    if fault == "input-bit":
        assert all(m.channel == 0 for m in sim.outputs.first_mismatches)
