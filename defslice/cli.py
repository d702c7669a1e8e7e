"""``defslice`` command line.

Each subcommand lives in the stage that owns it, as a module exposing
``configure(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``; this file only dispatches, so stages stay
independent and start-up imports only the stage that is asked for.

Every error a user can cause ends as one line on stderr naming what to fix, and exit
status 2 (bad input) or 3 (a tool failed); never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from defslice import config as cfgmod
from defslice.errors import ConfigError, DefsliceError, ToolError

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "model": ("defslice.model.cli", "run the golden model on a preset and report errors"),
    "traffic": ("defslice.model.traffic_cli", "compare DRAM traffic of the dataflows"),
    "verilog": ("defslice.hw.cli", "generate Verilog, Vivado tree and resource reports"),
    "sim": ("defslice.sim.cli", "simulate the generated Verilog against the golden model"),
    "nas": ("defslice.nas.cli", "search the slicing strategy (accuracy vs. resources)"),
    "flow": ("defslice.flow", "search -> Verilog -> simulation -> reports, one command"),
    "bench": ("defslice.bench", "measure every stage's performance into reports/bench.json"),
}


def add_config_arguments(parser: argparse.ArgumentParser, default_preset: str = "tiny") -> None:
    """Add the ``--preset`` / ``--config`` pair every stage accepts."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=sorted(cfgmod.PRESETS), default=None,
                       help=f"named configuration (default: {default_preset})")
    group.add_argument("--config", type=Path, default=None, help="configuration TOML file")
    parser.set_defaults(default_preset=default_preset)


def config_from_args(args: argparse.Namespace) -> cfgmod.Config:
    """The :class:`~defslice.config.Config` chosen by ``--preset`` / ``--config``."""
    if getattr(args, "config", None) is not None:
        return cfgmod.load(args.config)
    return cfgmod.preset(args.preset or args.default_preset)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defslice", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            importlib.import_module(module).configure(sp)
        sp.set_defaults(_module=module)
    return parser


def dispatch(argv: list[str]) -> int:
    """Parse ``argv`` and run the subcommand; errors propagate (see :func:`main`).

    Only the chosen stage is imported (Amaranth, torch and cocotb are slow to load).
    Used by :func:`main` and by the one-command flow to run stages in-process.
    """
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(argv)
    except ConfigError as exc:
        print(f"defslice: configuration error: {exc}", file=sys.stderr)
        return 2
    except ToolError as exc:
        print(f"defslice: tool error: {exc}", file=sys.stderr)
        return 3
    except DefsliceError as exc:
        print(f"defslice: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("defslice: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
