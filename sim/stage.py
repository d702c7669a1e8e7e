"""The simulation stage: one configuration through a Verilog file, judged by the model.

:func:`run` simulates the Verilog file it is given (the Verilog stage's
``defslice_top.v`` in the flow) or, without one, generates the design into ``OUT/rtl/``
(:func:`defslice.hw.generate_verilog`); it records the file's SHA-256, draws the
stimulus of the configuration's engine (:func:`defslice.sim.program.make_program`),
runs the cocotb bench on each simulator asked for, compares everything with the golden
model (:mod:`defslice.sim.check`), and writes ``OUT/sim.json``
(:class:`~defslice.sim.report.SimReport`). A failing run is re-run with waveforms, kept in
``OUT/<simulator>/waves/`` (the report names the file).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from defslice import config as cfgmod
from defslice.cliargs import option, require
from defslice.config import Config
from defslice.errors import ConfigError, ToolError
from defslice.records import sha256_of
from defslice.sim.check import check_result
from defslice.sim.job import FAULTS, Job
from defslice.sim.program import BenchProgram, make_program
from defslice.sim.report import AxiTraffic, SimReport, SimulatorReport, WallSeconds
from defslice.sim.runner import run_bench
from defslice.sim.tools import SIMULATORS, check_simulator, simulator_list

__all__ = ["AUTO_VERILATOR_CYCLES", "SimOptions", "choose_simulators", "generate_design", "run",
           "simulate_one", "timeout_cycles"]

#: ``--simulator auto`` runs a layer-engine design on Verilator when its cycle estimate
#: (:func:`defslice.hw.layer.cycles.estimate`) exceeds this, else on Icarus. Icarus runs
#: the layer engine's cocotb bench at about 300 cycles/s (``dat56``'s ~284,000 cycles:
#: hours); Verilator's C++ build costs about 2 min on ``dat56`` and its run ~20 min, so
#: below about a minute of Icarus the build does not pay.
AUTO_VERILATOR_CYCLES = 20_000


@dataclass(frozen=True)
class SimOptions:
    """How the simulation stage runs.

    Members
    -------
    simulator : ``"icarus"``, ``"verilator"``, ``"both"`` or ``"auto"``
        ``auto`` chooses one by engine and size (:func:`choose_simulators`).
    seed : int
        Stimulus and back-pressure seed.
    queries : int or None
        Simulate a random sample of this many queries (``None``: all).
    backpressure : float
        Pause probability of every AXI / AXI4-Lite channel of the bench, in [0, 1).
    reset_mid_run : bool
        Reset the design in the middle of a first run, then judge a second, clean run.
    verilog : Path or None
        Simulate this file (as written by the Verilog stage) instead of generating one.
    waves_on_failure : bool
        Re-run a failing simulation with waveforms and keep them.
    fault : str or None
        A deliberate fault the bench injects (:data:`defslice.sim.job.FAULTS`), to show
        the checks catch it; ``None``: none.
    """

    simulator: str = option("both", "simulator(s) to run; auto: Verilator for a layer-engine "
                            f"design estimated above {AUTO_VERILATOR_CYCLES:,} cycles, "
                            "else Icarus", choices=(*SIMULATORS, "both", "auto"))
    seed: int = option(0, "stimulus seed")
    queries: int | None = option(None, "simulate a random sample of N queries (default: all)",
                                 metavar="N")
    backpressure: float = option(0.25, "pause probability of every bench AXI channel",
                                 metavar="P")
    reset_mid_run: bool = option(False, "reset the design in the middle of a first run, "
                                        "then judge a second run")
    verilog: Path | None = option(None, "simulate this Verilog file instead of generating "
                                        "the design (default: generate into OUT/rtl)",
                                  metavar="FILE")
    waves_on_failure: bool = True
    fault: str | None = None

    def __post_init__(self) -> None:
        require(self.queries is None or self.queries >= 1, SimOptions, "queries",
                self.queries, "an integer >= 1")
        require(0 <= self.backpressure < 1, SimOptions, "backpressure", self.backpressure,
                "a probability in [0, 1)")
        require(self.fault is None or self.fault in FAULTS, SimOptions, "fault", self.fault,
                f"one of {', '.join(FAULTS)}")


def choose_simulators(cfg: Config, simulator: str) -> tuple[list[str], str | None]:
    """The simulators ``simulator`` names for ``cfg`` and, for ``"auto"``, why it chose.

    ``auto``: the sampling engine runs on Icarus (no C++ build; the flow samples its
    queries); the layer engine on Verilator when :func:`~defslice.hw.layer.cycles.estimate`
    predicts more than :data:`AUTO_VERILATOR_CYCLES` cycles, else on Icarus.
    """
    if simulator != "auto":
        return simulator_list(simulator), None
    if cfg.hw.engine != "layer":
        return ["icarus"], "auto: icarus (sampling engine)"
    from defslice.hw.layer.cycles import estimate
    from defslice.hw.layer.plan import LayerPlan

    cycles = estimate(LayerPlan.from_config(cfg)).total
    if cycles > AUTO_VERILATOR_CYCLES:
        return ["verilator"], (f"auto: verilator (layer engine, {cycles:,} cycles estimated, "
                               f"above {AUTO_VERILATOR_CYCLES:,}: Icarus runs about 300 "
                               "cycles/s)")
    return ["icarus"], (f"auto: icarus (layer engine, {cycles:,} cycles estimated, at most "
                        f"{AUTO_VERILATOR_CYCLES:,}: no C++ build)")


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


def timeout_cycles(prog: BenchProgram) -> int:
    """A generous bound on a run's cycles (:meth:`BenchProgram.timeout_cycles`)."""
    return prog.timeout_cycles()


