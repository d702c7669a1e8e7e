"""``summary.md`` sections of a layer-engine flow run: cycles, time per layer, DRAM, resources.

Every figure comes from the stages' reports (simulation counters, the traffic counter's
layer scope, yosys and nextpnr) or, marked as such, from the engine's own models
(:func:`defslice.hw.layer.cycles.estimate`,
:func:`defslice.hw.layer.resources.estimate_resources`) of the same configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from defslice.config import Config
from defslice.hw.reports import critical_path_text
from defslice.reporting import markdown_table

if TYPE_CHECKING:
    from defslice.flow import FlowReport
    from defslice.hw.layer.cycles import CycleEstimate
    from defslice.hw.layer.plan import LayerPlan
    from defslice.hw.stage import VerilogReport
    from defslice.model.traffic_stage import TrafficReport
    from defslice.sim.report import SimReport, SimulatorReport

__all__ = ["layer_sections"]


def _estimates(cfg: Config) -> tuple[LayerPlan, CycleEstimate, dict]:
    """The cycle estimate and the resource estimate of ``cfg``'s layer engine."""
    from defslice.hw.layer.cycles import estimate
    from defslice.hw.layer.plan import LayerPlan
    from defslice.hw.layer.resources import estimate_resources

    plan = LayerPlan.from_config(cfg)
    return plan, estimate(plan), estimate_resources(plan)


def _judged(sim: SimReport) -> list[tuple[str, SimulatorReport]]:
    return [(name, rep) for name, rep in sim.simulators.items()
            if rep.performance is not None and rep.traffic is not None]


def _verdicts(sim: SimReport) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, rep in sim.simulators.items():
        verdict = "PASS" if rep.passed else "FAIL"
        if rep.outputs is None or rep.traffic is None:
            rows.append([name, verdict, "no observations", "", "", "",
                         f"{rep.wall_seconds.total:.1f}"])
            continue
        o, e, r, c = (rep.traffic.observed, rep.traffic.expected, rep.traffic.rtl_counters,
                      rep.traffic.traffic_counter)
        rows.append([name, verdict, f"{rep.outputs.mismatches} / {rep.outputs.total}",
                     f"{o.read_bursts} / {e.read_bursts} / {c.read_bursts} / {r.read_bursts}",
                     f"{o.read_beats} / {e.read_beats} / {c.read_beats} / {r.read_beats}",
                     f"{o.write_beats} / {e.write_beats} / {c.write_beats} / {r.write_beats}",
                     f"{rep.wall_seconds.total:.1f}"])
    return rows


def _run_section(sim: SimReport, out: Path) -> list[str]:
    verilog = Path(os.path.relpath(sim.verilog, out)).as_posix()
    choice = f" Simulator {sim.simulator_choice}." if sim.simulator_choice else ""
    return [
        "## Simulation of the layer against the golden model", "",
        f"The whole layer ({sim.queries} pixels; random x and weights, seed {sim.seed}) on "
        f"the layer engine, random AXI back-pressure {sim.backpressure:g}, cocotbext-axi "
        f"DRAM, on [`{verilog}`]({verilog}) (SHA-256 `{sim.verilog_sha256}`).{choice} "
        "Every y value must equal the fixed-point layer model (`dat_layer_fixed`) bit for "
        "bit; AXI traffic is counted four ways: observed on the bus / the engine's transfer "
        "list (`layer_transfers`) / the DRAM-traffic counter's sliced layer / the design's "
        "own counters.", "",
        markdown_table(["simulator", "verdict", "mismatching y values", "read bursts",
                        "read beats", "write beats", "wall (s)"], _verdicts(sim)), ""]


