"""``summary.md`` of a ``defslice flow`` run: one page a user reads to judge the design.

Every figure is read from the stages' typed reports (:class:`defslice.flow.FlowReport`,
also ``flow.json``); only the paper's published figures (:mod:`defslice.paper`) and the
Xilinx device capacities (data sheets) are quoted, never computed.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from defslice import paper
from defslice.config import Config, HwConfig
from defslice.hw.board import board_summary_lines
from defslice.hw.reports import Ecp5Timing, XilinxUtilization, critical_path_text
from defslice.model.layer_layout import ARRAY_ROWS
from defslice.model.layout import PAGE
from defslice.reporting import markdown_table

if TYPE_CHECKING:
    from defslice.flow import FlowReport
    from defslice.model.stage import ModelReport
    from defslice.model.traffic_stage import TrafficReport
    from defslice.nas.stage import Measured, NasReport
    from defslice.sim.report import SimReport, SimulatorReport

__all__ = ["DEVICE_CAPACITY", "write_summary"]

#: Xilinx 7-series capacities (DS180, table 1) by part prefix:
#: LUT, FF, RAMB36 (two RAMB18 each), DSP48E1.
DEVICE_CAPACITY = {
    "xc7a100t": {"LUT": 63400, "FF": 126800, "RAMB36": 135, "DSP48E1": 240},
    "xc7a35t": {"LUT": 20800, "FF": 41600, "RAMB36": 50, "DSP48E1": 90},
    "xc7a200t": {"LUT": 133800, "FF": 267600, "RAMB36": 365, "DSP48E1": 740},
    "xc7k325t": {"LUT": 203800, "FF": 407600, "RAMB36": 445, "DSP48E1": 840},
}



def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _capacity(part: str) -> dict[str, int] | None:
    return next((cap for prefix, cap in DEVICE_CAPACITY.items() if part.startswith(prefix)),
                None)


def _array(h: HwConfig) -> str:
    """The layer engine's array size, for the configuration table."""
    if h.engine != "layer":
        return ""
    return f" ({ARRAY_ROWS} x {h.lanes} x {h.array_cols} multiply-accumulate array)"


def _configuration(cfg: Config, searched: bool) -> list[str]:
    w, s, n, h, d = cfg.workload, cfg.slicing, cfg.numerics, cfg.hw, cfg.dram
    rows = [
        ["workload", f"`{w.kind}`: {w.describe()}"],
        ["slicing", f"Hs x Ws = {s.slice_h} x {s.slice_w}, overlap {s.overlap}"
                    + (" (chosen by the search)" if searched else "")],
        ["numerics", f"value {n.value_bits} b ({n.value_frac} frac), coordinate fraction "
                     f"{n.coord_frac} b, weights {n.weight_bits} b, output {n.out_bits} b"],
        ["hardware", f"{h.engine} engine{_array(h)}, {h.lanes} lane(s), {h.buffering} "
                     f"buffering, {h.axi_data_bits}-bit AXI, target {h.clock_mhz:g} MHz, "
                     f"part `{h.part}`, board `{h.board}`"],
        ["DRAM model", f"{h.max_burst_beats}-beat bursts max, no crossing of "
                       f"{PAGE} B boundaries, {d.element_bytes} B per element"],
    ]
    return ["## Configuration", "", markdown_table(["", ""], rows), "",
            "Full configuration: [`chosen.toml`](chosen.toml) "
            "(`defslice verilog --config chosen.toml` rebuilds it).", ""]


def _pm(m: Measured) -> str:
    """An accuracy (or a difference) with its standard error, in points."""
    return f"{100 * m.value:.2f}% +- {100 * m.se:.2f}"


def _search_rows(nas: NasReport) -> list[list]:
    """Evaluations, hypervolume ratios and the seed study, per search."""
    names = {"evolutionary": "Alg. 1", "nsga2": "NSGA-II", "random": "random search"}
    rows: list[list] = [["evaluations (Alg. 1; NSGA-II and random search at the same "
                         "budget)", nas.evaluations.get("evolutionary", "n/a"), "not stated"]]
    hv = nas.hypervolume
    if hv is None:
        return rows
    rows += [[f"hypervolume / exhaustive front, {label}", f"{hv.ratios[name]:.4f}",
              "not stated"] for name, label in names.items() if name in hv.ratios]
    for name, s in (hv.seed_study or {}).items():
        rows.append([f"{names[name]}: evaluations to 0.99 of the exhaustive hypervolume, "
                     f"median / 90th percentile of {s.seeds} seeds",
                     s.evaluations_text(), "not stated"])
    return rows


