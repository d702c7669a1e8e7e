"""``defslice verilog``: the Verilog stage (:mod:`defslice.hw.stage`) on the command line.

Writes ``defslice_top.v``, ``verilog.json``, ``config.toml``, the Vivado build tree
``xilinx/`` with ``board.json`` and ``reports/`` into ``--out DIR``; ``--no-reports`` skips
the two slow reports (minutes), ``--no-xilinx`` the build tree, ``--no-lint`` the Verilator
lint; ``--board-memory`` picks the board tree's memory. A memory image larger than that
memory writes no tree and ends in exit status 2 after everything else is written.
"""

from __future__ import annotations

import argparse

from defslice.cliargs import add_stage_arguments, stage_inputs
from defslice.hw.stage import VerilogOptions

__all__ = ["configure", "main"]


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice verilog``."""
    add_stage_arguments(parser, VerilogOptions, "out/verilog")


def main(args: argparse.Namespace) -> int:
    """Run the stage on the parsed arguments; exit status 0, or a
    :class:`~defslice.hw.board.BoardMemoryError` (status 2) when the board tree was
    refused."""
    from defslice.hw.board import BoardMemoryError
    from defslice.hw.stage import run

    report = run(*stage_inputs(args, VerilogOptions))
    if report.board is not None and not report.board.fits:
        raise BoardMemoryError(report.board.refusal(report.config))
    return 0
