"""``defslice`` command line.

Each subcommand is an adapter module of the stage that owns it, exposing
``configure(parser: argparse.ArgumentParser) -> None`` and
``main(args: argparse.Namespace) -> int``; it turns arguments into a
:class:`~defslice.config.Config` and the stage's options (:mod:`defslice.cliargs`) and
calls the stage. This file only dispatches, so start-up imports only the stage that is
asked for.

Every error a user can cause ends as one line on stderr naming what to fix, and exit
status 2 (bad input) or 3 (a tool failed); never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``defslice`` parser; only subcommand ``only`` (default: every one) gets its
    flags."""
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
    """
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    return int(importlib.import_module(args._module).main(args))


def main(argv: list[str] | None = None) -> int:
    """``defslice ARGV``: run a subcommand; returns the exit status."""
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
