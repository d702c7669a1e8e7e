"""``defslice flow``: search -> model -> Verilog -> simulation -> traffic -> ``summary.md``.

:func:`run` calls every stage in process with one :class:`~defslice.config.Config`
object (the search's chosen one after ``--search``), each writing into ``OUT/<stage>/``;
the simulation stage simulates exactly the ``verilog/defslice_top.v`` the Verilog stage
wrote, and both reports record its SHA-256. Progress is printed per stage. ``flow.json``
(:class:`FlowReport`, every stage's report) and ``summary.md`` are written only when
every stage succeeded; a failure leaves ``OUT/FAILED.md`` naming the stage and the error
(and removes a stale summary), so nothing half-done looks complete.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from defslice import config as cfgmod
from defslice.cliargs import (
    add_config_arguments,
    add_options,
    add_out_argument,
    config_argv,
    config_from_args,
    option,
    options_argv,
    options_from_args,
)
from defslice.errors import ConfigError, DefsliceError
from defslice.hw.stage import VerilogOptions, VerilogReport
from defslice.model.stage import ModelOptions, ModelReport
from defslice.model.traffic_stage import TrafficOptions, TrafficReport
from defslice.nas.stage import NasOptions, NasReport
from defslice.records import Record
from defslice.sim.report import SimReport
from defslice.sim.stage import SimOptions

if TYPE_CHECKING:
    from defslice.hw.params import HwParams

__all__ = ["FlowOptions", "FlowReport", "configure", "main", "preflight", "run"]

T = TypeVar("T")

#: Stage name -> what the progress lines call it, in run order.
STAGES = {"nas": "slicing search", "model": "golden model",
          "verilog": "Verilog, Xilinx and ECP5 reports",
          "sim": "cocotb simulation against the golden model",
          "traffic": "DRAM traffic of the dataflows"}

#: The simulation flags ``defslice flow`` takes, and its defaults where they differ from
#: ``defslice sim``'s (one simulator, chosen by engine and size: the sampling engine's
#: run is a sample of queries on Icarus, the layer engine's a whole layer, on Verilator
#: when it is long; :func:`defslice.sim.stage.choose_simulators`).
_SIM_FLAGS = ("simulator", "queries")
_SIM_DEFAULTS = {"simulator": "auto"}
#: The Verilog stage's flags ``defslice flow`` takes.
_VERILOG_FLAGS = ("reports", "ecp5", "ecp5_minutes")


@dataclass(frozen=True)
class FlowOptions:
    """Options of the flow: whether to search first, and every stage's options (the
    simulation's ``verilog`` is set by the flow to the Verilog stage's file)."""

    search: bool = option(False, "run the slicing search first and build its chosen point")
    nas: NasOptions = field(default_factory=NasOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    verilog: VerilogOptions = field(default_factory=VerilogOptions)
    sim: SimOptions = field(default_factory=lambda: SimOptions(**_SIM_DEFAULTS))
    traffic: TrafficOptions = field(default_factory=TrafficOptions)


@dataclass(frozen=True)
class FlowReport(Record):
    """``flow.json``: every stage's report of one flow run, what ``summary.md`` reads.

    ``seconds`` maps stage name to wall time (s); ``argv`` is the ``defslice`` command
    line that reproduces the run; ``nas`` is ``None`` without ``--search``.
    """

    config: str
    nas: NasReport | None
    model: ModelReport
    verilog: VerilogReport
    sim: SimReport
    traffic: TrafficReport
    seconds: dict[str, float]
    argv: list[str]


def preflight(cfg: cfgmod.Config, options: FlowOptions) -> HwParams | None:
    """Refuse, before any stage runs, what would fail minutes later.

    An impossible hardware configuration (:func:`defslice.hw.params.derive`, and
    :class:`~defslice.hw.layer.plan.LayerPlan` for the layer engine), ``--queries`` for the
    layer engine (it computes the whole map), a workload the search cannot model and a
    missing simulator all end here with their fix, so
    nothing is synthesized or trained in vain. Returns the derived hardware parameters
    (``None`` with ``--search``: the slicing is not known yet; the Verilog stage derives
    the chosen one).
    """
    from defslice.sim.stage import choose_simulators
    from defslice.sim.tools import check_simulator

    params = None
    if options.search:
        # The search needs PyTorch and a DAT workload; both are known now.
        from defslice.nas.dat_torch import DatSpec

        DatSpec.from_config(cfg)
    else:
        from defslice.hw.params import derive

        params = derive(cfg)
    if cfg.hw.engine == "layer":
        from defslice.hw.layer.plan import LayerPlan

        if options.sim.queries is not None:
            raise ConfigError("--queries", options.sim.queries, "unset for hw.engine = "
                              "'layer' (the layer engine computes every pixel of the map)")
        if params is not None:
            LayerPlan.from_config(cfg)
    for simulator in choose_simulators(cfg, options.sim.simulator)[0]:
        check_simulator(simulator)
    return params


class _Progress:
    """Runs the stages one by one: progress lines, wall times, ``FAILED.md``."""

    def __init__(self, out: Path, names: list[str]) -> None:
        self.out, self.names = out, names
        self.seconds: dict[str, float] = {}

    def step(self, name: str, fn: Callable[[], T]) -> T:
        i, n, title = self.names.index(name) + 1, len(self.names), STAGES[name]
        print(f"[{i}/{n}] {title} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:
            (self.out / "FAILED.md").write_text(
                f"# defslice flow failed\n\nStage `{name}` ({title}) failed:\n\n"
                f"    {exc}\n\nOutputs of earlier stages are in this folder; no summary "
                "was written.\n")
            raise
        self.seconds[name] = time.perf_counter() - t0
        print(f"[{i}/{n}] {title}: done in {self.seconds[name]:.1f} s", flush=True)
        return result


def _simulate(cfg: cfgmod.Config, out: Path, options: SimOptions,
              verilog: VerilogReport) -> SimReport:
    from defslice.sim.stage import run as sim_run

    report = sim_run(cfg, out, replace(options, verilog=verilog.verilog))
    if not report.passed:
        raise DefsliceError(report.failure_message())
    if report.verilog_sha256 != verilog.verilog_sha256:
        raise DefsliceError(f"the simulated Verilog (SHA-256 {report.verilog_sha256}) is "
                            f"not the generated one ({verilog.verilog_sha256})")
    return report


def run(cfg: cfgmod.Config, out: Path, options: FlowOptions,
        argv: list[str] | None = None) -> FlowReport:
    """Run every stage on ``cfg`` into ``out``; returns the reports (also in
    ``out/flow.json``) after writing ``out/summary.md``. ``argv`` is the command line
    quoted in the summary."""
    from defslice.hw.stage import run as verilog_run
    from defslice.model.stage import run as model_run
    from defslice.model.traffic_stage import run as traffic_run
    from defslice.nas.stage import run as nas_run
    from defslice.summary import write_summary

    params = preflight(cfg, options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.md", "FAILED.md"):
        (out / stale).unlink(missing_ok=True)
    cfgmod.dump(cfg, out / "config.toml")
    progress = _Progress(out, [n for n in STAGES if n != "nas" or options.search])
    nas = None
    if options.search:
        nas = progress.step("nas", lambda: nas_run(cfg, out / "nas", options.nas))
        cfg = nas.apply(cfg)
    model = progress.step("model", lambda: model_run(cfg, out / "model", options.model))
    verilog = progress.step("verilog", lambda: verilog_run(cfg, out / "verilog",
                                                            options.verilog, params))
    if verilog.board is not None and not verilog.board.fits:
        # all but the board tree is written; the flow goes on and summary.md says so
        print(f"flow: {verilog.board.refusal(cfg.name)}", flush=True)
    sim = progress.step("sim", lambda: _simulate(cfg, out / "sim", options.sim, verilog))
    traffic = progress.step("traffic", lambda: traffic_run(cfg, out / "traffic",
                                                           options.traffic))
    cfgmod.dump(cfg, out / "chosen.toml")
    report = FlowReport(config=cfg.name, nas=nas, model=model, verilog=verilog, sim=sim,
                        traffic=traffic, seconds=progress.seconds, argv=argv or [])
    report.save(out / "flow.json")
    print(f"flow: wrote {write_summary(cfg, out, report)}")
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice flow``: the stages' own flags, declared on their options."""
    add_config_arguments(parser)
    add_out_argument(parser, "out/flow")
    add_options(parser, FlowOptions)
    add_options(parser, SimOptions, only=_SIM_FLAGS, defaults=_SIM_DEFAULTS)
    add_options(parser, ModelOptions)
    add_options(parser, VerilogOptions, only=_VERILOG_FLAGS)


def options_of(args: argparse.Namespace) -> FlowOptions:
    """The flow's options from its parsed flags (``--seed`` seeds the model's workload and
    the simulation's stimulus alike)."""
    return FlowOptions(search=args.search, model=options_from_args(ModelOptions, args),
                       verilog=options_from_args(VerilogOptions, args),
                       sim=options_from_args(SimOptions, args))


def command_line(args: argparse.Namespace, options: FlowOptions) -> list[str]:
    """The ``defslice flow`` arguments that reproduce this run."""
    return ["flow", *config_argv(args), "--out", os.fspath(args.out),
            *options_argv(options), *options_argv(options.sim, _SIM_FLAGS, _SIM_DEFAULTS),
            *options_argv(options.model), *options_argv(options.verilog, _VERILOG_FLAGS)]


def main(args: argparse.Namespace) -> int:
    """Run the flow on the parsed arguments; exit status 0."""
    options = options_of(args)
    run(config_from_args(args), args.out, options, command_line(args, options))
    return 0
