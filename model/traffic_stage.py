"""The DRAM-traffic stage: every dataflow of :mod:`defslice.model.traffic` on one workload.

:func:`run` writes, into ``out``: ``traffic_<name>.json`` (:class:`TrafficReport`) /
``.md`` / ``.png`` (per dataflow and scope: read/write bursts, beats, bytes, per tensor,
normalized to layer-by-layer) and, with the sweep, ``traffic_sweep_<name>.json`` /
``.png``. For the paper's case (``dat56``, or with ``alias``) the same files are also
written under the plain names ``traffic.json``, ``traffic.md``, ``traffic.png``,
``traffic_sweep.json``, ``traffic_sweep.png``, so two presets can share one folder.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defslice.cliargs import option, require
from defslice.config import Config
from defslice.errors import ConfigError, InputError
from defslice.records import Record, omitted
from defslice.reporting import write_json

if TYPE_CHECKING:
    from defslice.model.traffic.trace import SamplingTrace

__all__ = ["PAPER_CASE", "SWEEP_AUTO_MAX_POINTS", "DataflowTraffic", "Normalized",
           "TrafficOptions", "TrafficReport", "TrafficScope", "Volume", "run"]

#: The configuration whose report also gets the plain file names (the paper's case).
PAPER_CASE = "dat56"
#: Workloads larger than this many sampling points skip the sweep unless asked.
SWEEP_AUTO_MAX_POINTS = 1 << 16


@dataclass(frozen=True)
class TrafficOptions:
    """Options of the traffic stage (defaults: the configuration's seed, the random
    workload, sweep and plain names chosen by the workload)."""

    seed: int | None = option(None, "workload seed (default: traffic.seed of the "
                                    "configuration)")
    trace: Path | None = option(
        None, "use these sampling points instead of a random workload: an .npz with "
              "sampling_locations (1, Lq, M, L, P, 2), attention_weights (1, Lq, M, L, P), "
              "reference_points (1, Lq, 2), MMCV conventions", metavar="NPZ")
    sweep: bool | None = option(
        None, "sweep Hs, Ws over nas.slice_h_range / slice_w_range and overlap over "
              "nas.overlaps (default: on for small workloads such as dat56, off for large "
              "ones)")
    alias: bool | None = option(
        None, f"also write the plain traffic.* names (default: only for {PAPER_CASE})")
    ramulator: Path | None = option(
        None, "also write a Ramulator 2 LoadStoreTrace of one dataflow", metavar="FILE")
    ramulator_dataflow: str = option("sliced", "dataflow of the Ramulator trace")
    quiet: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        require(self.seed is None or self.seed >= 0, TrafficOptions, "seed", self.seed,
                "an integer >= 0")


@dataclass(frozen=True)
class Volume(Record):
    """AXI transactions, beats and payload bytes of one direction or tensor."""

    bursts: int
    beats: int
    bytes: int


@dataclass(frozen=True)
class Normalized(Record):
    """A dataflow's totals divided by the baseline's, per unit (``accesses`` = beats,
    stated for the layer-by-layer baseline only)."""

    bytes: float
    beats: float
    bursts: float
    accesses: float | None = omitted()


@dataclass(frozen=True)
class DataflowTraffic(Record):
    """Traffic of one dataflow in one scope (:func:`defslice.model.traffic.run_study`).

    ``per_tensor[tensor]["read" | "write"]``; ``normalized`` to layer-by-layer; in the
    layer scope also ``normalized_to_layer_by_layer_ops`` (the per-operator baseline).
    """

    read: Volume
    write: Volume
    total: Volume
    per_tensor: dict[str, dict[str, Volume]]
    seconds: float
    label: str
    normalized: Normalized
    normalized_to_layer_by_layer_ops: Normalized | None = omitted()


@dataclass(frozen=True)
class TrafficScope(Record):
    """The dataflows of one scope, in report order (the first is the baseline)."""

    dataflows: dict[str, DataflowTraffic]


@dataclass(frozen=True)
class TrafficConfigRecord(Record):
    """The configuration sections the study depends on."""

    name: str
    slicing: dict[str, Any]
    traffic: dict[str, Any]


@dataclass(frozen=True)
class TrafficSeconds(Record):
    """Wall time of the stage's steps (s)."""

    trace: float
    study: float
    sweep: float
    total: float