def _nas_section(nas: NasReport) -> list[str]:
    acc, ch, hw = nas.accuracy, nas.chosen, nas.hardware
    where = f"{acc.images} {acc.dataset} images"
    rows = [
        ["unsliced model, before fine-tuning", _pm(acc.unsliced_before_finetune), ""],
        ["unsliced model, after fine-tuning", _pm(acc.unsliced_after_finetune),
         paper.TOP1_UNSLICED.text],
        ["chosen sub-net, before fine-tuning", _pm(acc.chosen_before_finetune), ""],
        ["chosen sub-net, after fine-tuning", _pm(acc.chosen_after_finetune),
         paper.TOP1_CHOSEN_FINETUNED.text],
        ["accuracy drop of the chosen point (paired)", _pm(acc.chosen_drop_vs_unsliced),
         paper.ACCURACY_DROP.text],
    ]
    if hw is not None:
        rows += [[f"chosen sub-net, bit-exact fixed-point layer ({hw.images} images)",
                  _pm(hw.fixed_point), ""],
                 ["the same images, float layer; fixed point - float (paired)",
                  f"{_pm(hw.float_layer)}; {_pm(hw.difference)}", ""]]
    rows += _search_rows(nas)
    warning = [] if ch.within_drop else [f"**{ch.note}**", ""]
    return ["## Slicing search", "", *warning,
            f"Chosen: Hs={ch.slice_h}, Ws={ch.slice_w}, overlap {ch.overlap}, "
            f"{ch.bram18} RAMB18 of window buffers ({ch.eq3_bits:.0f} bits by eq. 3). "
            f"Accuracies on {where}, with standard errors. The paper's accuracies are DAT "
            f"on ImageNet; these are the configured evaluator's (`{nas.evaluator}`), so "
            "compare drops, not levels.", "",
            markdown_table(["quantity", "measured", "paper"], rows), "",
            "![Pareto front](nas/pareto.png)", "", "Details: [`nas/pareto.md`](nas/pareto.md).",
            ""]


def _hw_section(cfg: Config, util: XilinxUtilization | None, timing: Ecp5Timing | None,
                verilog: str) -> list[str]:
    lines = ["## Hardware", ""]
    if util is None and timing is None:
        return [*lines, "Resource and timing reports were skipped (`--no-reports`).", ""]
    if util is not None:
        cap = _capacity(cfg.hw.part)
        used = {"LUT": util.LUT, "FF": util.FF, "RAMB36": util.ramb36_equivalent,
                "DSP48E1": util.DSP48E1}
        rows = [[k, f"{v:g}", f"{100 * v / cap[k]:.1f}%" if cap else "n/a"]
                for k, v in used.items()]
        lines += [f"Xilinx 7-series (`{util.tool} synth_xilinx -family xc7`, part "
                  f"`{util.part}`; block RAM as RAMB36 equivalents: {util.RAMB36} "
                  f"RAMB36 + {util.RAMB18} RAMB18):", "",
                  markdown_table(["resource", "used", f"of {cfg.hw.part}"], rows), ""]
    if timing is not None:
        verdict = "met" if timing.met else "not met"
        lines += [f"ECP5 place and route (`{timing.device}`, open flow): Fmax "
                  f"{timing.fmax_text(bold=True)} against a {timing.target_mhz:g} MHz "
                  f"target ({verdict}). A Vivado run on the Xilinx part is not part of the "
                  "flow.", ""]
        if not timing.routed:
            lines += ["The throughput below needs a routed Fmax and is not computed at a "
                      "placement estimate.", ""]
        text = critical_path_text(timing.critical_path, verilog)
        if text:
            lines += [text, ""]
    return lines


