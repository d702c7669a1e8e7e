"""The Verilog stage: Verilog, Vivado build tree and resource/timing reports.

:func:`run` writes into ``out``:

* ``defslice_top.v`` -- the accelerator (ports in ``docs/hw.md``), linted with Verilator;
* ``verilog.json`` -- the :class:`VerilogReport`, with the SHA-256 of ``defslice_top.v``;
* ``config.toml`` -- the configuration it was generated from;
* ``xilinx/`` -- an amaranth-boards Vivado build tree (not built) of the board wrapper
  for ``hw.board`` (:func:`defslice.hw.board.write_board_tree`), and ``board.json``, the
  memory it uses (:class:`defslice.hw.board.BoardMemory`, also in the report); a memory
  image larger than that memory writes no tree (the command line then exits with status 2
  after everything else is written);
* ``reports/xilinx_utilization.json`` and ``.md`` -- ``synth_xilinx -family xc7`` counts;
* ``reports/ecp5_timing.json`` and ``.md`` -- ECP5 place and route with Fmax, of the
  configuration itself or, for a layer engine too large for the LFE5U-85F, of the variant
  :func:`defslice.hw.layer.resources.ecp5_variant` derives (its Verilog and configuration
  in ``ecp5/``; the report names it and its differences); nextpnr gets
  ``--ecp5-minutes`` and its log is ``reports/ecp5_pnr.log``, written as it runs; when
  routing does not finish, the report holds nextpnr's estimate after placement, labelled
  as such (:class:`~defslice.hw.reports.Ecp5Timing` ``routed``).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defslice import config as cfgmod
from defslice.cliargs import option, require
from defslice.config import Config
from defslice.errors import ConfigError
from defslice.hw.board import BoardMemory
from defslice.hw.reports import (
    ECP5_MINUTES,
    MINUTES_ALLOWED,
    Ecp5Timing,
    XilinxUtilization,
    critical_path_text,
    minutes_ok,
)
from defslice.records import Record, omitted, sha256_of
from defslice.reporting import markdown_table

if TYPE_CHECKING:
    from defslice.hw.params import HwParams

__all__ = ["BOARDS", "VerilogOptions", "VerilogReport", "ecp5_configuration", "run",
           "write_vivado_tree"]

#: ``hw.board`` -> (amaranth_boards module, platform class).
BOARDS = {
    "arty_a7_100": ("amaranth_boards.arty_a7", "ArtyA7_100Platform"),
    "arty_a7_35": ("amaranth_boards.arty_a7", "ArtyA7_35Platform"),
}


@dataclass(frozen=True)
class VerilogOptions:
    """What the Verilog stage produces besides ``defslice_top.v``."""

    reports: bool = option(True, "skip the yosys/nextpnr resource and timing reports (slow)",
                           negate=True)
    xilinx: bool = option(True, "skip the Vivado build tree", negate=True)
    lint: bool = option(True, "skip the Verilator lint", negate=True)
    ecp5: bool = option(True, "skip the ECP5 place and route (nextpnr: minutes for the "
                        "sampling engine, over 30 min for the layer engine on dat56)",
                        negate=True)
    ecp5_minutes: float = option(ECP5_MINUTES, "time budget of the ECP5 place and route "
                                 "(min); nextpnr is stopped after it and the report keeps "
                                 "its estimate after placement, labelled as such",
                                 metavar="MIN")
    board_memory: str = option("bram", "memory of the board tree: on-chip block RAM "
                               "(refused when the image does not fit) or the board's DDR3 "
                               "(LiteDRAM)", choices=("bram", "ddr3"))

    def __post_init__(self) -> None:
        require(minutes_ok(self.ecp5_minutes), VerilogOptions, "ecp5_minutes",
                self.ecp5_minutes, MINUTES_ALLOWED)


@dataclass(frozen=True)
class VerilogReport(Record):
    """What the Verilog stage wrote (``verilog.json``).

    Members
    -------
    config : str
    verilog : Path
        The generated ``defslice_top.v``.
    verilog_sha256 : str
        SHA-256 of that file: the simulation stage records the hash of the file it ran.
    linted : bool
        Verilator ``--lint-only -Wall`` passed (false: not run).
    xilinx_tree : Path or None
        The Vivado build tree, when written.
    utilization, timing
        The resource and timing reports, when run.
    generate_seconds : float
        Wall time of elaboration and Verilog export (s).
    board : BoardMemory or None
        The board tree's memory and whether the memory image fits it (``None``: no tree
        asked for); a tree is written only when it fits.
    ecp5_note : str or None
        Why ``timing`` is missing although reports were asked for (``--no-ecp5``, or no
        variant of a layer engine fits the LFE5U-85F).
    """

    config: str
    verilog: Path
    verilog_sha256: str
    linted: bool
    xilinx_tree: Path | None
    utilization: XilinxUtilization | None
    timing: Ecp5Timing | None
    generate_seconds: float
    board: BoardMemory | None = None
    ecp5_note: str | None = omitted()


def _platform(cfg: Config) -> Any:
    if cfg.hw.board not in BOARDS:
        raise ConfigError("hw.board", cfg.hw.board, "one of " + ", ".join(BOARDS))
    module, cls = BOARDS[cfg.hw.board]
    return getattr(importlib.import_module(module), cls)()


def write_vivado_tree(params: HwParams, out_dir: Path, memory: str = "bram") -> BoardMemory:
    """Write the board tree on ``memory`` into ``out_dir`` when the memory image fits;
    returns the decision."""
    from defslice.hw.board import write_board_tree

    return write_board_tree(params.cfg, out_dir, _platform(params.cfg), memory)


def _step(msg: str) -> float:
    print(f"defslice verilog: {msg}", flush=True)
    return time.perf_counter()


def _utilization(cfg: Config, params: HwParams, vpath: Path, out: Path) -> XilinxUtilization:
    from defslice.hw.reports import xilinx_utilization

    t0 = _step(f"synth_xilinx -family xc7 ({cfg.hw.part})")
    util = dataclasses.replace(xilinx_utilization(vpath, cfg.hw.part),
                               seconds=round(time.perf_counter() - t0, 1), config=cfg.name,
                               buffer_bits=params.buffer_bits)
    util.save(out / "xilinx_utilization.json")
    keys = XilinxUtilization.TABLE
    (out / "xilinx_utilization.md").write_text(
        f"# Xilinx 7-series utilization: {cfg.name} ({util.tool})\n\n"
        + markdown_table(keys, [[getattr(util, k) for k in keys]]) + "\n")
    return util


def ecp5_configuration(cfg: Config) -> tuple[Config, tuple[str, ...], bool]:
    """The configuration the ECP5 report is made of, its differences from ``cfg`` and
    whether it fits the LFE5U-85F by estimate: ``cfg`` itself for the sampling engine,
    :func:`~defslice.hw.layer.resources.ecp5_variant` for the layer engine."""
    if cfg.hw.engine != "layer":
        return cfg, (), True
    from defslice.hw.layer.resources import ecp5_variant

    return ecp5_variant(cfg)


def _timing(cfg: Config, vpath: Path, out: Path, minutes: float) -> Ecp5Timing | str:
    """The ECP5 report of ``cfg`` (``vpath``) or of its variant (generated into
    ``out/ecp5``), nextpnr stopped after ``minutes``; a sentence instead when no variant
    fits."""
    from defslice.hw import generate_verilog
    from defslice.hw.reports import ecp5_timing

    variant, changes, fits = ecp5_configuration(cfg)
    if not fits:
        return (f"not run: {cfg.name} does not fit the LFE5U-85F by estimate, even with "
                f"{', '.join(changes)}")
    if changes:
        _step(f"ECP5 variant {variant.name} ({', '.join(changes)}) in {out / 'ecp5'}")
        vpath = generate_verilog(variant, out / "ecp5")
        cfgmod.dump(variant, out / "ecp5" / "config.toml")
    reports = out / "reports"
    log = reports / "ecp5_pnr.log"
    t0 = _step(f"synth_ecp5 + nextpnr-ecp5 (place and route) of {variant.name}; nextpnr "
               f"stopped after {minutes:g} min, its log: {log}")
    timing = dataclasses.replace(
        ecp5_timing(vpath, variant.hw.clock_mhz, log=log, minutes=minutes),
        seconds=round(time.perf_counter() - t0, 1), config=variant.name, changes=changes)
    timing.save(reports / "ecp5_timing.json")
    (reports / "ecp5_timing.md").write_text(_timing_markdown(cfg, timing, vpath.name))
    return timing


def _timing_markdown(cfg: Config, timing: Ecp5Timing, verilog: str) -> str:
    """``ecp5_timing.md``: the placed configuration, Fmax against the target, and either
    the critical path or why routing did not finish."""
    what = (f"\nConfiguration `{timing.config}`: `{cfg.name}` with "
            f"{', '.join(timing.changes)}, its smallest engine (`{cfg.name}` does not fit "
            "the LFE5U-85F; "
            "`ecp5/config.toml`).\n" if timing.changes else "")
    fmax = "n/a" if timing.fmax_mhz is None else timing.fmax_mhz
    if not timing.routed:
        fmax = f"{fmax} ({timing.fmax_note})"
        text = (f"Not routed: {timing.stopped}. The Fmax column is nextpnr's estimate "
                "after placement, not a routed Fmax; its log: `ecp5_pnr.log`.")
    else:
        text = critical_path_text(timing.critical_path, verilog)
    return (f"# ECP5 timing: {timing.config}\n{what}\n" + markdown_table(
        ("device", "target MHz", "Fmax MHz", "met"),
        [[timing.device, timing.target_mhz, fmax, timing.met]]) + "\n"
        + (f"\n{text}\n" if text else ""))


def run(cfg: Config, out: Path, options: VerilogOptions,
        params: HwParams | None = None) -> VerilogReport:
    """Generate ``cfg``'s accelerator into ``out`` with what ``options`` asks for.

    ``params`` is ``derive(cfg)`` when the caller already has it (the flow checks the
    configuration before any stage runs); otherwise it is derived here, raising
    :class:`~defslice.errors.ConfigError` before anything is written.
    """
    from defslice.hw import generate_verilog
    from defslice.hw.params import derive

    if params is None:
        params = derive(cfg)
    elif params.cfg != cfg:
        raise ValueError("params were derived from another configuration")
    out = Path(out)
    t0 = _step(f"generating {cfg.name} into {out}")
    vpath = generate_verilog(params, out)
    t_gen = time.perf_counter() - t0
    cfgmod.dump(cfg, out / "config.toml")
    if options.lint:
        from defslice.hw.lint import lint_verilog

        _step("verilator --lint-only -Wall")
        lint_verilog(vpath)
    tree = board = None
    if options.xilinx:
        _step(f"Vivado build tree for {cfg.hw.board} in {out / 'xilinx'}")
        board = write_vivado_tree(params, out / "xilinx", options.board_memory)
        board.save(out / "board.json")
        tree = out / "xilinx" if board.fits else None
        if not board.fits:        # said now, not only after the reports' long steps
            _step(f"{board.refusal(cfg.name)}; the other outputs are still written")
    util = timing = note = None
    if options.reports:
        util = _utilization(cfg, params, vpath, out / "reports")
        result = (_timing(cfg, vpath, out, options.ecp5_minutes) if options.ecp5
                  else "skipped (`--no-ecp5`)")
        timing, note = (None, result) if isinstance(result, str) else (result, None)
        fmax = f"{timing.fmax_text(2)} ({timing.config})" if timing else note
        print(f"defslice verilog: LUT {util.LUT}  FF {util.FF}  RAMB18 {util.RAMB18}  "
              f"RAMB36 {util.RAMB36}  DSP {util.DSP48E1}  ECP5 Fmax {fmax}")
    report = VerilogReport(config=cfg.name, verilog=vpath, verilog_sha256=sha256_of(vpath),
                           linted=options.lint, xilinx_tree=tree, utilization=util,
                           timing=timing, generate_seconds=round(t_gen, 3), board=board,
                           ecp5_note=note)
    report.save(out / "verilog.json")
    _step(f"done: {vpath} (SHA-256 {report.verilog_sha256[:16]}...)")
    return report