@dataclass(frozen=True)
class TrafficReport(Record):
    """``traffic_<name>.json``: every dataflow's DRAM traffic on one workload.

    Members
    -------
    scopes : dict
        ``"datapath"`` (the sampling datapath) and, for DAT workloads, ``"layer"`` (the
        whole layer); :attr:`headline_scope` is the one compared with the paper.
    rtl_transfers : dict
        Bursts and beats per tensor of the RTL's own transfer list.
    layer_graph, schedules, layer_engine_transfers, exact_overlap : dict or None
        With the layer scope (:func:`defslice.model.traffic.study.layer_study`): the
        layer's tensors, parameters and operators; each scheduled dataflow's schedule,
        per-layer beats and totals with ``q`` stored and recomputed; the layer engine's
        bursts and beats per tensor; the sliced layer with the overlap that makes its
        offset network exact.
    plot_file, sweep_file, sweep_plot_file : str
        File names (in the stage's folder) of the bar chart and, with the sweep, its JSON
        and heat map.
    """

    config: TrafficConfigRecord
    workload: str
    seed: int
    trace: str
    batch_elements_counted: str
    queries: int
    map_pixels: int
    bus_bytes: int
    max_burst_beats: int
    scopes: dict[str, TrafficScope]
    headline_scope: str
    rtl_transfers: dict[str, dict[str, int]]
    seconds: TrafficSeconds
    plot_file: str
    sweep_file: str | None = omitted()
    sweep_plot_file: str | None = omitted()
    ramulator_trace: dict[str, Any] | None = omitted()
    layer_graph: dict[str, Any] | None = omitted()
    schedules: dict[str, Any] | None = omitted()
    layer_engine_transfers: dict[str, dict[str, int]] | None = omitted()
    exact_overlap: dict[str, Any] | None = omitted()

    @property
    def headline(self) -> TrafficScope:
        """The scope compared with the paper."""
        return self.scopes[self.headline_scope]

    def summary_line(self) -> str:
        """One line for the terminal."""
        flows = ", ".join(f"{d.label} {100 * d.normalized.beats:.1f}%"
                          for d in self.headline.dataflows.values())
        return (f"traffic: {self.config.name} ({self.headline_scope} scope, beats vs "
                f"layer-by-layer): {flows}; {self.seconds.total:.1f} s")


def _trace(cfg: Config, options: TrafficOptions) -> SamplingTrace:
    from defslice.model.traffic.trace import SamplingTrace

    if options.trace is None:
        return SamplingTrace.from_config(cfg, options.seed)
    if not options.trace.is_file():
        raise ConfigError("--trace", str(options.trace), "an existing .npz file")
    with np.load(options.trace) as z:
        missing = {"sampling_locations", "attention_weights", "reference_points"} - set(z)
        if missing:
            raise InputError(f"--trace {options.trace} lacks arrays: "
                             f"{', '.join(sorted(missing))}")
        return SamplingTrace.from_arrays(cfg, z["sampling_locations"],
                                         z["attention_weights"], z["reference_points"])


def _workload_text(cfg: Config) -> str:
    s = cfg.slicing
    return f"{cfg.workload.describe()}; slicing Hs={s.slice_h}, Ws={s.slice_w}, overlap {s.overlap}"


def _sweep(cfg: Config, ctx: Any, out: Path, options: TrafficOptions) -> list[Path]:
    """Sliced traffic over the slicing space: ``traffic_sweep_<name>.json`` and ``.png``."""
    from defslice.model.traffic import sweep
    from defslice.model.traffic.report import plot_sweep

    nas = cfg.nas
    h0, w0 = cfg.workload.levels[0]
    hs = [v for v in range(nas.slice_h_range[0], nas.slice_h_range[1] + 1) if v <= h0]
    ws = [v for v in range(nas.slice_w_range[0], nas.slice_w_range[1] + 1) if v <= w0]
    sw = sweep(ctx, hs, ws, list(nas.overlaps), progress=not options.quiet)
    sw["config"] = cfg.name
    sweep_json = write_json(out / f"traffic_sweep_{cfg.name}.json", sw)
    best = (cfg.slicing.slice_h, cfg.slicing.slice_w, cfg.slicing.overlap)
    png = out / f"traffic_sweep_{cfg.name}.png"
    plot_sweep(sw, png, best)
    return [sweep_json, png]