def simulate_one(cfg: Config, verilog: Path, build_dir: Path, simulator: str,
                 stim: BenchProgram, options: SimOptions) -> SimulatorReport:
    """Run the bench once on ``simulator`` and judge it."""
    job = Job(config_toml=cfgmod.dumps(cfg), seed=options.seed, queries=options.queries,
              backpressure=options.backpressure, reset_mid_run=options.reset_mid_run,
              timeout_cycles=timeout_cycles(stim), result_path="",
              fault=options.fault)
    t0 = time.perf_counter()
    run = run_bench(verilog, build_dir, simulator, job)
    wall = time.perf_counter() - t0
    judged = check_result(stim, run.result)
    if not run.passed:
        judged = dataclasses.replace(judged, passed=False,
                                     failures=(*run.errors, *judged.failures))
    waves = None
    if not judged.passed and options.waves_on_failure:
        waves = run_bench(verilog, build_dir, simulator, job, waves=True).waves
    return SimulatorReport(
        **{f.name: getattr(judged, f.name) for f in dataclasses.fields(judged)},
        simulator=simulator, version=check_simulator(simulator),
        wall_seconds=WallSeconds(round(run.build_seconds, 3), round(run.run_seconds, 3),
                                 round(wall, 3)),
        build_dir=run.build_dir, sim_log=run.sim_log, waves=waves)


def run(cfg: Config, out: Path, options: SimOptions) -> SimReport:
    """Simulate ``options.verilog`` (or ``cfg``'s generated design) and compare it with
    the golden model; writes ``out/sim.json`` (and, when generating, ``out/rtl/``)."""
    out = Path(out)
    sims, rule = choose_simulators(cfg, options.simulator)
    for sim in sims:
        check_simulator(sim)
    t0 = time.perf_counter()
    design = options.verilog if options.verilog is not None else \
        generate_design(cfg, out / "rtl")
    t_gen = time.perf_counter() - t0 if options.verilog is None else 0.0
    if not design.is_file():
        raise ConfigError("--verilog", str(design), "an existing Verilog file")
    sha = sha256_of(design)
    stim = make_program(cfg, options.seed, options.queries)
    per_sim = {sim: simulate_one(cfg, design, out / sim, sim, stim, options)
               for sim in sims}
    if sha256_of(design) != sha:
        raise ToolError(f"{design} changed while it was simulated")
    report = SimReport(
        config=cfg.name, seed=options.seed, queries=stim.items,
        descriptors=stim.descriptors, backpressure=options.backpressure,
        reset_mid_run=options.reset_mid_run, passed=all(r.passed for r in per_sim.values()),
        verilog=design, verilog_sha256=sha, generate_seconds=round(t_gen, 3),
        expected_traffic=AxiTraffic.of(stim.transfers()),
        location_kinds=stim.kind_counts, simulators=per_sim, simulator_choice=rule)
    report.save(out / "sim.json")
    return report
