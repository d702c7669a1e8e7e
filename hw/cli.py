"""``defslice verilog``: the Verilog stage (:mod:`defslice.hw.stage`) on the command line.

Writes ``defslice_top.v``, ``verilog.json``, ``config.toml``, the Vivado build tree
``xilinx/`` and ``reports/`` into ``--out DIR``; ``--no-reports`` skips the two slow
reports (minutes), ``--no-xilinx`` the build tree, ``--no-lint`` the Verilator lint.
"""

from __future__ import annotations

import argparse

from defslice.cliargs import (
    add_config_arguments,
    add_options,
    add_out_argument,
    config_from_args,
    options_from_args,
)
from defslice.hw.stage import VerilogOptions

__all__ = ["configure", "main"]


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice verilog``."""
    add_config_arguments(parser)
    add_out_argument(parser, "out/verilog")
    add_options(parser, VerilogOptions)


def main(args: argparse.Namespace) -> int:
    """Run the stage on the parsed arguments; exit status 0."""
    from defslice.hw.stage import run

    run(config_from_args(args), args.out, options_from_args(VerilogOptions, args))
    return 0
