"""``defslice flow`` end to end on ``tiny``, and every way it can fail for a user."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from defslice import config as cfgmod
from defslice.cli import main
from defslice.hw.reports import critical_path_summary
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
    assert (cp["start"], cp["end"], cp["steps"]) == ("lvl_FF", "pix_FF", 5)
    assert (cp["delay_ns"], cp["logic_ns"], cp["routing_ns"]) == (3.5, 1.5, 2.0)
    assert cp["nets"] == ["lvl"] and cp["lines"] == ["966", "79"]


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
                     "traffic/traffic_tiny.json", "traffic/traffic_tiny.png"):
        assert (out / produced).is_file(), produced
    assert cfgmod.load(out / "chosen.toml") == cfgmod.preset("tiny")
    sim = json.loads((out / "sim" / "sim.json").read_text())
    assert sim["passed"] and list(sim["simulators"]) == ["icarus"]


def test_summary_reads_resource_and_timing_reports(tmp_path):
    """The hardware section quotes the report files, with shares of the part."""
    cfg = cfgmod.preset("tiny")
    out = tmp_path
    (out / "model").mkdir()
    (out / "model" / "model.json").write_text(json.dumps({
        "fixed_vs_float_same_inputs_max_abs": 0.001, "fixed_error_bound_max": 0.002,
        "fixed_within_bound": True, "clamped_fraction": 0.25, "slices": 4}))
    rep = out / "verilog" / "reports"
    rep.mkdir(parents=True)
    (rep / "xilinx_utilization.json").write_text(json.dumps({
        "tool": "yosys", "part": "xc7a100tcsg324-1", "LUT": 6340, "FF": 1268,
        "RAMB18": 2, "RAMB36": 1, "DSP48E1": 24}))
    (rep / "ecp5_timing.json").write_text(json.dumps({
        "device": "LFE5U-85F", "fmax_mhz": 50.0, "target_mhz": 100.0, "met": False,
        "critical_path": critical_path_summary(NEXTPNR_PATH)}))
    counts = {"read_bursts": 1, "read_beats": 2, "write_bursts": 1, "write_beats": 2}
    (out / "sim").mkdir()
    (out / "sim" / "sim.json").write_text(json.dumps({
        "passed": True, "queries": 80, "seed": 0, "backpressure": 0.25, "simulators": {
            "icarus": {"passed": True, "outputs": {"mismatches": 0, "total": 640},
                       "traffic": {"observed": counts, "expected": counts,
                                   "rtl_counters": counts},
                       "performance": {"cycles": 2000, "busy_cycles": 1280,
                                       "stall_cycles": 10, "bilinear_samples": 640,
                                       "ideal_busy_cycles": 1280},
                       "wall_seconds": {"total": 1.0}}}}))
    flow = {"total": {"bursts": 1, "beats": 10, "bytes": 80}, "normalized": {"beats": 1.0}}
    (out / "traffic").mkdir()
    (out / "traffic" / "traffic_tiny.json").write_text(json.dumps({
        "headline_scope": "datapath", "bus_bytes": 8, "config": {"name": "tiny"},
        "scopes": {"datapath": {"dataflows": {"layer_by_layer": flow}}}}))
    text = write_summary(cfg, out, {"model": 1.0}, searched=False).read_text()
    assert "| LUT | 6340 | 10.0% |" in text          # 6340 / 63400
    assert "| RAMB36 | 2 | 1.5% |" in text          # 1 + 2 / 2 of 135
    assert "**50.0 MHz**" in text and "(not met)" in text
    assert "Critical path: `lvl_FF` -> `pix_FF`, 3.50 ns (1.50 logic, 2.00 routing) " \
           "through `lvl`; `verilog/defslice_top.v` lines 966, 79." in text
    # 640 samples * 50 MHz / 2000 cycles; bound max(1280 ideal, 2 read beats)
    assert "| 2000 | 1280 | 10 | 640 | 1280 | 2 | 1.56 (compute) | 1.56 | 16 |" in text


def test_summary_refuses_missing_stage_output(tmp_path):
    with pytest.raises(Exception, match="model.json is missing"):
        write_summary(cfgmod.preset("tiny"), tmp_path, {}, searched=False)


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
