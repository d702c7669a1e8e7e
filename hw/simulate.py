"""Run ``defslice_top`` in the Amaranth simulator against a Python AXI memory model.

Used by the whole-top test and by :mod:`defslice.hw.bench`. The memory model answers
every AXI4 read and write burst of the master (optionally with seeded random
back-pressure and gaps), records each burst, and the control bus is driven through the
AXI4-Lite registers exactly as host software would (:mod:`defslice.hw.regmap`).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from defslice.errors import DefsliceError
from defslice.hw import build_top, regmap
from defslice.model.layout import Burst, SlicedProgram

__all__ = ["SimResult", "run_program"]

COUNTER_NAMES = ("CYCLES", "BUSY_CYCLES", "STALL_CYCLES", "READ_BEATS", "WRITE_BEATS",
                 "READ_BURSTS", "WRITE_BURSTS")


@dataclass
class SimResult:
    """What a simulated run produced.

    ``outputs``: int64 (Lq, M*D) in stored order; ``bursts``: every AXI burst issued, in
    issue order (reads and writes interleaved as they happened); ``counters``: register
    name -> value; ``status``: the STATUS register after the run.
    """

    outputs: np.ndarray
    bursts: list[Burst] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    status: int = 0
    memory: bytearray = field(default_factory=bytearray)


def _tensor_of(lay, addr: int) -> str:
    if addr >= lay.out_base:
        return "output"
    if addr >= lay.desc_base:
        return "descriptor"
    if addr >= lay.query_base:
        return "query"
    return "value"


def run_program(cfg, prog: SlicedProgram, *, seed: int | None = None,
                max_cycles: int = 2_000_000, vcd: str | None = None,
                simulator=Simulator) -> SimResult:
    """Simulate one run of ``prog`` on the generated top.

    Arguments
    ---------
    seed : int or None
        ``None``: the memory is always ready (throughput measurement). Otherwise random
        stalls on every channel, reproducible from the seed.
    max_cycles : int
        The run is abandoned with a :class:`DefsliceError` after this many cycles.
    simulator : class
        :class:`amaranth.sim.Simulator` or a subclass that adds observing processes.
    """
    dut = build_top(cfg)
    lay = prog.layout
    bus = lay.bus_bytes
    mem = bytearray(lay.total_bytes)
    for base, blob in prog.memory_image().items():
        mem[base:base + len(blob)] = blob
    rng = random.Random(seed) if seed is not None else None
    bursts: list[Burst] = []
    result = SimResult(outputs=np.zeros((0,)), memory=mem)

    def chance(p: float) -> bool:
        return rng is None or rng.random() < p

    async def wait_high(ctx, signal, *extra):
        """Tick until ``signal`` was high at a clock edge; return ``extra`` sampled then."""
        while True:
            sampled = await ctx.tick().sample(signal, *extra)
            if sampled[2]:
                return sampled[3:]

    async def axil_write(ctx, addr: int, value: int):
        ctx.set(dut.s_axil_awaddr, addr)
        ctx.set(dut.s_axil_wdata, value)
        ctx.set(dut.s_axil_wstrb, 0xF)
        ctx.set(dut.s_axil_awvalid, 1)
        ctx.set(dut.s_axil_wvalid, 1)
        await wait_high(ctx, dut.s_axil_awready)
        ctx.set(dut.s_axil_awvalid, 0)
        ctx.set(dut.s_axil_wvalid, 0)
        ctx.set(dut.s_axil_bready, 1)
        await wait_high(ctx, dut.s_axil_bvalid)
        ctx.set(dut.s_axil_bready, 0)

    async def axil_read(ctx, addr: int) -> int:
        ctx.set(dut.s_axil_araddr, addr)
        ctx.set(dut.s_axil_arvalid, 1)
        await wait_high(ctx, dut.s_axil_arready)
        ctx.set(dut.s_axil_arvalid, 0)
        ctx.set(dut.s_axil_rready, 1)
        (rdata,) = await wait_high(ctx, dut.s_axil_rvalid, dut.s_axil_rdata)
        ctx.set(dut.s_axil_rready, 0)
        return rdata

    async def testbench(ctx):
        await ctx.tick()
        for name, value in (("VALUE_BASE", lay.value_base), ("QUERY_BASE", lay.query_base),
                            ("DESC_BASE", lay.desc_base), ("OUT_BASE", lay.out_base),
                            ("NUM_DESC", len(prog.descriptors))):
            await axil_write(ctx, regmap.offset(name), value)
        await axil_write(ctx, regmap.offset("CTRL"), 1)
        reads: deque = deque()     # [addr, beats left]
        writes: deque = deque()    # [addr, beats left]
        b_pending = 0
        r_cur = None
        held: dict = {}            # channel -> payload offered but not yet accepted
        arready = awready = wready = 1
        rvalid = 0
        for cycle in range(max_cycles):
            # Drive this cycle's slave outputs.
            arready = int(chance(0.8))
            awready = int(chance(0.8))
            wready = int(chance(0.8))
            if r_cur is None and reads:
                r_cur = reads.popleft()
            rvalid = int(r_cur is not None and chance(0.8))
            if rvalid:
                a = r_cur[0]
                ctx.set(dut.m_axi_rdata, int.from_bytes(mem[a:a + bus], "little"))
                ctx.set(dut.m_axi_rlast, int(r_cur[1] == 1))
            ctx.set(dut.m_axi_rvalid, rvalid)
            ctx.set(dut.m_axi_arready, arready)
            ctx.set(dut.m_axi_awready, awready)
            ctx.set(dut.m_axi_wready, wready)
            bvalid = int(b_pending > 0 and chance(0.8))
            ctx.set(dut.m_axi_bvalid, bvalid)
            (*_, arvalid, araddr, arlen, rready, awvalid, awaddr, awlen, wvalid, wdata,
             wlast, bready, irq) = await ctx.tick().sample(
                dut.m_axi_arvalid, dut.m_axi_araddr, dut.m_axi_arlen, dut.m_axi_rready,
                dut.m_axi_awvalid, dut.m_axi_awaddr, dut.m_axi_awlen, dut.m_axi_wvalid,
                dut.m_axi_wdata, dut.m_axi_wlast, dut.m_axi_bready, dut.irq)
            # AXI: a VALID not yet accepted stays high with its payload unchanged.
            now = {"ar": (arvalid, araddr, arlen), "aw": (awvalid, awaddr, awlen),
                   "w": (wvalid, wdata, wlast)}
            for ch, ready in (("ar", arready), ("aw", awready), ("w", wready)):
                if ch in held and held[ch] != now[ch]:
                    raise DefsliceError(f"AXI {ch.upper()} changed before its handshake at "
                                        f"cycle {cycle}: {held[ch]} -> {now[ch]}")
                if now[ch][0] and not ready:
                    held[ch] = now[ch]
                else:
                    held.pop(ch, None)
            if arvalid and arready:
                bursts.append(Burst(araddr, arlen + 1, False, _tensor_of(lay, araddr)))
                reads.append([araddr, arlen + 1])
            if rvalid and rready:
                r_cur[0] += bus
                r_cur[1] -= 1
                if r_cur[1] == 0:
                    r_cur = None
            if awvalid and awready:
                bursts.append(Burst(awaddr, awlen + 1, True, _tensor_of(lay, awaddr)))
                writes.append([awaddr, awlen + 1])
            if wvalid and wready:
                if not writes:
                    raise DefsliceError("W beat before its AW (the model expects AW first)")
                w = writes[0]
                mem[w[0]:w[0] + bus] = int(wdata).to_bytes(bus, "little")
                w[0] += bus
                w[1] -= 1
                if bool(wlast) != (w[1] == 0):
                    raise DefsliceError(f"WLAST wrong at cycle {cycle}")
                if w[1] == 0:
                    writes.popleft()
                    b_pending += 1
            if bvalid and bready:
                b_pending -= 1
            if irq:
                break
        else:
            raise DefsliceError(f"the run did not finish within {max_cycles} cycles")
        ctx.set(dut.m_axi_rvalid, 0)
        ctx.set(dut.m_axi_bvalid, 0)
        result.status = await axil_read(ctx, regmap.offset("STATUS"))
        for name in COUNTER_NAMES:
            result.counters[name] = await axil_read(ctx, regmap.offset(name))

    sim = simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    n = prog.inputs.x.shape[1]
    result.outputs = lay.unpack_outputs(bytes(mem[lay.out_base:]), n)
    result.bursts = bursts
    return result
