"""Throughput of the generated accelerator, measured in the Amaranth simulator.

:func:`measure` runs one random workload of a configuration on ``defslice_top`` with an
always-ready memory (no back-pressure: the numbers describe the design, not a DRAM),
checks the outputs bit for bit against the golden model, and reports cycles, busy and
stall cycles (the STATUS counters), the cycles in which compute held a slice, and the
derived rates. The target is one bilinear sample of ``lanes`` channels per cycle while
computing: ``samples_per_compute_cycle`` close to 1.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from defslice.config import Config
from defslice.errors import DefsliceError

if TYPE_CHECKING:
    from defslice.hw.top import DefsliceTop

__all__ = ["measure"]


def measure(cfg: Config, seed: int = 0) -> dict:
    """Simulate one run of ``cfg`` and return its throughput figures.

    Returns
    -------
    dict
        ``cycles``, ``busy_cycles`` (a sample issued), ``stall_cycles`` (compute waited
        for a window or queries), ``compute_cycles`` (a slice held by compute),
        ``samples``, ``read_beats``, ``write_beats``, ``read_bursts``, ``write_bursts``,
        ``samples_per_compute_cycle``, ``cycles_per_sample``, ``read_beats_per_cycle``,
        ``bit_exact`` (always true: a mismatch raises), ``sim_seconds``.
    """
    from amaranth.sim import Simulator, SimulatorContext

    import defslice.hw.simulate as hwsim
    from defslice.model.fixed import quantize_inputs
    from defslice.model.layout import SlicedProgram
    from defslice.model.workload import make_workload

    wl = make_workload(cfg, seed)
    prog = SlicedProgram(cfg, quantize_inputs(cfg.numerics, *wl.args), wl.reference_points)
    computing = [0]

    class _Observed(Simulator):
        def __init__(self, dut: DefsliceTop) -> None:
            super().__init__(dut)

            async def observe(ctx: SimulatorContext) -> None:
                async for _clk, _rst, busy in ctx.tick().sample(dut.computing):
                    computing[0] += busy

            self.add_process(observe)

    t0 = time.perf_counter()
    res = hwsim.run_program(cfg, prog, seed=None, simulator=_Observed)
    seconds = time.perf_counter() - t0
    if not np.array_equal(res.outputs, prog.expected_outputs()):
        raise DefsliceError(f"{cfg.name}: simulated outputs differ from the golden model")
    c = res.counters
    w = cfg.workload
    samples = prog.inputs.x.shape[1] * w.sample_heads * w.num_levels * w.points \
        * (w.sample_channels // cfg.hw.lanes)
    return {
        "config": cfg.name, "lanes": cfg.hw.lanes, "buffering": cfg.hw.buffering,
        "cycles": c["CYCLES"], "busy_cycles": c["BUSY_CYCLES"],
        "stall_cycles": c["STALL_CYCLES"], "compute_cycles": computing[0],
        "samples": samples, "read_beats": c["READ_BEATS"], "write_beats": c["WRITE_BEATS"],
        "read_bursts": c["READ_BURSTS"], "write_bursts": c["WRITE_BURSTS"],
        "samples_per_compute_cycle": round(samples / max(computing[0], 1), 4),
        "cycles_per_sample": round(c["CYCLES"] / samples, 3),
        "read_beats_per_cycle": round(c["READ_BEATS"] / c["CYCLES"], 4),
        "bit_exact": True, "sim_seconds": round(seconds, 1),
    }