def _cycles_section(sim: SimReport, est: CycleEstimate, plan: LayerPlan) -> list[str]:
    rows = []
    for name, rep in _judged(sim):
        p = rep.performance
        cyc = p.cycles or 0
        share = f" ({100 * p.busy_cycles / cyc:.1f}%)" if cyc and p.busy_cycles else ""
        rows.append([name, f"{cyc:,}", f"{p.busy_cycles:,}{share}", f"{p.stall_cycles:,}",
                     f"{p.load_cycles:,}" if p.load_cycles is not None else "n/a",
                     f"{p.bench_cycles:,}" if p.bench_cycles else "n/a",
                     f"{cyc / est.total:.2f}" if cyc else "n/a",
                     f"{cyc / est.compute_bound:.2f}" if cyc else "n/a"])
    return [
        "### Layer cycles", "",
        "The design's counters: `CYCLES` = `ARRAY_BUSY` (an array step issued) + `STALL` + "
        "`LOAD` (waiting for the parameters or a window). With the bench's back-pressure and "
        "random read latency:", "",
        markdown_table(["simulator", "CYCLES", "ARRAY_BUSY", "STALL", "LOAD",
                        "start to done (bench)", "vs model", "vs compute bound"], rows), "",
        f"Cycle model (`hw/layer/cycles.py`, memory always ready): **{est.total:,}** cycles, "
        f"{est.array_busy:,} array steps ({100 * est.utilisation:.1f}% busy). Compute bound: "
        f"{sum(est.macs.values()):,} multiply-accumulates of the engine / "
        f"{plan.multipliers} multipliers ({plan.rows} x {plan.lanes} lanes x {plan.cols} "
        f"columns) = **{est.compute_bound:,.0f}** cycles; the busiest unit beside the array "
        f"alone needs {est.unit_bound:,}.", ""]


def _times(cycles: int, mhz: float) -> str:
    return f"{cycles:,} cycles at {mhz:g} MHz = **{cycles / mhz / 1000:.3f} ms**"


def _time_section(cfg: Config, sim: SimReport, verilog: VerilogReport,
                  est: CycleEstimate) -> list[str]:
    judged = _judged(sim)
    cycles = judged[0][1].performance.cycles if judged else None
    lines: list[str] = []
    t = verilog.timing
    if t is not None and t.routed:
        where = (f"the ECP5 place and route of `{t.config}` (this configuration with "
                 f"{', '.join(t.changes)}, its smallest engine: `{cfg.name}` does not fit "
                 "the LFE5U-85F)"
                 if t.changes else f"the ECP5 place and route of `{cfg.name}` itself")
        lines.append(f"Reported Fmax: **{t.fmax_mhz:.1f} MHz** on `{t.device}`, from {where}.")
        if cycles:
            lines.append(f"This design's simulated run at that clock: "
                         f"{_times(cycles, t.fmax_mhz)}.")
        if t.changes:
            from defslice.hw.layer.cycles import estimate
            from defslice.hw.layer.plan import LayerPlan
            from defslice.hw.layer.resources import ecp5_variant

            variant = ecp5_variant(cfg)[0]
            v_est = estimate(LayerPlan.from_config(variant)).total
            lines.append(f"The ECP5 configuration itself, by the cycle model: "
                         f"{_times(v_est, t.fmax_mhz)}.")
        lines.append("No Vivado run on the Xilinx part is part of the flow, so the "
                     f"`{cfg.hw.part}` design has no Fmax of its own here.")
    else:
        lines.append(f"No Fmax was measured: ECP5 place and route {_no_fmax(verilog)}. At "
                     "the **target** clock "
                     f"`hw.clock_mhz` (not a measured Fmax):"
                     + (f" this run, {_times(cycles, cfg.hw.clock_mhz)};" if cycles else "")
                     + f" the cycle model, {_times(est.total, cfg.hw.clock_mhz)}.")
    return ["### Time per layer", "", " ".join(lines), ""]


def _no_fmax(verilog: VerilogReport) -> str:
    """Why there is no routed Fmax to time the layer at (after "ECP5 place and route")."""
    t = verilog.timing
    if t is None:
        return verilog.ecp5_note or "skipped (`--no-reports`)"
    if t.fmax_mhz is None:
        return f"of `{t.config}` gave no Fmax ({t.stopped})"
    return (f"of `{t.config}` stopped short of a routed Fmax: {t.fmax_text()} is not used "
            "for the time per layer")


