"""``defslice flow`` end to end on ``tiny``, and every way it can fail for a user."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import pytest

from defslice import config as cfgmod
from defslice.cli import main
from defslice.flow import FlowReport
from defslice.hw.reports import Ecp5Timing, XilinxUtilization, critical_path_summary
from defslice.hw.stage import VerilogReport
from defslice.model.stage import ModelReport, ModelSeconds
from defslice.model.traffic_stage import (
    DataflowTraffic,
    Normalized,
    TrafficConfigRecord,
    TrafficReport,
    TrafficScope,
    TrafficSeconds,
    Volume,
)
from defslice.records import RecordError, sha256_of
from defslice.sim.report import (
    AxiTraffic,
    OutputCheck,
    Performance,
    SimReport,
    SimulatorReport,
    TrafficCheck,
    WallSeconds,
)
from defslice.summary import write_summary

pytestmark = pytest.mark.sim


#: A register-to-register path as ``nextpnr --report`` writes it (abridged).
NEXTPNR_PATH = {"from": "posedge clk", "to": "posedge clk", "path": [
    {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "lvl_FF"}, "to": {"cell": "lvl_FF"}},
    {"type": "routing", "delay": 1.5, "net": "lvl", "sources": ["top.v:966.7-966.13"],
     "from": {"cell": "lvl_FF"}, "to": {"cell": "$162_LUT4"}},
    {"type": "logic", "delay": 1.0, "from": {"cell": "$162_LUT4"}, "to": {"cell": "$162_LUT4"}},
    {"type": "routing", "delay": 0.5, "net": "\\$162[10]", "sources": ["top.v:79.14-79.19",
                                                                     "arith_map.v:63.2"],
     "from": {"cell": "$162_LUT4"}, "to": {"cell": "pix_FF"}},
    {"type": "setup", "delay": 0.0, "from": {"cell": "pix_FF"}, "to": {"cell": "pix_FF"}}]}


def test_critical_path_summary_of_a_nextpnr_report():
    cp = critical_path_summary(NEXTPNR_PATH)
    assert (cp.start, cp.end, cp.steps) == ("lvl_FF", "pix_FF", 5)
    assert (cp.delay_ns, cp.logic_ns, cp.routing_ns) == (3.5, 1.5, 2.0)
    assert cp.nets == ["lvl"] and cp.lines == ["966", "79"]


def _flow(out: Path, *extra: str) -> int:
    return main(["flow", "--preset", "tiny", "--out", str(out), "--simulator", "icarus",
                 "--no-reports", *extra])


def test_flow_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "flow"
    assert _flow(out) == 0
    printed = capsys.readouterr().out
    for stage in ("golden model", "Verilog", "cocotb simulation", "DRAM traffic"):
        assert f"{stage}" in printed and "done in" in printed
    summary = (out / "summary.md").read_text()
    assert "**PASS**" in summary
    assert "0 / 640" in summary                       # no output differs
    assert "skipped (`--no-reports`)" in summary
    assert "![DRAM traffic](traffic/traffic_tiny.png)" in summary
    assert "defslice flow --preset tiny" in summary   # how to reproduce
    assert not (out / "FAILED.md").exists()
    for produced in ("verilog/defslice_top.v", "sim/sim.json", "model/model.json",
                     "traffic/traffic_tiny.json", "traffic/traffic_tiny.png", "flow.json"):
        assert (out / produced).is_file(), produced
    assert cfgmod.load(out / "chosen.toml") == cfgmod.preset("tiny")
    report = FlowReport.load(out / "flow.json")
    assert report.sim.passed and list(report.sim.simulators) == ["icarus"]
    assert SimReport.load(out / "sim" / "sim.json") == report.sim
    assert VerilogReport.load(out / "verilog" / "verilog.json") == report.verilog


def test_flow_simulates_the_verilog_it_generated(tmp_path):
    """summary.md names the hash of the simulated Verilog; it is the hash of
    verilog/defslice_top.v, which the simulation ran in place (nothing regenerated)."""
    out = tmp_path / "flow"
    assert _flow(out, "--queries", "8") == 0
    generated = out / "verilog" / "defslice_top.v"
    digest = sha256_of(generated)
    summary = (out / "summary.md").read_text()
    simulated = re.search(r"\(SHA-256 `([0-9a-f]{64})`\)\. Outputs must equal", summary)
    assert simulated is not None, summary
    assert simulated.group(1) == digest
    assert f"SHA-256 `{digest}`, the file simulated." in summary
    sim = SimReport.load(out / "sim" / "sim.json")
    assert sim.verilog == generated and sim.verilog_sha256 == digest
    assert not (out / "sim" / "rtl").exists()
    assert "--queries 8" in summary                     # the reproducing command line


def _counts(n: int) -> AxiTraffic:
    return AxiTraffic(n // 2, n, n // 2, n)


def _reports(tmp_path: Path) -> FlowReport:
    """Stage reports of a hypothetical run, with round figures to check the text."""
    model = ModelReport(config="tiny", seed=0, queries=80, slices=4, nonempty_slices=4,
                        clamped_fraction=0.25, sliced_vs_unsliced_max_abs=0.1,
                        fixed_vs_float_same_inputs_max_abs=0.001, fixed_error_bound_max=0.002,
                        fixed_within_bound=True, fixed_vs_float_raw_inputs_max_abs=0.01,
                        seconds=ModelSeconds(0.1, 0.2, 0.3))
    util = XilinxUtilization(tool="yosys", family="xc7", part="xc7a100tcsg324-1",
                             top="defslice_top", LUT=6340, FF=1268, RAMB18=2, RAMB36=1,
                             DSP48E1=24, LUTRAM_SRL=0, CARRY4=10, cells={"LUT6": 6340},
                             fallback_reasons=[])
    timing = Ecp5Timing(tool="yosys", device="LFE5U-85F", top="defslice_top",
                        target_mhz=100.0, fmax_mhz=50.0, met=False, utilization={},
                        seed=1, fallback_reasons=[],
                        critical_path=critical_path_summary(NEXTPNR_PATH))
    vpath = tmp_path / "verilog" / "defslice_top.v"
    verilog = VerilogReport(config="tiny", verilog=vpath, verilog_sha256="ab" * 32,
                            linted=True, xilinx_tree=None, utilization=util, timing=timing,
                            generate_seconds=1.0)
    counts = _counts(2)
    icarus = SimulatorReport(
        passed=True, failures=(), outputs=OutputCheck(640, 0, ()),
        traffic=TrafficCheck(counts, counts, counts, counts, (), (), (), (), 1),
        performance=Performance(cycles=2000, busy_cycles=1280, stall_cycles=10,
                                bench_cycles=2000, bilinear_samples=640,
                                ideal_busy_cycles=1280, utilisation=0.64),
        simulator="icarus", version="11", wall_seconds=WallSeconds(0.5, 0.5, 1.0),
        build_dir=tmp_path, sim_log=None, waves=None)
    sim = SimReport(config="tiny", seed=0, queries=80, descriptors=4, backpressure=0.25,
                    reset_mid_run=False, passed=True, verilog=vpath,
                    verilog_sha256="ab" * 32, generate_seconds=0.0,
                    expected_traffic=counts, location_kinds={"workload": 1},
                    simulators={"icarus": icarus})
    vol = Volume(1, 10, 80)
    flow = DataflowTraffic(read=vol, write=vol, total=vol, per_tensor={}, seconds=0.1,
                           label="layer-by-layer (baseline)",
                           normalized=Normalized(1.0, 1.0, 1.0, 1.0))
    traffic = TrafficReport(
        config=TrafficConfigRecord("tiny", {}, {}), workload="MSDA", seed=0, trace="random",
        batch_elements_counted="1 of 1", queries=80, map_pixels=64, bus_bytes=8,
        max_burst_beats=16, scopes={"datapath": TrafficScope({"layer_by_layer": flow})},
        headline_scope="datapath", rtl_transfers={}, seconds=TrafficSeconds(0, 0, 0, 0),
        plot_file="traffic_tiny.png")
    return FlowReport(config="tiny", nas=None, model=model, verilog=verilog, sim=sim,
                      traffic=traffic, seconds={"model": 1.0}, argv=["flow"])


def test_flow_report_round_trips_through_json(tmp_path):
    report = _reports(tmp_path)
    assert FlowReport.from_json(report.to_json()) == report
    assert FlowReport.load(report.save(tmp_path / "flow.json")) == report


def test_summary_reads_resource_and_timing_reports(tmp_path):
    """The hardware section quotes the typed reports, with shares of the part."""
    text = write_summary(cfgmod.preset("tiny"), tmp_path, _reports(tmp_path)).read_text()
    assert "| LUT | 6340 | 10.0% |" in text          # 6340 / 63400
    assert "| RAMB36 | 2 | 1.5% |" in text          # 1 + 2 / 2 of 135
    assert "**50.0 MHz**" in text and "(not met)" in text
    assert "Critical path: `lvl_FF` -> `pix_FF`, 3.50 ns (1.50 logic, 2.00 routing) " \
           "through `lvl`; `verilog/defslice_top.v` lines 966, 79." in text
    # 640 samples * 50 MHz / 2000 cycles; bound max(1280 ideal, 2 read beats)
    assert "| 2000 | 1280 | 10 | 640 | 1280 | 2 | 1.56 (compute) | 1.56 | 16 |" in text
    assert f"[`verilog/defslice_top.v`](verilog/defslice_top.v), SHA-256 `{'ab' * 32}`, " \
           "the file simulated." in text
    assert "| layer-by-layer (baseline) | 1 | 10 | 80 | 100.0% | 100% |" in text


def test_summary_labels_an_unrouted_estimate(tmp_path):
    """A place and route stopped after placement: the figure is labelled, and no
    throughput is computed at it."""
    report = _reports(tmp_path)
    timing = dataclasses.replace(report.verilog.timing, fmax_mhz=33.43, critical_path=None,
                                 routed=False, stopped="routing did not finish within 60 min")
    report = dataclasses.replace(report, verilog=dataclasses.replace(report.verilog,
                                                                     timing=timing))
    text = write_summary(cfgmod.preset("tiny"), tmp_path, report).read_text()
    assert ("Fmax **33.4 MHz** (estimated after placement; routing did not finish within "
            "60 min) against a 100 MHz target (not met)") in text
    assert "not computed at a placement estimate" in text
    assert "| 2000 | 1280 | 10 | 640 | 1280 | 2 | 1.56 (compute) | 1.56 | n/a |" in text


def test_flow_passes_the_ecp5_budget(tmp_path, capsys):
    from defslice.cli import build_parser
    from defslice.flow import command_line, options_of

    args = build_parser("flow").parse_args(["flow", "--preset", "tiny", "--ecp5-minutes",
                                            "5"])
    options = options_of(args)
    assert options.verilog.ecp5_minutes == 5.0
    assert command_line(args, options)[-2:] == ["--ecp5-minutes", "5.0"]
    out = tmp_path / "flow"
    code = _flow(out, "--ecp5-minutes", "0")
    _assert_failed_cleanly(out, code, 2, capsys.readouterr().err,
                           "--ecp5-minutes = 0.0 is invalid: must be a finite number of "
                           "minutes > 0")


def test_reports_refuse_missing_or_malformed_files(tmp_path):
    with pytest.raises(RecordError, match="flow.json is missing"):
        FlowReport.load(tmp_path / "flow.json")
    (tmp_path / "model.json").write_text('{"config": "tiny"}')
    with pytest.raises(RecordError, match="missing key seed"):
        ModelReport.load(tmp_path / "model.json")
    (tmp_path / "model.json").write_text("{")
    with pytest.raises(RecordError, match="not valid JSON"):
        ModelReport.load(tmp_path / "model.json")


def _assert_failed_cleanly(out: Path, code: int, expected: int, err: str, *needles: str):
    assert code == expected
    assert "Traceback" not in err
    assert err.startswith("defslice: ") and err.count("defslice: ") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (out / "summary.md").exists()


def test_bad_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(cfgmod.dumps(cfgmod.preset("tiny")).replace("overlap = 1", "overlap = -1"))
    out = tmp_path / "flow"
    code = main(["flow", "--config", str(bad), "--out", str(out)])
    _assert_failed_cleanly(out, code, 2, capsys.readouterr().err, "slicing.overlap", "-1")
    assert not out.exists()

    bad.write_text("[slicing\noverlap = 1\n")
    code = main(["flow", "--config", str(bad), "--out", str(out)])
    _assert_failed_cleanly(out, code, 2, capsys.readouterr().err, "valid TOML")

    code = main(["flow", "--config", str(tmp_path / "missing.toml"), "--out", str(out)])
    _assert_failed_cleanly(out, code, 2, capsys.readouterr().err, "missing.toml")


def test_impossible_slice(tmp_path, capsys):
    text = cfgmod.dumps(cfgmod.preset("tiny")).replace("slice_h = 4", "slice_h = 9")
    cfg_file = tmp_path / "big.toml"
    cfg_file.write_text(text)
    out = tmp_path / "flow"
    code = main(["flow", "--config", str(cfg_file), "--out", str(out)])
    _assert_failed_cleanly(out, code, 2, capsys.readouterr().err, "slicing.slice_h", "9")


def test_hardware_refuses_impossible_buffers_before_any_stage(tmp_path, capsys):
    out = tmp_path / "flow"
    code = main(["flow", "--preset", "msda-xmsda", "--out", str(out)])
    _assert_failed_cleanly(out, code, 2, capsys.readouterr().err,
                           "slicing.slice_h", "fit in")
    assert not out.exists()                         # refused before anything was written


def test_search_needs_a_dat_workload(tmp_path, capsys):
    out = tmp_path / "flow"
    code = main(["flow", "--preset", "tiny", "--search", "--out", str(out)])
    _assert_failed_cleanly(out, code, 2, capsys.readouterr().err, "workload.kind", "'dat'")
    assert not out.exists()


def test_missing_simulator(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "flow"
    code = _flow(out)
    _assert_failed_cleanly(out, code, 3, capsys.readouterr().err, "apt-get install iverilog")
    assert not out.exists()


def test_failed_tool_run(tmp_path, capsys, monkeypatch):
    """An Icarus that answers ``-V`` but fails to compile: the sim stage fails, reported."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "iverilog"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -V ]; then echo 'Icarus Verilog version 11.0'; "
                    "exit 0; fi\necho 'iverilog: internal error' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "flow"
    code = _flow(out)
    err = capsys.readouterr().err
    _assert_failed_cleanly(out, code, 3, err, "tool error", "icarus")
    failed = (out / "FAILED.md").read_text()
    assert "Stage `sim`" in failed and "no summary was written" in failed
    assert (out / "verilog" / "defslice_top.v").is_file()   # earlier stages kept
