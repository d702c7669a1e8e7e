"""``defslice verilog``: Verilog, Vivado build tree and resource/timing reports.

Writes into ``--out DIR``:

* ``defslice_top.v`` -- the accelerator (ports in ``docs/hw.md``), linted with Verilator;
* ``config.toml`` -- the configuration it was generated from;
* ``xilinx/`` -- an amaranth-boards Vivado build tree (not built) of the board wrapper
  for ``hw.board`` (:func:`defslice.hw.board.write_board_tree`), and ``board.json``, the
  memory it uses (:class:`defslice.hw.board.BoardMemory`); a memory image larger than
  that memory writes no tree and ends in exit status 2 after everything else is written;
* ``reports/xilinx_utilization.json`` and ``.md`` -- ``synth_xilinx -family xc7`` counts;
* ``reports/ecp5_timing.json`` and ``.md`` -- ECP5 place and route with Fmax.

``--no-reports`` skips the two slow reports (minutes), ``--no-xilinx`` the build tree.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from defslice import config as cfgmod
from defslice.cli import add_config_arguments, config_from_args
from defslice.config import Config
from defslice.errors import ConfigError
from defslice.reporting import markdown_table, write_json

if TYPE_CHECKING:
    from defslice.hw.board import BoardMemory

__all__ = ["BOARDS", "configure", "run", "write_vivado_tree"]

#: ``hw.board`` -> (amaranth_boards module, platform class).
BOARDS = {
    "arty_a7_100": ("amaranth_boards.arty_a7", "ArtyA7_100Platform"),
    "arty_a7_35": ("amaranth_boards.arty_a7", "ArtyA7_35Platform"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_preset="dat56")
    parser.add_argument("--out", type=Path, default=Path("out/verilog"),
                        help="output folder (default: out/verilog)")
    parser.add_argument("--no-reports", action="store_true",
                        help="skip the yosys/nextpnr resource and timing reports (slow)")
    parser.add_argument("--no-xilinx", action="store_true",
                        help="skip the Vivado build tree")
    parser.add_argument("--no-lint", action="store_true", help="skip the Verilator lint")
    parser.add_argument("--board-memory", choices=("bram", "ddr3"), default="bram",
                        help="memory of the board tree: on-chip block RAM (default; refused "
                             "when the image does not fit) or the board's DDR3 (LiteDRAM)")


def _platform(cfg: Config) -> object:
    import importlib

    if cfg.hw.board not in BOARDS:
        raise ConfigError("hw.board", cfg.hw.board, "one of " + ", ".join(BOARDS))
    module, cls = BOARDS[cfg.hw.board]
    return getattr(importlib.import_module(module), cls)()


def write_vivado_tree(cfg: Config, out_dir: Path, memory: str = "bram") -> BoardMemory:
    """Write the board tree into ``out_dir`` when the memory image fits; the decision."""
    from defslice.hw.board import write_board_tree

    return write_board_tree(cfg, out_dir, _platform(cfg), memory)


def _step(msg: str) -> float:
    print(f"defslice verilog: {msg}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    from defslice.hw import generate_verilog
    from defslice.hw.params import derive

    cfg = config_from_args(args)
    p = derive(cfg)                       # ConfigError before anything is written
    board: BoardMemory | None = None
    out: Path = args.out
    _step(f"generating {cfg.name} into {out}")
    vpath = generate_verilog(cfg, out)
    cfgmod.dump(cfg, out / "config.toml")
    if not args.no_lint:
        from defslice.hw.lint import lint_verilog

        _step("verilator --lint-only -Wall")
        lint_verilog(vpath)
    if not args.no_xilinx:
        _step(f"Vivado build tree for {cfg.hw.board} in {out / 'xilinx'}")
        board = write_vivado_tree(cfg, out / "xilinx", args.board_memory)
        write_json(out / "board.json", board.to_json())
    if not args.no_reports:
        from defslice.hw.reports import critical_path_text, ecp5_timing, xilinx_utilization

        t0 = _step(f"synth_xilinx -family xc7 ({cfg.hw.part})")
        util = xilinx_utilization(vpath, cfg.hw.part)
        util["seconds"] = round(time.perf_counter() - t0, 1)
        util["config"] = cfg.name
        util["buffer_bits"] = p.buffer_bits
        write_json(out / "reports" / "xilinx_utilization.json", util)
        keys = ("LUT", "FF", "RAMB18", "RAMB36", "DSP48E1", "LUTRAM_SRL")
        (out / "reports" / "xilinx_utilization.md").write_text(
            f"# Xilinx 7-series utilization: {cfg.name} ({util['tool']})\n\n"
            + markdown_table(keys, [[util[k] for k in keys]]) + "\n")
        t0 = _step("synth_ecp5 + nextpnr-ecp5 (place and route)")
        timing = ecp5_timing(vpath, cfg.hw.clock_mhz)
        timing["seconds"] = round(time.perf_counter() - t0, 1)
        timing["config"] = cfg.name
        write_json(out / "reports" / "ecp5_timing.json", timing)
        path_text = critical_path_text(timing.get("critical_path"), "defslice_top.v")
        (out / "reports" / "ecp5_timing.md").write_text(
            f"# ECP5 timing: {cfg.name}\n\n" + markdown_table(
                ("device", "target MHz", "Fmax MHz", "met"),
                [[timing["device"], timing["target_mhz"], timing["fmax_mhz"],
                  timing["met"]]]) + "\n" + (f"\n{path_text}\n" if path_text else ""))
        print(f"defslice verilog: LUT {util['LUT']}  FF {util['FF']}  RAMB18 "
              f"{util['RAMB18']}  RAMB36 {util['RAMB36']}  DSP {util['DSP48E1']}  "
              f"ECP5 Fmax {timing['fmax_mhz']} MHz")
    _step(f"done: {vpath}")
    if board is not None and not board.fits:
        from defslice.hw.board import BoardMemoryError

        raise BoardMemoryError(board.refusal(cfg.name))
    return 0
