"""Helpers of the pytest system tests (``tests/test_sim_*.py``).

Each test case simulates in its own folder, ``sim_build/<test name>`` at the repository
root, so a failing case leaves its build, logs, ``sim.json`` and waveform side by side.
``SIM_FULL=1`` selects the longer regression.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["FULL", "build_dir_for", "failure_message"]

#: The longer regression is on (``SIM_FULL=1``).
FULL = os.environ.get("SIM_FULL", "") not in ("", "0")

_ROOT = Path(__file__).resolve().parent.parent


def build_dir_for(test_name: str) -> Path:
    """``sim_build/<test name>`` (characters outside [A-Za-z0-9._-] become ``_``)."""
    return _ROOT / "sim_build" / re.sub(r"[^A-Za-z0-9._-]+", "_", test_name).strip("_")


def failure_message(report: dict) -> str:
    """One readable message for a failed :func:`defslice.sim.run_simulation` report."""
    lines = [f"simulation of {report['config']} (seed {report['seed']}) failed:"]
    for sim, rep in report["simulators"].items():
        if rep["passed"]:
            continue
        lines.append(f"[{sim}]")
        lines += [f"  {f}" for f in rep["failures"][:8]]
        for m in rep["outputs"]["first_mismatches"][:3]:
            lines.append(f"  query {m['query']} head {m['head']} channel {m['channel']}: "
                         f"expected {m['expected']}, actual {m['actual']}")
        lines.append(f"  waveform: {rep.get('waves') or 'not kept'}; log: {rep['sim_log']}")
    return "\n".join(lines)
