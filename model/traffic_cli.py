"""``defslice traffic``: count the DRAM traffic of every dataflow on a workload.

Writes, into ``--out``: ``traffic_<name>.json`` / ``.md`` / ``.png`` (per dataflow and
scope: read/write bursts, beats, bytes, per tensor, normalized to layer-by-layer) and,
with the sweep, ``traffic_sweep_<name>.json`` / ``.png``. For the paper's case
(``dat56``, or with ``--alias``) the same files are also written under the plain names
``traffic.json``, ``traffic.md``, ``traffic.png``, ``traffic_sweep.json``,
``traffic_sweep.png``, so two presets can share one folder.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from defslice.cli import add_config_arguments, config_from_args
from defslice.config import Config
from defslice.errors import ConfigError, InputError
from defslice.reporting import write_json

if TYPE_CHECKING:
    from defslice.model.traffic.trace import SamplingTrace

#: The configuration whose report also gets the plain file names (the paper's case).
PAPER_CASE = "dat56"
#: Workloads larger than this many sampling points skip the sweep unless asked.
SWEEP_AUTO_MAX_POINTS = 1 << 16


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_preset=PAPER_CASE)
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="output folder (default: reports)")
    parser.add_argument("--seed", type=int, default=None,
                        help="workload seed (default: traffic.seed of the configuration)")
    parser.add_argument("--trace", type=Path, default=None, metavar="NPZ",
                        help="use these sampling points instead of a random workload: an "
                             ".npz with sampling_locations (1, Lq, M, L, P, 2), "
                             "attention_weights (1, Lq, M, L, P), reference_points "
                             "(1, Lq, 2), MMCV conventions")
    parser.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                        help="sweep Hs, Ws over nas.slice_h_range / slice_w_range and "
                             "overlap over nas.overlaps (default: on for small workloads "
                             "such as dat56, off for large ones)")
    parser.add_argument("--alias", action=argparse.BooleanOptionalAction, default=None,
                        help=f"also write the plain traffic.* names (default: only for "
                             f"{PAPER_CASE})")
    parser.add_argument("--ramulator", type=Path, default=None, metavar="FILE",
                        help="also write a Ramulator 2 LoadStoreTrace of one dataflow")
    parser.add_argument("--ramulator-dataflow", default="sliced",
                        help="dataflow of the trace (default: sliced)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _trace(cfg: Config, args: argparse.Namespace) -> SamplingTrace:
    from defslice.model.traffic.trace import SamplingTrace

    if args.trace is None:
        return SamplingTrace.from_config(cfg, args.seed)
    if not args.trace.is_file():
        raise ConfigError("--trace", str(args.trace), "an existing .npz file")
    with np.load(args.trace) as z:
        missing = {"sampling_locations", "attention_weights", "reference_points"} - set(z)
        if missing:
            raise InputError(f"--trace {args.trace} lacks arrays: {', '.join(sorted(missing))}")
        return SamplingTrace.from_arrays(cfg, z["sampling_locations"],
                                         z["attention_weights"], z["reference_points"])


def _workload_text(cfg: Config) -> str:
    s = cfg.slicing
    return f"{cfg.workload.describe()}; slicing Hs={s.slice_h}, Ws={s.slice_w}, overlap {s.overlap}"


def run(args: argparse.Namespace) -> int:
    from defslice.model.traffic import DATAFLOWS, TrafficContext, run_study, sweep
    from defslice.model.traffic.ramulator import write_ramulator_trace
    from defslice.model.traffic.report import plot_bars, plot_sweep, study_markdown

    t_start = time.perf_counter()
    cfg = config_from_args(args)
    batch = cfg.workload.batch
    # The accelerator, and so every dataflow here, runs one batch element at a time;
    # traffic scales linearly with the batch.
    cfg = cfg.replace(workload={"batch": 1})
    if args.seed is not None and args.seed < 0:
        raise ConfigError("--seed", args.seed, "an integer >= 0")
    names = [f.name for f in DATAFLOWS]
    if args.ramulator is not None and args.ramulator_dataflow not in names:
        raise ConfigError("--ramulator-dataflow", args.ramulator_dataflow,
                          "one of " + ", ".join(names))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ctx = TrafficContext(cfg, _trace(cfg, args))
    t_trace = time.perf_counter()
    res = {"config": {"name": cfg.name, "slicing": cfg.to_dict()["slicing"],
                      "traffic": cfg.to_dict()["traffic"]},
           "workload": _workload_text(cfg),
           "seed": cfg.traffic.seed if args.seed is None else args.seed,
           "trace": str(args.trace) if args.trace else "random (docs/traffic.md)",
           "batch_elements_counted": f"1 of {batch} (traffic scales linearly)",
           "queries": ctx.trace.num_queries,
           "map_pixels": cfg.workload.levels[0][0] * cfg.workload.levels[0][1],
           "bus_bytes": ctx.layout.bus_bytes, "max_burst_beats": ctx.layout.max_beats}
    res.update(run_study(ctx))
    t_study = time.perf_counter()

    tag = cfg.name
    alias = args.alias if args.alias is not None else cfg.name == PAPER_CASE
    written = []
    do_sweep = args.sweep if args.sweep is not None else \
        ctx.trace.num_queries * ctx.trace.points_per_query <= SWEEP_AUTO_MAX_POINTS
    if do_sweep:
        nas = cfg.nas
        h0, w0 = cfg.workload.levels[0]
        hs = [v for v in range(nas.slice_h_range[0], nas.slice_h_range[1] + 1) if v <= h0]
        ws = [v for v in range(nas.slice_w_range[0], nas.slice_w_range[1] + 1) if v <= w0]
        sw = sweep(ctx, hs, ws, list(nas.overlaps), progress=not args.quiet)
        sw["config"] = cfg.name
        sweep_json = write_json(out / f"traffic_sweep_{tag}.json", sw)
        best = (cfg.slicing.slice_h, cfg.slicing.slice_w, cfg.slicing.overlap)
        plot_sweep(sw, out / f"traffic_sweep_{tag}.png", best)
        written += [sweep_json, out / f"traffic_sweep_{tag}.png"]
        res["sweep_file"] = sweep_json.name
    t_sweep = time.perf_counter()
    if args.ramulator is not None:
        flow = DATAFLOWS[names.index(args.ramulator_dataflow)]
        lines = write_ramulator_trace(flow.count(ctx, ctx.headline_scope, record=True),
                                      args.ramulator)
        res["ramulator_trace"] = {"file": str(args.ramulator), "dataflow": flow.name,
                                  "scope": ctx.headline_scope, "lines": lines}
    res["seconds"] = {"trace": t_trace - t_start, "study": t_study - t_trace,
                      "sweep": t_sweep - t_study,
                      "total": time.perf_counter() - t_start}
    write_json(out / f"traffic_{tag}.json", res)
    (out / f"traffic_{tag}.md").write_text(study_markdown(res))
    plot_bars(res, out / f"traffic_{tag}.png")
    written = [out / f"traffic_{tag}.{e}" for e in ("json", "md", "png")] + written
    if alias:
        for p in list(written):
            plain = p.with_name(p.name.replace(f"_{tag}", ""))
            shutil.copyfile(p, plain)
            written.append(plain)
    head = res["scopes"][res["headline_scope"]]["dataflows"]
    summary = ", ".join(f"{r['label']} {100 * r['normalized']['beats']:.1f}%"
                        for r in head.values())
    print(f"traffic: {cfg.name} ({res['headline_scope']} scope, beats vs layer-by-layer): "
          f"{summary}; {res['seconds']['total']:.1f} s; wrote "
          + ", ".join(str(p) for p in written))
    return 0
