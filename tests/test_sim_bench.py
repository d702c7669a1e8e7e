"""The bench checks itself: a design that is right passes, designs with faults fail.

The designs here are the behavioural models of :mod:`defslice.sim.behavioural` (Icarus),
not the generated hardware, so these cases test the bench: with a swapped bilinear
weight the first mismatching query / head / channel is reported and a waveform is kept;
with a wrong burst length the burst multiset and totals differ; with a counter that
misses beats the design's counters disagree with the monitor. The layer engine's path
runs on the replay model: it passes with a mid-run reset, one wrong ``y`` word is named
by pixel and channel, a short parameter burst fails the burst multiset.
"""

import pytest

from defslice.records import sha256_of
from defslice.sim.behavioural import write_behavioural_verilog, write_layer_replay_verilog
from defslice.sim.configs import CONFIGS, LAYER_CONFIGS
from defslice.sim.program import make_program
from defslice.sim.stage import SimOptions, run
from defslice.sim.testing import build_dir_for

pytestmark = pytest.mark.sim

CFG = CONFIGS["tiny"]


def _with_fault(path, replace):
    """``path`` with the text ``replace[0]`` (found exactly once) replaced by
    ``replace[1]``; unchanged when ``replace`` is None."""
    if replace is not None:
        old, new = replace
        text = path.read_text()
        assert text.count(old) == 1, f"fault site {old!r} not found exactly once"
        path.write_text(text.replace(old, new))
    return path


def _behavioural(out, replace=None):
    return _with_fault(write_behavioural_verilog(CFG, out / "behav"), replace)


def test_correct_model_passes_with_reset(request):
    out = build_dir_for(request.node.name)
    design = _behavioural(out)
    rep = run(CFG, out, SimOptions("icarus", seed=1, verilog=design, reset_mid_run=True))
    assert rep.passed, rep.failure_message()
    # The file given is the file simulated: nothing is generated, its hash is recorded.
    assert rep.verilog == design and rep.verilog_sha256 == sha256_of(design)
    assert not (out / "rtl").exists()


def test_swapped_bilinear_weight_fails_with_first_mismatch_and_waves(request):
    out = build_dir_for(request.node.name)
    # w01 and w10 exchanged: the two off-diagonal corners get each other's weight.
    fault = ("wc[1] = (ONE - fy) * fx;", "wc[1] = fy * (ONE - fx);")
    rep = run(CFG, out, SimOptions("icarus", seed=1, verilog=_behavioural(out, fault)))
    sim = rep.simulators["icarus"]
    assert not rep.passed
    assert sim.outputs.mismatches > 0
    first = sim.outputs.first_mismatches[0]
    assert first.expected != first.actual
    assert any(f"head {first.head}, channel {first.channel}" in f for f in sim.failures)
    # Traffic is untouched by this fault: only the outputs are blamed.
    assert sim.traffic.observed == sim.traffic.expected
    waves = out / "icarus" / "waves" / "defslice_top.fst"
    assert sim.waves == waves and waves.stat().st_size > 0


def test_wrong_burst_length_fails_traffic(request):
    out = build_dir_for(request.node.name)
    fault = (f"localparam MAX_BEATS = {CFG.hw.max_burst_beats};",
             "localparam MAX_BEATS = 3;")
    rep = run(CFG, out, SimOptions("icarus", seed=2, verilog=_behavioural(out, fault),
                                   waves_on_failure=False))
    sim = rep.simulators["icarus"]
    assert not rep.passed
    assert sim.outputs.mismatches == 0
    assert sim.traffic.extra_read_bursts and sim.traffic.missing_read_bursts
    assert any("AXI bursts differ" in f for f in sim.failures)


def test_counter_missing_beats_fails(request):
    out = build_dir_for(request.node.name)
    fault = ("if (m_axi_rvalid && m_axi_rready) read_beats <= read_beats + 1;",
             "if (m_axi_rvalid && m_axi_rready && !m_axi_rlast) read_beats <= read_beats + 1;")
    rep = run(CFG, out, SimOptions("icarus", seed=3, verilog=_behavioural(out, fault),
                                   waves_on_failure=False))
    sim = rep.simulators["icarus"]
    assert not rep.passed
    assert sim.traffic.observed == sim.traffic.expected
    assert sim.traffic.rtl_counters.read_beats < sim.traffic.observed.read_beats
    assert any("counters" in f for f in sim.failures)


# -- the layer engine's path, on the replay model ------------------------------------------
LAYER_CFG = LAYER_CONFIGS["ldat-a"]


def _replay(out, seed, replace=None):
    return _with_fault(write_layer_replay_verilog(LAYER_CFG, out / "replay", seed), replace)


def test_layer_replay_passes_with_reset(request):
    """The layer program's registers, output region, bursts and counters through the
    bench on a design that replays them; a reset in the middle of the first run."""
    out = build_dir_for(request.node.name)
    rep = run(LAYER_CFG, out, SimOptions("icarus", seed=4, verilog=_replay(out, 4),
                                         backpressure=0.3, reset_mid_run=True))
    assert rep.passed, rep.failure_message()
    sim = rep.simulators["icarus"]
    t = sim.traffic
    assert t.observed == t.expected == t.rtl_counters == t.traffic_counter
    assert sim.outputs.total == LAYER_CFG.workload.embed_dim * 144
    assert sim.reset.reset_after_read_beats > 0 and rep.descriptors == 6
    assert sim.performance.load_cycles == sim.performance.cycles


def test_layer_replay_one_wrong_y_word_is_named(request):
    out = build_dir_for(request.node.name)
    prog = make_program(LAYER_CFG, 5)
    # The 31st y beat of the replay's table, its lowest 16 bits (one channel) changed.
    text = _replay(out, 5).read_text()
    line = next(x for x in text.splitlines() if x.strip().startswith("ydata[30] ="))
    old = line.strip()
    word = int(old.split("'h")[1].rstrip(";"), 16)
    new = old.replace(old.split("'h")[1], f"{word ^ 0x8:016x};")
    rep = run(LAYER_CFG, out, SimOptions("icarus", seed=5, verilog=_replay(out, 5, (old, new)),
                                         waves_on_failure=False))
    sim = rep.simulators["icarus"]
    assert not rep.passed and sim.outputs.mismatches == 1
    m = sim.outputs.first_mismatches[0]
    assert m.actual == m.expected ^ 0x8
    assert prog.expected_outputs()[m.query, m.channel] == m.expected
    assert f"pixel ({m.row}, {m.col}), channel {m.channel}" in sim.failures[0]
    assert sim.traffic.observed == sim.traffic.expected


def test_layer_replay_short_parameter_burst_fails_traffic(request):
    out = build_dir_for(request.node.name)
    first = make_program(LAYER_CFG, 6).transfers()[0]
    old = f"bkind[0] = 0; bslice[0] = 0; boff[0] = 0; bbeats[0] = {first.beats};"
    new = old.replace(f"bbeats[0] = {first.beats}", f"bbeats[0] = {first.beats - 1}")
    rep = run(LAYER_CFG, out, SimOptions("icarus", seed=6, verilog=_replay(out, 6, (old, new)),
                                         waves_on_failure=False))
    sim = rep.simulators["icarus"]
    assert not rep.passed and sim.outputs.mismatches == 0
    assert sim.traffic.missing_read_bursts == ((hex(first.addr), first.beats),)
    assert any("AXI bursts differ from layer_transfers()" in f for f in sim.failures)
