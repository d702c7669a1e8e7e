"""``run_simulation``: one configuration through the generated Verilog, judged by the model.

Used by ``defslice sim``, by the one-command flow and by the tests. It generates the
Verilog (:func:`defslice.hw.generate_verilog`), draws the stimulus, runs the cocotb bench on
each simulator asked for, compares everything with the golden model
(:mod:`defslice.sim.check`), and writes ``OUT/sim.json``. A failing run is re-run with
waveforms, kept in ``OUT/<simulator>/waves/`` (the report names the file).
"""

from __future__ import annotations

import time
from pathlib import Path

from defslice import config as cfgmod
from defslice.config import Config
from defslice.errors import ToolError
from defslice.reporting import write_json
from defslice.sim.check import check_result, expected_traffic
from defslice.sim.job import Job
from defslice.sim.runner import run_bench
from defslice.sim.stimulus import Stimulus, make_stimulus
from defslice.sim.tools import check_simulator, simulator_list

__all__ = ["generate_design", "run_simulation", "simulate_one", "timeout_cycles"]


def generate_design(cfg: Config, out_dir: Path) -> Path:
    """The generated ``defslice_top.v`` for ``cfg`` in ``out_dir``."""
    try:
        from defslice.hw import generate_verilog
    except ImportError as exc:
        raise ToolError(f"the hardware generator is not available ({exc}); "
                        "defslice.hw.generate_verilog(cfg, out_dir) is needed") from None
    path = Path(generate_verilog(cfg, Path(out_dir)))
    if not path.is_file():
        raise ToolError(f"defslice.hw.generate_verilog did not write {path}")
    return path


def timeout_cycles(stim: Stimulus) -> int:
    """A generous bound on a run's cycles: 40 per beat and per sample step, plus slack."""
    prog = stim.program
    w = prog.cfg.workload
    beats = sum(b.beats for b in prog.transfers())
    steps = prog.layout.num_queries * w.sample_heads * w.num_levels * w.points * (
        w.sample_channels // prog.cfg.hw.lanes)
    return 40 * (beats + steps) + 20_000


def simulate_one(cfg: Config, verilog: Path, build_dir: Path, simulator: str,
                 stim: Stimulus, seed: int, queries: int | None, backpressure: float,
                 reset_mid_run: bool, waves_on_failure: bool = True) -> dict:
    """Run the bench once on ``simulator`` and judge it; returns the per-simulator report."""
    job = Job(config_toml=cfgmod.dumps(cfg), seed=seed, queries=queries,
              backpressure=backpressure, reset_mid_run=reset_mid_run,
              timeout_cycles=timeout_cycles(stim), result_path="")
    t0 = time.perf_counter()
    run = run_bench(verilog, build_dir, simulator, job)
    wall = time.perf_counter() - t0
    report = check_result(stim, run.result)
    if not run.passed:
        report["failures"] = run.errors + report["failures"]
        report["passed"] = False
    report["simulator"] = simulator
    report["version"] = check_simulator(simulator)
    report["wall_seconds"] = {"build": round(run.build_seconds, 3),
                              "run": round(run.run_seconds, 3), "total": round(wall, 3)}
    report["build_dir"] = str(run.build_dir)
    report["sim_log"] = str(run.sim_log)
    report["waves"] = None
    if not report["passed"] and waves_on_failure:
        again = run_bench(verilog, build_dir, simulator, job, waves=True)
        report["waves"] = str(again.waves) if again.waves else None
    return report


def run_simulation(cfg: Config, out_dir: str | Path, simulator: str = "icarus",
                   seed: int = 0, queries: int | None = None, *,
                   backpressure: float = 0.25, reset_mid_run: bool = False,
                   verilog: str | Path | None = None, waves_on_failure: bool = True) -> dict:
    """Simulate ``cfg``'s generated Verilog and compare it with the golden model.

    Arguments
    ---------
    cfg : Config
    out_dir : path
        Receives ``rtl/defslice_top.v``, one build folder per simulator and ``sim.json``.
    simulator : ``"icarus"``, ``"verilator"`` or ``"both"``
    seed : int
        Stimulus and back-pressure seed.
    queries : int or None
        Simulate a random sample of this many queries (``None``: all).
    backpressure : float
        Pause probability of every AXI / AXI4-Lite channel of the bench (0: none).
    reset_mid_run : bool
        Reset the design in the middle of a first run, then judge a second, clean run.
    verilog : path or None
        Simulate this file instead of generating the design (bench self-tests).
    waves_on_failure : bool
        Re-run a failing simulation with waveforms and keep them.

    Returns
    -------
    dict
        The content of ``sim.json``: ``passed``, and per simulator the mismatches, cycles,
        busy/stall cycles, bursts and beats observed vs expected, wall times, waves.
    """
    out_dir = Path(out_dir)
    sims = simulator_list(simulator)
    for sim in sims:
        check_simulator(sim)
    t0 = time.perf_counter()
    design = Path(verilog) if verilog is not None else generate_design(cfg, out_dir / "rtl")
    t_gen = time.perf_counter() - t0
    stim = make_stimulus(cfg, seed, queries)
    per_sim = {}
    for sim in sims:
        per_sim[sim] = simulate_one(cfg, design, out_dir / sim, sim, stim, seed, queries,
                                    backpressure, reset_mid_run, waves_on_failure)
    report = {
        "config": cfg.name,
        "seed": seed,
        "queries": stim.program.layout.num_queries,
        "descriptors": len(stim.program.descriptors),
        "backpressure": backpressure,
        "reset_mid_run": reset_mid_run,
        "passed": all(r["passed"] for r in per_sim.values()),
        "verilog": str(design),
        "generate_seconds": round(t_gen, 3),
        "expected_traffic": expected_traffic(stim.program.transfers()),
        "location_kinds": stim.kind_counts,
        "simulators": per_sim,
    }
    write_json(out_dir / "sim.json", report)
    return report
