"""``summary.md`` of a ``defslice flow`` run: one page a user reads to judge the design.

Every figure is read from the files the stages wrote into the flow's folder (``nas/``,
``model/``, ``verilog/reports/``, ``sim/``, ``traffic/``); only the paper's published
figures and the Xilinx device capacities (data sheets) are quoted, never computed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from defslice.config import Config
from defslice.errors import DefsliceError
from defslice.hw.board import board_summary_lines
from defslice.hw.reports import critical_path_text
from defslice.reporting import markdown_table

__all__ = ["DEVICE_CAPACITY", "PAPER", "write_summary"]

#: The slicing paper's published figures (section IV), quoted for comparison.
PAPER = {
    "dram_sliced": 0.18,
    "dram_defa": 0.37,
    "top1_unsliced": 0.846,
    "top1_chosen_finetuned": 0.847,
    "accuracy_drop": 0.002,
}

#: Xilinx 7-series capacities (DS180, table 1) by part prefix:
#: LUT, FF, RAMB36 (two RAMB18 each), DSP48E1.
DEVICE_CAPACITY = {
    "xc7a100t": {"LUT": 63400, "FF": 126800, "RAMB36": 135, "DSP48E1": 240},
    "xc7a35t": {"LUT": 20800, "FF": 41600, "RAMB36": 50, "DSP48E1": 90},
    "xc7a200t": {"LUT": 133800, "FF": 267600, "RAMB36": 365, "DSP48E1": 740},
    "xc7k325t": {"LUT": 203800, "FF": 407600, "RAMB36": 445, "DSP48E1": 840},
}

DATAFLOW_LABELS = {"layer_by_layer": "layer-by-layer (baseline)", "defa": "DEFA-style",
                   "sliced": "sliced (this RTL)", "halo_reuse": "sliced + halo reuse",
                   "compulsory": "compulsory bound",
                   "layer_by_layer_ops": "layer-by-layer, per operator"}


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DefsliceError(f"{path} is not valid JSON ({exc}); re-run its stage") from exc


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _capacity(part: str) -> dict[str, int] | None:
    return next((cap for prefix, cap in DEVICE_CAPACITY.items() if part.startswith(prefix)),
                None)


def _configuration(cfg: Config, nas: dict | None) -> list[str]:
    w, s, n, h, d = cfg.workload, cfg.slicing, cfg.numerics, cfg.hw, cfg.dram
    rows = [
        ["workload", f"`{w.kind}`: {w.describe()}"],
        ["slicing", f"Hs x Ws = {s.slice_h} x {s.slice_w}, overlap {s.overlap}"
                    + (" (chosen by the search)" if nas else "")],
        ["numerics", f"value {n.value_bits} b ({n.value_frac} frac), coordinate fraction "
                     f"{n.coord_frac} b, weights {n.weight_bits} b, output {n.out_bits} b"],
        ["hardware", f"{h.lanes} lane(s), {h.buffering} buffering, {h.axi_data_bits}-bit AXI, "
                     f"target {h.clock_mhz:g} MHz, part `{h.part}`, board `{h.board}`"],
        ["DRAM model", f"{h.max_burst_beats}-beat bursts max, no crossing of "
                       f"{d.boundary_bytes} B boundaries, {d.element_bytes} B per element"],
    ]
    return ["## Configuration", "", markdown_table(["", ""], rows), "",
            "Full configuration: [`chosen.toml`](chosen.toml) "
            "(`defslice verilog --config chosen.toml` rebuilds it).", ""]


def _nas_section(nas: dict) -> list[str]:
    acc, hv, ev, ch = nas["accuracy"], nas.get("hypervolume"), nas["evaluations"], nas["chosen"]
    drop = acc["unsliced_after_finetune"] - acc["chosen_after_finetune"]
    rows = [
        ["unsliced model, after fine-tuning", _pct(acc["unsliced_after_finetune"], 2),
         _pct(PAPER["top1_unsliced"])],
        ["chosen sub-net, after fine-tuning", _pct(acc["chosen_after_finetune"], 2),
         _pct(PAPER["top1_chosen_finetuned"])],
        ["accuracy drop of the chosen point", _pct(drop, 2), _pct(PAPER["accuracy_drop"])],
        ["evaluations (evolutionary search)", ev["evolutionary"], "not stated"],
    ]
    if hv and "evolutionary_ratio" in hv:
        rows.append(["hypervolume / exhaustive front", f"{hv['evolutionary_ratio']:.4f}",
                     "not stated"])
    rows += [[name, _pct(value, 2), "" if paper is None else _pct(paper)]
             for name, value, paper in nas.get("summary_rows", [])]
    choice = nas.get("choice") or {}
    warning = ([f"**{choice['note']}**", ""] if choice.get("within_drop") is False else [])
    return ["## Slicing search", "", *warning,
            f"Chosen: Hs={ch['slice_h']}, Ws={ch['slice_w']}, overlap {ch['overlap']}, "
            f"{ch.get('bram18', 'n/a')} RAMB18 of window buffers. The paper's accuracies "
            "are DAT on ImageNet; these are the configured evaluator's "
            f"(`{nas.get('objective', {}).get('evaluator', 'digits')}`), so compare drops, "
            "not levels.", "",
            markdown_table(["quantity", "measured", "paper"], rows), "",
            "![Pareto front](nas/pareto.png)", "", "Details: [`nas/pareto.md`](nas/pareto.md).",
            ""]


def _hw_section(cfg: Config, util: dict | None, timing: dict | None) -> list[str]:
    lines = ["## Hardware", ""]
    if util is None and timing is None:
        return [*lines, "Resource and timing reports were skipped (`--no-reports`).", ""]
    if util is not None:
        cap = _capacity(cfg.hw.part)
        bram36 = util["RAMB36"] + util["RAMB18"] / 2
        used = {"LUT": util["LUT"], "FF": util["FF"], "RAMB36": bram36,
                "DSP48E1": util["DSP48E1"]}
        rows = [[k, f"{v:g}", f"{100 * v / cap[k]:.1f}%" if cap else "n/a"]
                for k, v in used.items()]
        lines += [f"Xilinx 7-series (`{util['tool']} synth_xilinx -family xc7`, part "
                  f"`{util['part']}`; block RAM as RAMB36 equivalents: {util['RAMB36']} "
                  f"RAMB36 + {util['RAMB18']} RAMB18):", "",
                  markdown_table(["resource", "used", f"of {cfg.hw.part}"], rows), ""]
    if timing is not None:
        verdict = "met" if timing["met"] else "not met"
        lines += [f"ECP5 place and route (`{timing['device']}`, open flow): Fmax "
                  f"**{timing['fmax_mhz']:.1f} MHz** against a {timing['target_mhz']:g} MHz "
                  f"target ({verdict}). A Vivado run on the Xilinx part is not part of the "
                  "flow.", ""]
        text = critical_path_text(timing.get("critical_path"), "verilog/defslice_top.v")
        if text:
            lines += [text, ""]
    return lines


def _sim_section(sim: dict, fmax_mhz: float | None) -> list[str]:
    rows, perf_rows = [], []
    for name, rep in sim["simulators"].items():
        t, p = rep["traffic"], rep["performance"]
        rows.append([name, "PASS" if rep["passed"] else "FAIL",
                     f"{rep['outputs']['mismatches']} / {rep['outputs']['total']}",
                     f"{t['observed']['read_bursts']} / {t['expected']['read_bursts']} / "
                     f"{t['rtl_counters']['read_bursts']}",
                     f"{t['observed']['read_beats']} / {t['expected']['read_beats']} / "
                     f"{t['rtl_counters']['read_beats']}",
                     f"{t['observed']['write_beats']} / {t['expected']['write_beats']} / "
                     f"{t['rtl_counters']['write_beats']}",
                     f"{rep['wall_seconds']['total']:.1f}"])
        cyc, ideal = p["cycles"], p["ideal_busy_cycles"]
        beats = t["observed"]["read_beats"]
        bound = max(ideal, beats)
        per = f"{cyc / ideal:.2f}" if cyc and ideal else "n/a"
        rate = (f"{p['bilinear_samples'] * fmax_mhz / cyc:.3g}" if cyc and fmax_mhz
                else "n/a")
        limit = "memory" if beats > ideal else "compute"
        perf_rows.append([name, cyc, p["busy_cycles"], p["stall_cycles"],
                          p["bilinear_samples"], ideal, beats, f"{cyc / bound:.2f} ({limit})",
                          per, rate])
    return [
        "## Simulation against the golden model", "",
        f"{sim['queries']} queries of the workload (seed {sim['seed']}), random AXI "
        f"back-pressure {sim['backpressure']:g}, cocotbext-axi DRAM. Outputs must equal the "
        "fixed-point model bit for bit; AXI traffic is counted three ways: observed on the "
        "bus / predicted by the DRAM-traffic counter / the design's own counters.", "",
        markdown_table(["simulator", "verdict", "mismatching outputs", "read bursts",
                        "read beats", "write beats", "wall (s)"], rows), "",
        "Cycles, with the bench's back-pressure. *Ideal*: one bilinear sample of `lanes` "
        "channels per cycle. A run also needs at least one cycle per read beat (one AXI "
        "read port), so *cycles / bound* compares with the larger of the two and names "
        "the limit. Throughput at the ECP5 Fmax, in million bilinear samples (all "
        "channels) per second:", "",
        markdown_table(["simulator", "cycles", "busy", "stall", "samples", "ideal cycles",
                        "read beats", "cycles / bound", "cycles / ideal", "Msamples/s"],
                       perf_rows), ""]


def _traffic_section(traffic: dict, png: str | None, sweep_exists: bool) -> list[str]:
    scope = traffic["headline_scope"]
    flows = traffic["scopes"][scope]["dataflows"]
    paper = {"layer_by_layer": 1.0, "defa": PAPER["dram_defa"], "sliced": PAPER["dram_sliced"]}
    rows = [[DATAFLOW_LABELS.get(k, k), f"{v['total']['bursts']:,}", f"{v['total']['beats']:,}",
             f"{v['total']['bytes']:,}", _pct(v["normalized"]["beats"]),
             _pct(paper[k], 0) if k in paper else ""]
            for k, v in flows.items()]
    lines = ["## DRAM traffic", "",
             f"Scope: {scope} ({'whole layer' if scope == 'layer' else 'sampling datapath'}); "
             f"{traffic['bus_bytes']}-byte beats. Normalized = beats / layer-by-layer beats.",
             "", markdown_table(["dataflow", "bursts", "beats", "bytes", "normalized",
                                 "paper (Fig. 4)"], rows), ""]
    if scope != "layer":
        lines += ["The paper's Fig. 4 figures are for a whole DAT layer on a 56x56 map "
                  "(preset `dat56`); on this workload they are a reference, not a target.", ""]
    if png:
        lines += [f"![DRAM traffic]({png})", ""]
    sweep = f"traffic/traffic_sweep_{traffic['config']['name']}.png"
    if sweep_exists:
        lines += [f"Sliced traffic over slice size and overlap: [`{sweep}`]({sweep}).", ""]
    lines += ["Why the figures differ from the paper's, and the per-tensor split: "
              f"[`traffic/traffic_{traffic['config']['name']}.md`]"
              f"(traffic/traffic_{traffic['config']['name']}.md).", ""]
    return lines


def _reproduce(cfg: Config, argv: list[str] | None) -> list[str]:
    lines = ["## Reproduce", "", "```sh"]
    if argv:
        lines.append("defslice " + " ".join(shlex.quote(a) for a in argv))
    lines += ["# or stage by stage, from the chosen configuration:",
              "defslice verilog --config chosen.toml --out verilog",
              "defslice sim     --config chosen.toml --out sim --simulator both",
              "defslice traffic --config chosen.toml --out traffic",
              "defslice model   --config chosen.toml --out model", "```", ""]
    return lines


def write_summary(cfg: Config, out: Path, seconds: dict[str, float], searched: bool,
                  argv: list[str] | None = None) -> Path:
    """Write ``out/summary.md`` from the stage outputs under ``out``; returns its path.

    ``seconds`` maps stage name to wall time (s); ``argv`` is the flow's command line.
    A stage whose output is missing is an error (the flow only calls this after every
    stage succeeded), so the summary never claims what was not run.
    """
    out = Path(out)
    nas = _load(out / "nas" / "pareto.json") if searched else None
    if searched and nas is None:
        raise DefsliceError(f"{out / 'nas' / 'pareto.json'} is missing; the search did not "
                            "finish")
    model = _load(out / "model" / "model.json")
    sim = _load(out / "sim" / "sim.json")
    name = cfg.name
    traffic = _load(out / "traffic" / f"traffic_{name}.json")
    for what, data, stage in (("model.json", model, "model"), ("sim.json", sim, "sim"),
                              (f"traffic_{name}.json", traffic, "traffic")):
        if data is None:
            raise DefsliceError(f"{what} is missing under {out}; stage `{stage}` did not "
                                "write it")
    util = _load(out / "verilog" / "reports" / "xilinx_utilization.json")
    timing = _load(out / "verilog" / "reports" / "ecp5_timing.json")
    png = f"traffic/traffic_{name}.png"
    verdict = "PASS" if sim["passed"] else "FAIL"

    lines: list[str] = [
        f"# defslice: `{name}`", "",
        f"Simulation against the golden model: **{verdict}**. Generated Verilog: "
        "[`verilog/defslice_top.v`](verilog/defslice_top.v).", ""]
    lines += _configuration(cfg, nas)
    if nas:
        lines += _nas_section(nas)
    lines += ["## Golden model", "",
              f"Fixed-point vs float on the same quantized inputs: max |error| "
              f"{model['fixed_vs_float_same_inputs_max_abs']:.3g} (stated bound "
              f"{model['fixed_error_bound_max']:.3g}, within: {model['fixed_within_bound']}). "
              f"{_pct(model['clamped_fraction'])} of the sampling points fall outside their "
              f"slice's window and are clamped ({model['slices']} slices).", ""]
    lines += _hw_section(cfg, util, timing)
    lines += board_summary_lines(out / "verilog")
    lines += _sim_section(sim, timing["fmax_mhz"] if timing else None)
    lines += _traffic_section(traffic, png if (out / png).is_file() else None,
                              (out / "traffic" / f"traffic_sweep_{name}.png").is_file())
    lines += ["## Stage times", "",
              markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in seconds.items()]),
              ""]
    lines += _reproduce(cfg, argv)
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path
