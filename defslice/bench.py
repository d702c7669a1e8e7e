"""``defslice bench``: performance figures of every stage, side by side in one run.

Writes ``OUT/bench.json`` (:class:`BenchReport`, for machines) and ``OUT/bench.md`` (for
people). Ratios are measured in the same process on the same inputs, so machine noise
affects both sides. Stages register a function in :data:`BENCHES`; ``--only NAME`` runs
one of them. The benchmarks run fixed presets, so :func:`run` takes no configuration.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from defslice import config as cfgmod
from defslice.cliargs import add_out_argument
from defslice.errors import ToolError
from defslice.records import Record
from defslice.reporting import markdown_table


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_model(repeats: int = 2) -> dict:
    """Golden-model forward on the msda-xmsda encoder vs PyTorch's grid_sample reference.

    The reference is MMCV's ``multi_scale_deformable_attn_pytorch`` composition of
    ``grid_sample`` calls (:mod:`defslice.model.torch_reference`).
    """
    try:
        import torch

        from defslice.model.torch_reference import msda_torch
    except ImportError:
        raise ToolError("the model benchmark compares against PyTorch: "
                        "pip install torch==2.13.0") from None
    from defslice.model.fixed import fixed_forward, quantize_inputs
    from defslice.model.msda import msda_backward, msda_forward
    from defslice.model.workload import make_workload

    cfg = cfgmod.preset("msda-xmsda")
    wl = make_workload(cfg, seed=0, dtype=np.float32)
    value, shapes, loc, attn = wl.args

    def torch_forward() -> np.ndarray:
        args = (torch.from_numpy(value), shapes, torch.from_numpy(loc), torch.from_numpy(attn))
        return msda_torch(*args).numpy()

    with torch.no_grad():
        ref = torch_forward()
        ours = msda_forward(*wl.args)
        t_torch = _best_of(torch_forward, repeats)
    t_numpy = _best_of(lambda: msda_forward(*wl.args), repeats)
    sub = slice(0, 8192)
    grad = np.ones((1, 8192, cfg.workload.embed_dim), dtype=np.float32)
    t_backward = _best_of(lambda: msda_backward(value, shapes, loc[:, sub], attn[:, sub],
                                                grad), 1)
    inp = quantize_inputs(cfg.numerics, value, shapes, loc[:, sub], attn[:, sub])
    t_fixed = _best_of(lambda: fixed_forward(cfg.numerics, inp), 1)
    return {
        "workload": "msda-xmsda encoder: 87296 queries, 8 heads, 32 ch, 5 levels, 4 points",
        "dtype": "float32",
        "torch_threads": torch.get_num_threads(),
        "numpy_forward_s": t_numpy,
        "torch_grid_sample_forward_s": t_torch,
        "forward_speedup_vs_torch": t_torch / t_numpy,
        "max_abs_diff_vs_torch": float(np.abs(ours - ref).max()),
        "numpy_backward_8192_queries_s": t_backward,
        "fixed_forward_8192_queries_s": t_fixed,
    }


def _sampling(name: str, **hw: object) -> cfgmod.Config:
    """Preset ``name`` on the sampling engine (``dat56``'s own engine is the layer
    engine), with ``hw`` changes."""
    return cfgmod.preset(name).replace(hw={"engine": "sampling", **hw})


def bench_hw() -> dict:
    """RTL cycles per bilinear sample against the one-sample-per-cycle ideal, sampling
    engine.

    Amaranth simulation of ``defslice_top`` with an always-ready memory (the design's own
    throughput, not a DRAM's), outputs checked bit for bit (:func:`defslice.hw.bench.measure`).
    ``ideal`` is one sample of ``lanes`` channels per cycle; ``cycles_per_sample`` above 1
    is time spent loading windows that compute could not hide.
    """
    from defslice.hw.bench import measure

    figs: dict = {}
    cases = [("tiny", {}), ("tiny", {"buffering": "single"}), ("dat56", {})]
    for name, hw in cases:
        cfg = _sampling(name, **hw)
        m = measure(cfg)
        key = f"{name}_{cfg.hw.buffering}"
        figs[f"{key}_cycles"] = m["cycles"]
        figs[f"{key}_busy_cycles"] = m["busy_cycles"]
        figs[f"{key}_stall_cycles"] = m["stall_cycles"]
        figs[f"{key}_samples_x_lane_groups"] = m["samples"]
        figs[f"{key}_cycles_per_sample"] = m["cycles_per_sample"]
        figs[f"{key}_samples_per_compute_cycle"] = m["samples_per_compute_cycle"]
        figs[f"{key}_read_beats_per_cycle"] = m["read_beats_per_cycle"]
        figs[f"{key}_amaranth_sim_s"] = m["sim_seconds"]
    figs["ideal_cycles_per_sample"] = 1.0
    return figs


def bench_verilog() -> dict:
    """Wall time of Verilog generation (Amaranth elaboration + Verilog) of the sampling
    engine per preset."""
    import tempfile

    from defslice.hw import TOP_NAME, generate_verilog

    figs: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tiny", "dat56"):
            cfg = _sampling(name)
            path = Path(tmp) / name
            figs[f"{name}_generate_s"] = _best_of(
                lambda cfg=cfg, path=path: generate_verilog(cfg, path), 2)
            figs[f"{name}_verilog_lines"] = len((path / f"{TOP_NAME}.v").read_text()
                                                .splitlines())
    return figs


def bench_sim() -> dict:
    """cocotb simulation speed per simulator: whole ``tiny`` and ``dat56`` workloads on the
    sampling engine (the layer engine's: :func:`bench_layer_dat56`).

    ``build_s`` is compiling the Verilog (Verilator: C++), ``run_s`` the bench itself
    (its Python side included); ``cycles_per_s`` is simulated design cycles per wall
    second of the run.
    """
    import tempfile

    from defslice.sim.stage import SimOptions
    from defslice.sim.stage import run as simulate
    from defslice.sim.tools import SIMULATORS

    figs: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tiny", "dat56"):
            cfg = _sampling(name)
            for sim in SIMULATORS:
                rep = simulate(cfg, Path(tmp) / name / sim, SimOptions(simulator=sim))
                one = rep.simulators[sim]
                if not one.passed or one.performance is None:
                    raise ToolError(f"bench: the {sim} simulation of {name} failed: "
                                    f"{one.failures[:1]}")
                wall, cycles = one.wall_seconds, one.performance.bench_cycles
                key = f"{name}_{sim}"
                figs[f"{key}_build_s"] = wall.build
                figs[f"{key}_run_s"] = wall.run
                figs[f"{key}_cycles"] = cycles
                figs[f"{key}_cycles_per_s"] = cycles / wall.run if cycles else None
            figs[f"{name}_verilator_over_icarus_run_speed"] = (
                figs[f"{name}_icarus_run_s"] / figs[f"{name}_verilator_run_s"])
    return figs


def bench_nas() -> dict:
    """Slicing search time on ``dat56``: Algorithm 1 with the preset's T and k.

    The digits objective of ``defslice nas`` (classifier weights cached after the first
    training, which is timed apart), without fine-tuning: the figure is the search's own
    cost, evaluations x seconds per sub-net plus the algorithm.
    """
    from defslice.nas._torch import require_torch

    torch = require_torch()
    torch.set_num_threads(2)
    from defslice.nas.evaluators import digits_objective
    from defslice.nas.pipeline import resource_function
    from defslice.nas.search import Objective, evolutionary_search
    from defslice.nas.space import SearchSpace

    cfg = cfgmod.preset("dat56")
    t0 = time.perf_counter()
    acc, _meta = digits_objective(cfg)
    t_model = time.perf_counter() - t0
    space = SearchSpace.from_config(cfg)
    t0 = time.perf_counter()
    unsliced = acc(None)
    t_unsliced = time.perf_counter() - t0
    objective = Objective(acc, resource_function(cfg))
    t0 = time.perf_counter()
    res = evolutionary_search(space, objective, cfg.nas)
    t_search = time.perf_counter() - t0
    n = len(res.evaluated)
    return {
        "space_size": space.size, "generations": cfg.nas.generations,
        "samples_per_generation": cfg.nas.samples_per_generation,
        "classifier_ready_s": t_model, "unsliced_eval_s": t_unsliced,
        "unsliced_accuracy": unsliced, "evaluations": n, "search_s": t_search,
        "seconds_per_subnet": t_search / n, "front_size": len(res.front),
        "exhaustive_estimate_s": space.size * t_search / n,
    }


#: Layer-engine configurations of :func:`bench_layer` (``defslice.sim.configs``, Amaranth
#: simulator) and the preset of :func:`bench_layer_dat56` (Verilator).
LAYER_BENCH_CONFIGS = ("ldat-a", "ldat-g2-tanh", "ldat-o0", "ldat-whole", "ldat-sparse")


def layer_figures(cfg: cfgmod.Config, counters: dict[str, int]) -> dict:
    """The layer engine's figures of one run from its counters (register names) beside
    the cycle model's (:func:`defslice.hw.layer.cycles.estimate`, always-ready memory).

    ``compute_bound``: multiply-accumulates of the engine / multipliers (cycles);
    ``unit_bound``: the busiest unit beside the array alone (cycles); utilisations are
    fractions of ``cycles``; ``load_cycles`` are the cycles the array waited for data
    (loads not hidden behind compute).
    """
    from defslice.hw.layer.cycles import estimate
    from defslice.hw.layer.plan import LayerPlan

    plan = LayerPlan.from_config(cfg)
    est = estimate(plan)
    cycles, busy = counters["CYCLES"], counters["ARRAY_BUSY"]
    return {
        "multipliers": plan.multipliers, "cycles": cycles, "array_busy": busy,
        "stall_cycles": counters["STALL_CYCLES"], "load_cycles": counters["LOAD_CYCLES"],
        "compute_bound": round(est.compute_bound), "unit_bound": est.unit_bound,
        "cycles_over_compute_bound": round(cycles / est.compute_bound, 3),
        "array_utilisation": round(busy / cycles, 4),
        "read_port_utilisation": round(counters["READ_BEATS"] / cycles, 4),
        "read_beats": counters["READ_BEATS"], "write_beats": counters["WRITE_BEATS"],
        "model_cycles": est.total, "model_array_busy": est.array_busy,
        "model_utilisation": round(est.utilisation, 4),
        "model_load_cycles": est.first_load + est.exposed_load,
        "rtl_over_model": round(cycles / est.total, 3),
    }


def _flat(rows: dict[str, dict]) -> dict:
    """``{config: {figure: value}}`` as one flat ``{config_figure: value}``."""
    return {f"{name}_{k}": v for name, row in rows.items() for k, v in row.items()}


def bench_layer() -> dict:
    """The layer engine per configuration: RTL cycles per layer against the compute bound,
    array and read-port utilisation, loads not hidden, the cycle model beside them.

    Amaranth simulation of the engine top (``hw.engine = "layer"``) with an always-ready
    memory on the small layers of ``defslice.sim.configs``, seed 1 of their stimulus; ``y``
    is checked bit for bit against the fixed-point layer and the bursts on the bus against
    ``layer_transfers`` in the same run (a difference raises).
    """
    from defslice.hw.layer.simulate import simulate_top
    from defslice.sim.configs import sim_config
    from defslice.sim.layer_stimulus import make_layer_stimulus

    rows: dict[str, dict] = {}
    for name in LAYER_BENCH_CONFIGS:
        cfg = sim_config(name)
        stim = make_layer_stimulus(cfg, seed=1)
        t0 = time.perf_counter()
        run = simulate_top(cfg, stim.x_q, stim.params)
        seconds = time.perf_counter() - t0
        want = stim.transfers()
        if run.status & 0b1110 != 0b0010 or not np.array_equal(run.y, stim.forward[0][0]):
            raise ToolError(f"bench: the layer engine's y on {name} differs from the "
                            f"fixed-point layer (STATUS {run.status:#x})")
        if any([b for b in run.bursts if b.write == w] != [b for b in want if b.write == w]
               for w in (False, True)):
            raise ToolError(f"bench: the layer engine's bursts on {name} differ from "
                            f"layer_transfers")
        rows[name] = {**layer_figures(cfg, run.counters), "bit_exact": True,
                      "bursts_exact": True, "amaranth_sim_s": round(seconds, 1)}
    return _flat(rows)


def bench_layer_dat56() -> dict:
    """:func:`bench_layer`'s figures for ``dat56`` on the layer engine, through the cocotb
    bench on Verilator (``defslice sim``: its checks of ``y``, bursts and counters must
    pass) with an always-ready memory (no back-pressure), seed 1."""
    import tempfile

    from defslice.sim.stage import SimOptions
    from defslice.sim.stage import run as simulate

    cfg = cfgmod.preset("dat56").replace(hw={"engine": "layer"})
    with tempfile.TemporaryDirectory() as tmp:
        rep = simulate(cfg, Path(tmp), SimOptions(simulator="verilator", seed=1,
                                                  backpressure=0.0))
    one = rep.simulators["verilator"]
    perf, traffic = one.performance, one.traffic
    if not one.passed or perf is None or traffic is None:
        raise ToolError(f"bench: the Verilator run of the dat56 layer failed: "
                        f"{one.failures[:1]}")
    counters = {"CYCLES": perf.cycles, "ARRAY_BUSY": perf.busy_cycles,
                "STALL_CYCLES": perf.stall_cycles, "LOAD_CYCLES": perf.load_cycles,
                "READ_BEATS": traffic.rtl_counters.read_beats,
                "WRITE_BEATS": traffic.rtl_counters.write_beats}
    return _flat({"dat56": {**layer_figures(cfg, counters), "bit_exact": True,
                            "bursts_exact": True, "verilator_build_s": one.wall_seconds.build,
                            "verilator_run_s": one.wall_seconds.run}})


#: name -> benchmark function returning a flat dict of figures
BENCHES: dict[str, Callable[[], dict]] = {"model": bench_model, "hw": bench_hw,
                                          "verilog": bench_verilog, "sim": bench_sim,
                                          "nas": bench_nas, "layer": bench_layer,
                                          "layer-dat56": bench_layer_dat56}


@dataclass(frozen=True)
class Machine(Record):
    """Where the figures were measured: Python version and CPU count."""

    python: str
    cpus: int | None


@dataclass(frozen=True)
class BenchReport(Record):
    """``bench.json``: the machine, then each benchmark's flat figures under its name
    (times in s; ``bench_wall_s`` is the benchmark's own wall time)."""

    machine: Machine
    results: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """``{"machine": ..., "<bench>": {figures}, ...}``."""
        return {"machine": self.machine.to_json(), **self.results}

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> Self:
        """The report held by a ``bench.json`` document."""
        rest = {k: v for k, v in data.items() if k != "machine"}
        return cls(Machine.from_json(data.get("machine"), f"{where or cls.__name__}.machine"),
                   rest)

    def markdown(self) -> str:
        """``bench.md``: one table per benchmark."""
        lines = ["# defslice benchmarks", ""]
        for name, figs in self.results.items():
            rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in figs.items()]
            lines += [f"## {name}", "", markdown_table(["figure", "value"], rows), ""]
        return "\n".join(lines)


def run(out: Path, only: tuple[str, ...] | None = None) -> BenchReport:
    """Run the benchmarks ``only`` (default: all of :data:`BENCHES`); write
    ``out/bench.json`` and ``out/bench.md``."""
    results: dict[str, dict] = {}
    for name in only or BENCHES:
        print(f"bench: {name} ...", flush=True)
        t0 = time.perf_counter()
        results[name] = BENCHES[name]()
        results[name]["bench_wall_s"] = time.perf_counter() - t0
    report = BenchReport(Machine(platform.python_version(), os.cpu_count()), results)
    report.save(Path(out) / "bench.json")
    (Path(out) / "bench.md").write_text(report.markdown())
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice bench``."""
    add_out_argument(parser, "reports")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append",
                        help="run only these benchmarks (repeatable)")


def main(args: argparse.Namespace) -> int:
    """Run the benchmarks on the parsed arguments; exit status 0."""
    run(args.out, tuple(args.only) if args.only else None)
    print(f"bench: wrote {args.out / 'bench.json'} and bench.md")
    return 0