def _sim_rows(name: str, rep: SimulatorReport,
              fmax_mhz: float | None) -> tuple[list[object], list[object]]:
    """The verdict row and the performance row of one simulator."""
    verdict = "PASS" if rep.passed else "FAIL"
    if rep.outputs is None or rep.traffic is None or rep.performance is None:
        return ([name, verdict, "no observations", "", "", "",
                 f"{rep.wall_seconds.total:.1f}"], [name] + ["n/a"] * 9)
    o, e, r = rep.traffic.observed, rep.traffic.expected, rep.traffic.rtl_counters
    p = rep.performance
    row = [name, verdict, f"{rep.outputs.mismatches} / {rep.outputs.total}",
           f"{o.read_bursts} / {e.read_bursts} / {r.read_bursts}",
           f"{o.read_beats} / {e.read_beats} / {r.read_beats}",
           f"{o.write_beats} / {e.write_beats} / {r.write_beats}",
           f"{rep.wall_seconds.total:.1f}"]
    cyc, ideal, beats = p.cycles, p.ideal_busy_cycles, o.read_beats or 0
    bound = max(ideal, beats)
    per = f"{cyc / ideal:.2f}" if cyc and ideal else "n/a"
    rate = f"{p.bilinear_samples * fmax_mhz / cyc:.3g}" if cyc and fmax_mhz else "n/a"
    limit = "memory" if beats > ideal else "compute"
    ratio = f"{cyc / bound:.2f} ({limit})" if cyc and bound else "n/a"
    return row, [name, cyc, p.busy_cycles, p.stall_cycles, p.bilinear_samples, ideal,
                 beats, ratio, per, rate]


def _sim_section(sim: SimReport, out: Path, fmax_mhz: float | None) -> list[str]:
    pairs = [_sim_rows(name, rep, fmax_mhz) for name, rep in sim.simulators.items()]
    verilog = Path(os.path.relpath(sim.verilog, out)).as_posix()
    return [
        "## Simulation against the golden model", "",
        f"{sim.queries} queries of the workload (seed {sim.seed}), random AXI "
        f"back-pressure {sim.backpressure:g}, cocotbext-axi DRAM, on "
        f"[`{verilog}`]({verilog}) (SHA-256 `{sim.verilog_sha256}`). Outputs must equal the "
        "fixed-point model bit for bit; AXI traffic is counted three ways: observed on the "
        "bus / predicted by the DRAM-traffic counter / the design's own counters.", "",
        markdown_table(["simulator", "verdict", "mismatching outputs", "read bursts",
                        "read beats", "write beats", "wall (s)"], [r for r, _ in pairs]), "",
        "Cycles, with the bench's back-pressure. *Ideal*: one bilinear sample of `lanes` "
        "channels per cycle. A run also needs at least one cycle per read beat (one AXI "
        "read port), so *cycles / bound* compares with the larger of the two and names "
        "the limit. Throughput at the ECP5 Fmax, in million bilinear samples (all "
        "channels) per second:", "",
        markdown_table(["simulator", "cycles", "busy", "stall", "samples", "ideal cycles",
                        "read beats", "cycles / bound", "cycles / ideal", "Msamples/s"],
                       [p for _, p in pairs]), ""]


def _traffic_section(traffic: TrafficReport, out: Path) -> list[str]:
    scope = traffic.headline_scope
    rows = [[d.label, f"{d.total.bursts:,}", f"{d.total.beats:,}", f"{d.total.bytes:,}",
             _pct(d.normalized.beats), paper.DRAM_FIG4[k].text if k in paper.DRAM_FIG4 else ""]
            for k, d in traffic.headline.dataflows.items()]
    lines = ["## DRAM traffic", "",
             f"Scope: {scope} ({'whole layer' if scope == 'layer' else 'sampling datapath'}); "
             f"{traffic.bus_bytes}-byte beats. Normalized = beats / layer-by-layer beats.",
             "", markdown_table(["dataflow", "bursts", "beats", "bytes", "normalized",
                                 "paper (Fig. 4)"], rows), ""]
    if scope != "layer":
        lines += ["The paper's Fig. 4 figures are for a whole DAT layer on a 56x56 map "
                  "(preset `dat56`); on this workload they are a reference, not a target.", ""]
    if (out / "traffic" / traffic.plot_file).is_file():
        lines += [f"![DRAM traffic](traffic/{traffic.plot_file})", ""]
    if traffic.sweep_plot_file:
        sweep = f"traffic/{traffic.sweep_plot_file}"
        lines += [f"Sliced traffic over slice size and overlap: [`{sweep}`]({sweep}).", ""]
    md = f"traffic/traffic_{traffic.config.name}.md"
    lines += [f"Why the figures differ from the paper's, and the per-tensor split: [`{md}`]"
              f"({md}).", ""]
    return lines


