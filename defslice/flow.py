"""``defslice flow``: search -> Verilog -> simulation -> traffic -> ``summary.md``.

Each stage runs in-process through its own subcommand (so the flow does exactly what a
user typing the stage commands would do) and writes into ``OUT/<stage>/``. Progress is
printed per stage. ``summary.md`` is written only when every stage succeeded; a failure
leaves ``OUT/FAILED.md`` naming the stage and the error (and removes a stale summary), so
nothing half-done looks complete.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from defslice import config as cfgmod
from defslice.cli import add_config_arguments, config_from_args, dispatch
from defslice.errors import ConfigError, DefsliceError


@dataclass
class FlowContext:
    cfg: cfgmod.Config
    config_path: Path
    out: Path
    args: argparse.Namespace
    seconds: dict[str, float]


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[FlowContext], None]
    enabled: Callable[[argparse.Namespace], bool] = lambda args: True


def _stage_nas(ctx: FlowContext) -> None:
    out = ctx.out / "nas"
    _run(["nas", "--config", str(ctx.config_path), "--out", str(out)])
    chosen = out / "chosen.toml"
    ctx.cfg = cfgmod.load(chosen)
    ctx.config_path = chosen


def _stage_model(ctx: FlowContext) -> None:
    _run(["model", "--config", str(ctx.config_path), "--out", str(ctx.out / "model"),
          "--seed", str(ctx.args.seed)])


def _stage_verilog(ctx: FlowContext) -> None:
    argv = ["verilog", "--config", str(ctx.config_path), "--out", str(ctx.out / "verilog")]
    if ctx.args.no_reports:
        argv.append("--no-reports")
    from defslice.hw.board import BoardMemoryError

    try:
        _run(argv)
    except BoardMemoryError as exc:   # all but the board tree is written; summary.md says so
        print(f"flow: {exc}", flush=True)


def _stage_sim(ctx: FlowContext) -> None:
    argv = ["sim", "--config", str(ctx.config_path), "--out", str(ctx.out / "sim"),
            "--simulator", ctx.args.simulator, "--seed", str(ctx.args.seed)]
    if ctx.args.queries is not None:
        argv += ["--queries", str(ctx.args.queries)]
    _run(argv)


def _stage_traffic(ctx: FlowContext) -> None:
    _run(["traffic", "--config", str(ctx.config_path), "--out", str(ctx.out / "traffic")])


STAGES: list[Stage] = [
    Stage("nas", "slicing search", _stage_nas, lambda a: a.search),
    Stage("model", "golden model", _stage_model),
    Stage("verilog", "Verilog, Xilinx and ECP5 reports", _stage_verilog),
    Stage("sim", "cocotb simulation against the golden model", _stage_sim),
    Stage("traffic", "DRAM traffic of the dataflows", _stage_traffic),
]


def _run(argv: list[str]) -> None:
    status = dispatch(argv)
    if status != 0:
        raise DefsliceError(f"`defslice {' '.join(argv)}` exited with status {status}")


def _command_line(args: argparse.Namespace) -> list[str]:
    """The ``defslice flow`` arguments that reproduce this run."""
    argv = ["flow"]
    argv += (["--config", str(args.config)] if args.config is not None
             else ["--preset", args.preset or args.default_preset])
    argv += ["--out", str(args.out), "--simulator", args.simulator, "--seed", str(args.seed)]
    if args.queries is not None:
        argv += ["--queries", str(args.queries)]
    argv += [flag for flag, on in (("--search", args.search),
                                    ("--no-reports", args.no_reports)) if on]
    return argv


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_preset="dat56")
    parser.add_argument("--out", type=Path, default=Path("out/flow"),
                        help="output folder (default: out/flow)")
    parser.add_argument("--search", action="store_true",
                        help="run the slicing search first and build its chosen point")
    parser.add_argument("--simulator", choices=["icarus", "verilator", "both"],
                        default="icarus", help="simulator for the sample run")
    parser.add_argument("--queries", type=int, default=None,
                        help="simulate only this many queries of the workload")
    parser.add_argument("--seed", type=int, default=0, help="workload seed")
    parser.add_argument("--no-reports", action="store_true",
                        help="skip the slow synthesis and place-and-route reports")


def preflight(cfg: cfgmod.Config, args: argparse.Namespace) -> None:
    """Refuse, before any stage runs, what would fail minutes later.

    An impossible hardware configuration (:func:`defslice.hw.params.derive`), a workload
    the search cannot model and a missing simulator all end here with their fix, so
    nothing is synthesized or trained in vain. With ``--search`` the slicing is not known
    yet; the Verilog stage checks the chosen one.
    """
    from defslice.sim.tools import check_simulator, simulator_list

    if args.search:
        # The search needs PyTorch and a DAT workload; both are known now.
        from defslice.nas.dat_torch import DatSpec

        DatSpec.from_config(cfg)
    else:
        from defslice.hw.params import derive

        derive(cfg)
    for simulator in simulator_list(args.simulator):
        check_simulator(simulator)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.queries is not None and args.queries < 1:
        raise ConfigError("--queries", args.queries, "an integer >= 1")
    preflight(cfg, args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.md", "FAILED.md"):
        (out / stale).unlink(missing_ok=True)
    cfg_path = out / "config.toml"
    cfgmod.dump(cfg, cfg_path)
    ctx = FlowContext(cfg, cfg_path, out, args, {})
    stages = [s for s in STAGES if s.enabled(args)]
    for i, stage in enumerate(stages, 1):
        print(f"[{i}/{len(stages)}] {stage.title} ...", flush=True)
        t0 = time.perf_counter()
        try:
            stage.run(ctx)
        except Exception as exc:
            (out / "FAILED.md").write_text(
                f"# defslice flow failed\n\nStage `{stage.name}` ({stage.title}) failed:\n\n"
                f"    {exc}\n\nOutputs of earlier stages are in this folder; no summary "
                "was written.\n")
            raise
        ctx.seconds[stage.name] = time.perf_counter() - t0
        print(f"[{i}/{len(stages)}] {stage.title}: done in {ctx.seconds[stage.name]:.1f} s",
              flush=True)
    from defslice.summary import write_summary

    if ctx.config_path != out / "chosen.toml":
        shutil.copy(ctx.config_path, out / "chosen.toml")
    path = write_summary(ctx.cfg, out, ctx.seconds, searched=args.search,
                         argv=_command_line(args))
    print(f"flow: wrote {path}")
    return 0

