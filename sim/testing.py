"""Helpers of the pytest system tests (``tests/test_sim_*.py``).

Each test case simulates in its own folder, ``sim_build/<test name>`` at the repository
root, so a failing case leaves its build, logs, ``sim.json`` and waveform side by side;
:meth:`defslice.sim.report.SimReport.failure_message` says what failed.
``SIM_FULL=1`` selects the longer regression.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["FULL", "build_dir_for"]

#: The longer regression is on (``SIM_FULL=1``).
FULL = os.environ.get("SIM_FULL", "") not in ("", "0")

_ROOT = Path(__file__).resolve().parent.parent


def build_dir_for(test_name: str) -> Path:
    """``sim_build/<test name>`` (characters outside [A-Za-z0-9._-] become ``_``)."""
    return _ROOT / "sim_build" / re.sub(r"[^A-Za-z0-9._-]+", "_", test_name).strip("_")