def _ramulator(ctx: Any, options: TrafficOptions) -> dict[str, Any] | None:
    from defslice.model.traffic import DATAFLOWS
    from defslice.model.traffic.ramulator import write_ramulator_trace

    if options.ramulator is None:
        return None
    flow = next(f for f in DATAFLOWS if f.name == options.ramulator_dataflow)
    lines = write_ramulator_trace(flow.count(ctx, ctx.headline_scope, record=True),
                                  options.ramulator)
    return {"file": str(options.ramulator), "dataflow": flow.name,
            "scope": ctx.headline_scope, "lines": lines}


def run(cfg: Config, out: Path, options: TrafficOptions) -> TrafficReport:
    """Count every dataflow's DRAM traffic on ``cfg``'s workload; write the files above.

    The accelerator, and so every dataflow here, runs one batch element at a time;
    traffic scales linearly with the batch, so one element is counted.
    """
    from defslice.model.traffic import DATAFLOWS, TrafficContext, run_study
    from defslice.model.traffic.report import plot_bars, study_markdown

    t_start = time.perf_counter()
    batch = cfg.workload.batch
    cfg = cfg.replace(workload={"batch": 1})
    names = [f.name for f in DATAFLOWS]
    if options.ramulator is not None and options.ramulator_dataflow not in names:
        raise ConfigError("--ramulator-dataflow", options.ramulator_dataflow,
                          "one of " + ", ".join(names))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = TrafficContext(cfg, _trace(cfg, options))
    t_trace = time.perf_counter()
    study = run_study(ctx)
    t_study = time.perf_counter()
    do_sweep = options.sweep if options.sweep is not None else \
        ctx.trace.num_queries * ctx.trace.points_per_query <= SWEEP_AUTO_MAX_POINTS
    swept = _sweep(cfg, ctx, out, options) if do_sweep else []
    t_sweep = time.perf_counter()
    tag = cfg.name
    report = TrafficReport.from_json({
        "config": {"name": cfg.name, "slicing": cfg.to_dict()["slicing"],
                   "traffic": cfg.to_dict()["traffic"]},
        "workload": _workload_text(cfg),
        "seed": cfg.traffic.seed if options.seed is None else options.seed,
        "trace": str(options.trace) if options.trace else "random (docs/traffic.md)",
        "batch_elements_counted": f"1 of {batch} (traffic scales linearly)",
        "queries": ctx.trace.num_queries,
        "map_pixels": cfg.workload.levels[0][0] * cfg.workload.levels[0][1],
        "bus_bytes": ctx.layout.bus_bytes, "max_burst_beats": ctx.layout.max_beats,
        **study,
        "seconds": {"trace": t_trace - t_start, "study": t_study - t_trace,
                    "sweep": t_sweep - t_study, "total": 0.0},
        "plot_file": f"traffic_{tag}.png",
        **({"sweep_file": swept[0].name, "sweep_plot_file": swept[1].name} if swept else {}),
    })
    report = dataclasses.replace(
        report, ramulator_trace=_ramulator(ctx, options),
        seconds=dataclasses.replace(report.seconds, total=time.perf_counter() - t_start))
    report.save(out / f"traffic_{tag}.json")
    (out / f"traffic_{tag}.md").write_text(study_markdown(report.to_json()))
    plot_bars(report.to_json(), out / f"traffic_{tag}.png")
    written = [out / f"traffic_{tag}.{e}" for e in ("json", "md", "png")] + swept
    if options.alias if options.alias is not None else cfg.name == PAPER_CASE:
        for p in written:
            shutil.copyfile(p, p.with_name(p.name.replace(f"_{tag}", "")))
    return report
