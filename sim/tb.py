"""cocotb bench of ``defslice_top``: a host on AXI4-Lite and a DRAM on AXI4.

Run through :mod:`defslice.sim.runner`, which hands over a :class:`~defslice.sim.job.Job`.
Everything engine specific comes from the run's program
(:func:`defslice.sim.program.make_program`, by ``hw.engine``). The bench

1. checks, before the first clock edge, that no handshake output (valid, ready, irq) of
   the design is X (the Icarus time-0 trap of Amaranth's Verilog, amaranth issue 1629, is
   handled by the runner; this check proves it stays handled). Payloads (addresses, data)
   may legally be X while their valid is low; they are only recorded;
2. loads a cocotbext-axi ``AxiRam`` from :meth:`BenchProgram.memory_image`, fills the
   output region with a marker so unwritten outputs show up, and attaches random pause
   generators to every channel of the RAM and of the ``AxiLiteMaster`` when asked (one
   task advances them all at each clock edge; the clock itself is the simulator's, not a
   Python task);
3. optionally starts a run and resets the design in the middle of it;
4. programs the registers (:meth:`BenchProgram.registers`, offsets from the engine's
   map in :mod:`defslice.hw.regmap`), sets ``CTRL.start``, polls ``STATUS.done``, reads
   the engine's performance counters and the outputs;
5. writes every observation to ``job.result_path``; the comparison with the model is
   done by the runner (:mod:`defslice.sim.check`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam
from cocotbext.axi.stream import StreamPause

from defslice.sim.job import Job, Observation
from defslice.sim.monitor import AxiMonitor
from defslice.sim.program import make_program

CLOCK_NS = 10
OUT_MARKER = 0xA5
STATUS_BUSY, STATUS_DONE = 1, 2
#: The bit the ``input-bit`` fault flips in its byte (bit 14 of a 16-bit word).
FAULT_MASK = 0x40
#: Output ports that must never be X: handshakes and the interrupt.
_CONTROL_SUFFIXES = ("valid", "ready", "irq")


def _pauses(rng: random.Random, prob: float) -> Iterator[bool]:
    """Pause in a cycle with probability ``prob``."""
    while True:
        yield rng.random() < prob


def _latency(rng: random.Random, prob: float) -> Iterator[bool]:
    """Read data latency: now and then a stall of 1..24 cycles, else short pauses."""
    while True:
        if rng.random() < prob / 8:
            for _ in range(rng.randint(1, 24)):
                yield True
        yield rng.random() < prob


async def _drive_pauses(clock: SimHandleBase,
                        pauses: list[tuple[StreamPause, Iterator[bool]]]) -> None:
    """Set every channel's ``pause`` from its generator, then again at each rising edge.

    One task for all channels: what cocotbext-axi's ``set_pause_generator`` does with one
    task per channel, with the same draws in the same order (the channels' generators share
    one random stream and are advanced in list order every cycle)."""
    edge = RisingEdge(clock)
    while True:
        for channel, generator in pauses:
            channel.pause = next(generator)
        await edge


def _outputs_of(handles: list[tuple[str, SimHandleBase]]) -> tuple[str, ...]:
    return tuple(name for name, h in handles if not h.value.is_resolvable)


class Bench:
    """The design with its DRAM, host port and monitor."""

    def __init__(self, dut: SimHandleBase, job: Job) -> None:
        self.dut, self.job = dut, job
        self.cfg = job.config
        self.program = make_program(self.cfg, job.seed, job.queries)
        self.regmap = self.program.regmap
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                          size=self.program.dram_bytes)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        for log in (self.ram.write_if.log, self.ram.read_if.log, self.axil.write_if.log,
                    self.axil.read_if.log):
            log.setLevel(logging.WARNING)
        self.monitor = AxiMonitor(dut, dut.clk, dut.rst, self.program.bus_bytes)
        if job.backpressure > 0:
            rng = random.Random(job.seed * 7919 + 17)
            p = job.backpressure
            ram_r, ram_w = self.ram.read_if, self.ram.write_if
            axil_r, axil_w = self.axil.read_if, self.axil.write_if
            pauses = [(ram_r.ar_channel, _pauses(rng, p)), (ram_r.r_channel, _latency(rng, p))]
            pauses += [(ch, _pauses(rng, p)) for ch in (
                ram_w.aw_channel, ram_w.w_channel, ram_w.b_channel, axil_w.aw_channel,
                axil_w.w_channel, axil_w.b_channel, axil_r.ar_channel, axil_r.r_channel)]
            cocotb.start_soon(_drive_pauses(dut.clk, pauses))

    def output_handles(self, control: bool = True) -> list[tuple[str, SimHandleBase]]:
        """Output ports of the design (name, handle), from the generator's signature: the
        handshake and interrupt signals (``control``), which must never be X, or the
        payloads, which may be X while their valid is low."""
        from amaranth.lib.wiring import Out

        from defslice.hw import top_signature

        names = [n for n, m in top_signature(self.cfg).members.items()
                 if m.flow == Out and n.endswith(_CONTROL_SUFFIXES) == control]
        return [(n, getattr(self.dut, n)) for n in names]

    def load_memory(self) -> None:
        for base, data in self.program.memory_image().items():
            self.ram.write(base, data)
        if self.job.fault == "input-bit":
            site = self.program.fault_site()
            self.ram.write(site, bytes([self.ram.read(site, 1)[0] ^ FAULT_MASK]))
        self.clear_outputs()

    def clear_outputs(self) -> None:
        base, nbytes = self.program.output_region
        self.ram.write(base, bytes([OUT_MARKER]) * nbytes)

    async def reset(self, cycles: int = 4) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def write_reg(self, name: str, value: int) -> None:
        await self.axil.write_dword(self.regmap.offset(name), value & 0xFFFFFFFF)

    async def read_reg(self, name: str) -> int:
        return await self.axil.read_dword(self.regmap.offset(name))

    async def start(self) -> None:
        for name, value in self.program.registers().items():
            await self.write_reg(name, value)
        await self.write_reg("CTRL", 1)

    async def wait_done(self) -> tuple[bool, int]:
        """Poll ``STATUS`` until done; returns (done, cycles waited)."""
        t0 = get_sim_time("ns")
        limit = self.job.timeout_cycles
        while True:
            status = await self.read_reg("STATUS")
            waited = int((get_sim_time("ns") - t0) // CLOCK_NS)
            if status & STATUS_DONE:
                return True, waited
            if waited > limit:
                return False, waited
            await ClockCycles(self.dut.clk, 8)

    def read_outputs(self) -> list[list[int]]:
        base, nbytes = self.program.output_region
        return self.program.unpack_outputs(self.ram.read(base, nbytes)).tolist()

    async def reset_mid_run(self) -> dict[str, Any]:
        """Start a run, reset the design half way through its reads, clear what was seen;
        returns the beats seen before the reset and ``STATUS`` right after it."""
        await self.start()
        expected_reads = self.program.read_beats()
        cycles = 0
        while self.monitor.read_beats < expected_reads // 2 \
                and cycles < self.job.timeout_cycles:
            await ClockCycles(self.dut.clk, 4)
            cycles += 4
        seen = {"reset_after_read_beats": self.monitor.read_beats,
                "reset_after_write_beats": self.monitor.write_beats}
        await self.reset(cycles=6)
        seen["status_after_reset"] = await self.read_reg("STATUS")
        self.monitor.clear()
        self.clear_outputs()
        return seen


@cocotb.test()
async def run_program(dut: SimHandleBase) -> None:
    """Run the job's program once (after an aborted first run when asked)."""
    job = Job.from_env()
    bench = Bench(dut, job)

    # 1. Time 0, before any clock edge: every output must already be 0 or 1.
    dut.rst.value = 1
    dut.clk.value = 0
    await Timer(1, "ns")
    time0 = _outputs_of(bench.output_handles(control=True))
    time0_payload = _outputs_of(bench.output_handles(control=False))

    # Toggled by the simulator (GPI), not by a Python task woken twice a cycle; the edges
    # fall at the same times as before, so a seed gives the same run.
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start(start_high=False)
    bench.load_memory()
    await bench.reset()
    bench.monitor.start()
    ident = await bench.read_reg("ID")

    # 2. Optional: a run interrupted by reset in its middle, then a clean run.
    reset = await bench.reset_mid_run() if job.reset_mid_run else {
        "reset_after_read_beats": None, "reset_after_write_beats": None,
        "status_after_reset": None}

    # 3. The run that is checked.
    t_start = get_sim_time("ns")
    await bench.start()
    done, waited = await bench.wait_done()
    irq = int(dut.irq.value) if dut.irq.value.is_resolvable else None
    # Let write responses in flight settle before reading the counters.
    await ClockCycles(dut.clk, 4)
    counters = {name: await bench.read_reg(name) for name in bench.regmap.counters}
    obs = Observation(
        config=bench.cfg.name, seed=job.seed, time0_unresolved=time0,
        time0_unresolved_payload=time0_payload, id=ident, **reset, done=done,
        bench_cycles=waited, irq_at_done=irq, counters=counters,
        status=await bench.read_reg("STATUS"), monitor=bench.monitor.summary(),
        outputs=bench.read_outputs(), sim_time_ns=float(get_sim_time("ns") - t_start))
    obs.save(Path(job.result_path))
    assert done, f"STATUS.done not set within {job.timeout_cycles} cycles"
