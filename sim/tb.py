"""cocotb bench of ``defslice_top``: a host on AXI4-Lite and a DRAM on AXI4.

Run through :mod:`defslice.sim.runner`, which hands over a :class:`~defslice.sim.job.Job`.
The bench

1. checks, before the first clock edge, that no handshake output (valid, ready, irq) of
   the design is X (the Icarus time-0 trap of Amaranth's Verilog, amaranth issue 1629, is
   handled by the runner; this check proves it stays handled). Payloads (addresses, data)
   may legally be X while their valid is low; they are only recorded;
2. loads a cocotbext-axi ``AxiRam`` from :meth:`SlicedProgram.memory_image`, fills the
   output region with a marker so unwritten outputs show up, and attaches random pause
   generators to every channel of the RAM and of the ``AxiLiteMaster`` when asked;
3. optionally starts a run and resets the design in the middle of it;
4. programs the registers (:mod:`defslice.hw.regmap`), sets ``CTRL.start``, polls
   ``STATUS.done``, reads the performance counters and the outputs;
5. writes every observation to ``job.result_path``; the comparison with the model is
   done by the runner (:mod:`defslice.sim.check`).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from defslice.hw.regmap import REGISTERS, offset
from defslice.sim.job import Job
from defslice.sim.monitor import AxiMonitor
from defslice.sim.stimulus import make_stimulus

CLOCK_NS = 10
OUT_MARKER = 0xA5
COUNTERS = ("CYCLES", "BUSY_CYCLES", "STALL_CYCLES", "READ_BEATS", "WRITE_BEATS",
            "READ_BURSTS", "WRITE_BURSTS")
STATUS_BUSY, STATUS_DONE = 1, 2


def _pauses(rng: random.Random, prob: float):
    """Pause in a cycle with probability ``prob``."""
    while True:
        yield rng.random() < prob


def _latency(rng: random.Random, prob: float):
    """Read data latency: now and then a stall of 1..24 cycles, else short pauses."""
    while True:
        if rng.random() < prob / 8:
            for _ in range(rng.randint(1, 24)):
                yield True
        yield rng.random() < prob


def _outputs_of(handles) -> list[str]:
    return [name for name, h in handles if not h.value.is_resolvable]


class Bench:
    """The design with its DRAM, host port and monitor."""

    def __init__(self, dut, job: Job):
        self.dut, self.job = dut, job
        self.cfg = job.config
        self.stim = make_stimulus(self.cfg, job.seed, job.queries)
        self.program = self.stim.program
        self.layout = self.program.layout
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                          size=self.layout.total_bytes)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        for log in (self.ram.write_if.log, self.ram.read_if.log, self.axil.write_if.log,
                    self.axil.read_if.log):
            log.setLevel(logging.WARNING)
        self.monitor = AxiMonitor(dut, dut.clk, dut.rst, self.layout.bus_bytes)
        if job.backpressure > 0:
            rng = random.Random(job.seed * 7919 + 17)
            p = job.backpressure
            ram_r, ram_w = self.ram.read_if, self.ram.write_if
            ram_r.ar_channel.set_pause_generator(_pauses(rng, p))
            ram_r.r_channel.set_pause_generator(_latency(rng, p))
            ram_w.aw_channel.set_pause_generator(_pauses(rng, p))
            ram_w.w_channel.set_pause_generator(_pauses(rng, p))
            ram_w.b_channel.set_pause_generator(_pauses(rng, p))
            for ch in (self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                       self.axil.write_if.b_channel, self.axil.read_if.ar_channel,
                       self.axil.read_if.r_channel):
                ch.set_pause_generator(_pauses(rng, p))

    def output_handles(self, control: bool = True):
        """Output ports of the design (name, handle): the handshake and interrupt signals
        (``control``), which must never be X, or the payloads, which may be X while their
        valid is low."""
        if control:
            names = ["irq"]
            names += [f"s_axil_{n}" for n in ("awready", "wready", "bvalid", "arready",
                                              "rvalid")]
            names += [f"m_axi_{n}" for n in ("awvalid", "wvalid", "bready", "arvalid",
                                             "rready")]
        else:
            names = [f"s_axil_{n}" for n in ("bresp", "rdata", "rresp")]
            names += [f"m_axi_{n}" for n in ("awaddr", "awlen", "awsize", "awburst", "awid",
                                             "wdata", "wstrb", "wlast", "araddr", "arlen",
                                             "arsize", "arburst", "arid")]
        return [(n, getattr(self.dut, n)) for n in names]

    def load_memory(self) -> None:
        for base, data in self.program.memory_image().items():
            self.ram.write(base, data)
        self.clear_outputs()

    def clear_outputs(self) -> None:
        lay = self.layout
        self.ram.write(lay.out_base, bytes([OUT_MARKER]) * (lay.num_queries * lay.out_stride))

    async def reset(self, cycles: int = 4) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def write_reg(self, name: str, value: int) -> None:
        await self.axil.write_dword(offset(name), value & 0xFFFFFFFF)

    async def read_reg(self, name: str) -> int:
        return await self.axil.read_dword(offset(name))

    async def start(self) -> None:
        lay = self.layout
        await self.write_reg("VALUE_BASE", lay.value_base)
        await self.write_reg("QUERY_BASE", lay.query_base)
        await self.write_reg("DESC_BASE", lay.desc_base)
        await self.write_reg("OUT_BASE", lay.out_base)
        await self.write_reg("NUM_DESC", len(self.program.descriptors))
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
        lay = self.layout
        raw = self.ram.read(lay.out_base, lay.num_queries * lay.out_stride)
        return lay.unpack_outputs(raw, lay.num_queries).tolist()


@cocotb.test()
async def run_program(dut):
    """Run the job's program once (after an aborted first run when asked)."""
    job = Job.from_env()
    bench = Bench(dut, job)
    result: dict = {"config": bench.cfg.name, "seed": job.seed}

    # 1. Time 0, before any clock edge: every output must already be 0 or 1.
    dut.rst.value = 1
    dut.clk.value = 0
    await Timer(1, "ns")
    result["time0_unresolved"] = _outputs_of(bench.output_handles(control=True))
    result["time0_unresolved_payload"] = _outputs_of(bench.output_handles(control=False))

    Clock(dut.clk, CLOCK_NS, unit="ns").start(start_high=False)
    bench.load_memory()
    await bench.reset()
    bench.monitor.start()
    result["id"] = await bench.read_reg("ID")

    # 2. Optional: a run interrupted by reset in its middle, then a clean run.
    if job.reset_mid_run:
        await bench.start()
        expected_reads = sum(b.beats for b in bench.program.transfers() if not b.write)
        cycles = 0
        while bench.monitor.read_beats < expected_reads // 2 and cycles < job.timeout_cycles:
            await ClockCycles(dut.clk, 4)
            cycles += 4
        result["reset_after_read_beats"] = bench.monitor.read_beats
        result["reset_after_write_beats"] = bench.monitor.write_beats
        await bench.reset(cycles=6)
        status = await bench.read_reg("STATUS")
        result["status_after_reset"] = status
        bench.monitor.clear()
        bench.clear_outputs()

    # 3. The run that is checked.
    t_start = get_sim_time("ns")
    await bench.start()
    done, waited = await bench.wait_done()
    result["done"] = done
    result["bench_cycles"] = waited
    result["irq_at_done"] = int(dut.irq.value) if dut.irq.value.is_resolvable else None
    # Let write responses in flight settle before reading the counters.
    await ClockCycles(dut.clk, 4)
    result["counters"] = {name: await bench.read_reg(name) for name in COUNTERS}
    result["status"] = await bench.read_reg("STATUS")
    result["monitor"] = bench.monitor.summary()
    result["outputs"] = bench.read_outputs()
    result["sim_time_ns"] = get_sim_time("ns") - t_start
    result["registers"] = sorted(REGISTERS)
    Path(job.result_path).write_text(json.dumps(result) + "\n")
    assert done, f"STATUS.done not set within {job.timeout_cycles} cycles"