def _model_section(model: ModelReport) -> list[str]:
    lines = ["## Golden model", "",
             f"Sampling datapath, fixed point vs float on the same quantized inputs: max "
             f"|error| {model.fixed_vs_float_same_inputs_max_abs:.3g} (stated bound "
             f"{model.fixed_error_bound_max:.3g}, within: {model.fixed_within_bound}). "
             f"{_pct(model.clamped_fraction)} of the sampling points fall outside their "
             f"slice's window and are clamped ({model.slices} slices).", ""]
    layer, fixed = model.layer, model.layer_fixed
    if layer is not None:
        need = layer.required_overlap_px
        lines += ["The whole DAT++ layer, sliced against unsliced (float): "
                  f"{_pct(layer.window_clamped_fraction)} of the keys moved by a window "
                  f"bound, {_pct(layer.map_clamped_fraction)} clamped to the map; the offset "
                  f"network is exact from an overlap of {need[0]} rows / {need[1]} columns "
                  f"(configured {layer.overlap}); max |sliced y - unsliced y| "
                  f"{layer.sliced_vs_unsliced_max_abs:.4g} "
                  f"({layer.sliced_vs_unsliced_max_rel:.3g} times the largest |unsliced y|; "
                  "random weights).", ""]
    if fixed is not None:
        rows = [[mode, f"{err.raw.y_max_abs:.4g}", f"{err.raw.y_rms:.4g}",
                 _pct(err.raw.y_rel_rms, 2), f"{err.raw.position_max_px:.3g}"]
                for mode, err in (("sliced", fixed.sliced), ("unsliced", fixed.unsliced))]
        lines += ["The layer in bit-exact fixed point against float (random weights; "
                  "details in [`model/model.md`](model/model.md)):", "",
                  markdown_table(["slicing", "y max abs error", "y rms error",
                                  "rms error / rms y", "key position error (px)"], rows), ""]
    return lines


def _reproduce(argv: list[str], verilog: str, simulators: list[str]) -> list[str]:
    simulator = simulators[0] if len(simulators) == 1 else "both"
    lines = ["## Reproduce", "", "```sh"]
    if argv:
        lines.append("defslice " + " ".join(shlex.quote(a) for a in argv))
    lines += ["# or stage by stage, from the chosen configuration:",
              "defslice verilog --config chosen.toml --out verilog",
              f"defslice sim     --config chosen.toml --out sim --verilog {verilog} "
              f"--simulator {simulator}",
              "defslice traffic --config chosen.toml --out traffic",
              "defslice model   --config chosen.toml --out model", "```", ""]
    return lines


def write_summary(cfg: Config, out: Path, report: FlowReport) -> Path:
    """Write ``out/summary.md`` from the flow's reports; returns its path.

    ``cfg`` is the configuration the stages ran (the search's choice with ``--search``).
    """
    out = Path(out)
    sim, verilog = report.sim, report.verilog
    link = Path(os.path.relpath(verilog.verilog, out)).as_posix()
    same = "the file simulated" if sim.verilog_sha256 == verilog.verilog_sha256 else \
        f"**not** the file simulated (SHA-256 `{sim.verilog_sha256}`)"
    lines: list[str] = [
        f"# defslice: `{report.config}`", "",
        f"Simulation against the golden model: **{'PASS' if sim.passed else 'FAIL'}**. "
        f"Generated Verilog: [`{link}`]({link}), SHA-256 `{verilog.verilog_sha256}`, "
        f"{same}.", ""]
    lines += _configuration(cfg, report.nas is not None)
    if report.nas is not None:
        lines += _nas_section(report.nas)
    lines += _model_section(report.model)
    if cfg.hw.engine == "layer":
        from defslice.summary_layer import layer_sections

        lines += layer_sections(cfg, out, report)
        lines += board_summary_lines(verilog.board)
    else:
        lines += _hw_section(cfg, verilog.utilization, verilog.timing, link)
        lines += board_summary_lines(verilog.board)
        lines += _sim_section(sim, out, verilog.timing.routed_fmax_mhz if verilog.timing
                              else None)
    lines += _traffic_section(report.traffic, out)
    lines += ["## Stage times", "",
              markdown_table(["stage", "seconds"],
                             [[k, f"{v:.1f}"] for k, v in report.seconds.items()]), ""]
    lines += _reproduce(report.argv, link, list(sim.simulators))
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path
