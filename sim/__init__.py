"""cocotb system benches of the generated Verilog against the golden model.

:func:`run_simulation` is the entry point (``defslice sim`` and the one-command flow);
the bench itself is :mod:`defslice.sim.tb`, run by :mod:`defslice.sim.runner`.
"""

from __future__ import annotations

__all__ = ["run_simulation"]


def __getattr__(name: str):
    # Imported lazily: the cocotb bench imports this package inside the simulator, and
    # the runner's imports are not needed there.
    if name == "run_simulation":
        from defslice.sim.api import run_simulation

        return run_simulation
    raise AttributeError(name)