def _dram_section(sim: SimReport, traffic: TrafficReport) -> list[str]:
    judged = _judged(sim)
    if not judged or "layer" not in traffic.scopes:
        return ["### DRAM", "", "No observed traffic to compare.", ""]
    o = judged[0][1].traffic.observed
    bus = traffic.bus_bytes
    bursts = (o.read_bursts or 0) + (o.write_bursts or 0)
    beats = (o.read_beats or 0) + (o.write_beats or 0)
    rows = [["**layer engine RTL (observed on the bus)**", f"{bursts:,}", f"{beats:,}",
             f"{beats * bus:,}", "1.00"]]
    for d in traffic.scopes["layer"].dataflows.values():
        rows.append([d.label, f"{d.total.bursts:,}", f"{d.total.beats:,}",
                     f"{d.total.bytes:,}", f"{beats / d.total.beats:.2f}"])
    sliced = traffic.scopes["layer"].dataflows.get("sliced")
    same = sliced is not None and (sliced.total.bursts, sliced.total.beats) == (bursts, beats)
    verdict = ("equals the counter's sliced layer figure: the sliced figure is what the RTL "
               "moves" if same else "**differs from** the counter's sliced layer figure")
    return ["### DRAM: what the RTL moved against each baseline", "",
            f"Whole layer, {bus}-byte beats; accesses = bursts. The RTL's traffic {verdict}. "
            "The baselines are the DRAM-traffic counter's other dataflows on the same layer "
            "(`traffic/`); *RTL / baseline* compares beats.", "",
            markdown_table(["dataflow", "accesses (bursts)", "beats", "bytes",
                            "RTL / baseline (beats)"], rows), ""]


def _resources_section(cfg: Config, verilog: VerilogReport, res: dict) -> list[str]:
    from defslice.hw.layer.plan import LayerPlan
    from defslice.hw.layer.resources import ARTIX7_100T, ecp5_estimate

    u, total = verilog.utilization, res["total"]
    lines = ["### Resources", ""]
    if u is not None:
        used = {"LUT": u.LUT, "FF": u.FF, "RAMB18": u.RAMB18 + 2 * u.RAMB36,
                "DSP": u.DSP48E1}
        rows = [[k, f"{used[k]:,}", f"~{total[k]:,}", f"{ARTIX7_100T[k]:,}",
                 f"{100 * used[k] / ARTIX7_100T[k]:.1f}%"] for k in used]
        fits = all(used[k] <= ARTIX7_100T[k] for k in used)
        lines += [f"Xilinx 7-series, `{u.tool} synth_xilinx -flatten -family xc7` of the "
                  f"whole design (block RAM in RAMB18: {u.RAMB18} RAMB18 + {u.RAMB36} "
                  f"RAMB36), against the xc7a100t (part `{u.part}`): "
                  f"**{'fits' if fits else 'does not fit'}**. Estimate: "
                  "`hw/layer/resources.py` (LUT/FF coarse).", "",
                  markdown_table(["resource", "synth_xilinx", "estimate", "xc7a100t", "used"],
                                 rows), ""]
    else:
        lines += [f"Resource reports skipped; estimate (`hw/layer/resources.py`): "
                  f"{total['LUT']:,} LUT (coarse), {total['RAMB18']} RAMB18, "
                  f"{total['DSP']} DSP48E1.", ""]
    e5 = ecp5_estimate(LayerPlan.from_config(cfg))
    lines += [f"ECP5 estimate of this configuration: {e5['MULT18X18D']} MULT18X18D, "
              f"~{e5['DP16KD']} DP16KD against the LFE5U-85F's 156 and 208: "
              f"{'fits' if e5['fits'] else 'does not fit'}.", ""]
    t = verilog.timing
    if t is not None:
        cells = ", ".join(f"{v:,} {k}" for k, v in sorted(t.utilization.items())
                          if k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D"))
        verdict = "met" if t.met else "not met"
        lines += [f"ECP5 place and route (`{t.device}`, `{t.config}`): Fmax "
                  f"{t.fmax_text(bold=True)} against {t.target_mhz:g} MHz ({verdict}); "
                  f"{cells or 'no cell counts'}.", ""]
        text = critical_path_text(t.critical_path, "ecp5/defslice_top.v" if t.changes
                                  else "defslice_top.v")
        if text:
            lines += [text, ""]
    return lines


def layer_sections(cfg: Config, out: Path, report: FlowReport) -> list[str]:
    """The layer engine's sections of ``summary.md`` (in place of the sampling engine's
    simulation and hardware sections)."""
    plan, est, res = _estimates(cfg)
    sim, verilog = report.sim, report.verilog
    return [*_run_section(sim, out), *_cycles_section(sim, est, plan),
            *_time_section(cfg, sim, verilog, est), *_dram_section(sim, report.traffic),
            *_resources_section(cfg, verilog, res)]
