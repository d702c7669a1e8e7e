"""Run ``defslice_top`` in the Amaranth simulator against a Python AXI memory model.

Used by the whole-top test, the block tests and :mod:`defslice.hw.bench`. The memory
model (:class:`AxiMemory`) answers every AXI4 read and write burst of a master
(optionally with seeded random back-pressure and gaps), records each burst and checks
the handshake rules; the control bus is driven through the AXI4-Lite registers exactly
as host software would (:mod:`defslice.hw.regmap`).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from amaranth.hdl import Signal
from amaranth.sim import Simulator

from defslice.errors import DefsliceError
from defslice.hw import build_top, regmap
from defslice.model.layout import Burst, SlicedProgram

if TYPE_CHECKING:
    from amaranth.sim import SimulatorContext

    from defslice.config import Config

__all__ = ["AxiMemory", "SimResult", "axil_read", "axil_write", "finish_run", "run_program",
           "start_run"]

#: Chance that a slave-driven VALID or READY is high in a cycle under back-pressure.
ACTIVE_CHANCE = 0.8


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


class AxiMemory:
    """A Python AXI4 slave over ``mem``, stepped once per clock cycle.

    Arguments
    ---------
    port : callable
        ``port(channel, name)`` -> the master's signal, e.g. ``("ar", "valid")`` ->
        ``dut.m_axi_arvalid``.
    mem : bytearray
        The memory, byte address 0 first.
    bus_bytes : int
    rng : random.Random or None
        ``None``: every slave VALID/READY is high whenever it can be; else each is high
        with :data:`ACTIVE_CHANCE` per cycle.
    reads, writes : bool
        Serve the AR/R channels, the AW/W/B channels.
    tensor : callable
        Byte address -> tensor name, recorded in each :class:`Burst`.

    Members
    -------
    bursts : list of Burst
        Every burst accepted, in order.
    """

    def __init__(self, port: Callable[[str, str], Signal], mem: bytearray, bus_bytes: int,
                 rng: random.Random | None, *, reads: bool = True, writes: bool = True,
                 tensor: Callable[[int], str] = lambda addr: "") -> None:
        self.port, self.mem, self.bus, self.rng = port, mem, bus_bytes, rng
        self.reads_on, self.writes_on, self.tensor = reads, writes, tensor
        self.bursts: list[Burst] = []
        self._reads: deque = deque()     # [addr, beats left]
        self._writes: deque = deque()    # [addr, beats left]
        self._b_pending = 0
        self._r_cur: list[int] | None = None
        self._held: dict = {}            # channel -> payload offered but not yet accepted
        self._cycle = 0
        channels = (("ar", ("valid", "addr", "len")), ("r", ("ready",))) if reads else ()
        if writes:
            channels += (("aw", ("valid", "addr", "len")), ("w", ("valid", "data", "last")),
                         ("b", ("ready",)))
        self._sampled = [(ch, name) for ch, names in channels for name in names]

    @property
    def pending_responses(self) -> int:
        """Write bursts complete whose B response is not yet accepted."""
        return self._b_pending

    def _chance(self) -> int:
        return int(self.rng is None or self.rng.random() < ACTIVE_CHANCE)

    def _drive(self, ctx: SimulatorContext) -> dict[str, int]:
        """Set this cycle's slave outputs; return the VALIDs and READYs driven."""
        port = self.port
        drv = {"ar": self._chance()} if self.reads_on else {}
        if self.writes_on:
            drv["aw"], drv["w"] = self._chance(), self._chance()
        if self.reads_on:
            if self._r_cur is None and self._reads:
                self._r_cur = self._reads.popleft()
            drv["r"] = int(self._r_cur is not None and self._chance())
            if drv["r"]:
                a = self._r_cur[0]
                ctx.set(port("r", "data"), int.from_bytes(self.mem[a:a + self.bus], "little"))
                ctx.set(port("r", "last"), int(self._r_cur[1] == 1))
            ctx.set(port("r", "valid"), drv["r"])
            ctx.set(port("ar", "ready"), drv["ar"])
        if self.writes_on:
            ctx.set(port("aw", "ready"), drv["aw"])
            ctx.set(port("w", "ready"), drv["w"])
            drv["b"] = int(self._b_pending > 0 and self._chance())
            ctx.set(port("b", "valid"), drv["b"])
        return drv

    def _check_stable(self, got: dict, drv: dict[str, int]) -> None:
        """AXI: a VALID not yet accepted stays high with its payload unchanged."""
        now = {}
        if self.reads_on:
            now["ar"] = (got["ar", "valid"], got["ar", "addr"], got["ar", "len"])
        if self.writes_on:
            now["aw"] = (got["aw", "valid"], got["aw", "addr"], got["aw", "len"])
            now["w"] = (got["w", "valid"], got["w", "data"], got["w", "last"])
        for ch, payload in now.items():
            if ch in self._held and self._held[ch] != payload:
                raise DefsliceError(f"AXI {ch.upper()} changed before its handshake at "
                                    f"cycle {self._cycle}: {self._held[ch]} -> {payload}")
            if payload[0] and not drv[ch]:
                self._held[ch] = payload
            else:
                self._held.pop(ch, None)

    def _read_side(self, got: dict, drv: dict[str, int]) -> None:
        if got["ar", "valid"] and drv["ar"]:
            addr, beats = got["ar", "addr"], got["ar", "len"] + 1
            self.bursts.append(Burst(addr, beats, False, self.tensor(addr)))
            self._reads.append([addr, beats])
        if drv["r"] and got["r", "ready"]:
            self._r_cur[0] += self.bus
            self._r_cur[1] -= 1
            if self._r_cur[1] == 0:
                self._r_cur = None

    def _write_side(self, got: dict, drv: dict[str, int]) -> None:
        if got["aw", "valid"] and drv["aw"]:
            addr, beats = got["aw", "addr"], got["aw", "len"] + 1
            self.bursts.append(Burst(addr, beats, True, self.tensor(addr)))
            self._writes.append([addr, beats])
        if got["w", "valid"] and drv["w"]:
            if not self._writes:
                raise DefsliceError("W beat before its AW (the model expects AW first)")
            w = self._writes[0]
            self.mem[w[0]:w[0] + self.bus] = int(got["w", "data"]).to_bytes(self.bus, "little")
            w[0] += self.bus
            w[1] -= 1
            if bool(got["w", "last"]) != (w[1] == 0):
                raise DefsliceError(f"WLAST wrong at cycle {self._cycle}")
            if w[1] == 0:
                self._writes.popleft()
                self._b_pending += 1
        if drv["b"] and got["b", "ready"]:
            self._b_pending -= 1

    async def step(self, ctx: SimulatorContext, *extra: Signal) -> list[int]:
        """One clock cycle: drive the slave side, tick, serve the handshakes that took
        place. Returns the values of ``extra`` sampled at the edge."""
        drv = self._drive(ctx)
        sigs = [self.port(ch, name) for ch, name in self._sampled]
        _clk, _rst, *values = await ctx.tick().sample(*sigs, *extra)
        got = dict(zip(self._sampled, values[:len(sigs)], strict=True))
        self._check_stable(got, drv)
        if self.reads_on:
            self._read_side(got, drv)
        if self.writes_on:
            self._write_side(got, drv)
        self._cycle += 1
        return values[len(sigs):]

async def _wait_high(ctx: SimulatorContext, signal: Signal, *extra: Signal) -> list[int]:
    """Tick until ``signal`` was high at a clock edge; return ``extra`` sampled then."""
    while True:
        sampled = await ctx.tick().sample(signal, *extra)
        if sampled[2]:
            return sampled[3:]


async def axil_write(ctx: SimulatorContext, dut: object, addr: int, value: int) -> None:
    """One AXI4-Lite write through ``dut.s_axil_*``."""
    ctx.set(dut.s_axil_awaddr, addr)
    ctx.set(dut.s_axil_wdata, value)
    ctx.set(dut.s_axil_wstrb, 0xF)
    ctx.set(dut.s_axil_awvalid, 1)
    ctx.set(dut.s_axil_wvalid, 1)
    await _wait_high(ctx, dut.s_axil_awready)
    ctx.set(dut.s_axil_awvalid, 0)
    ctx.set(dut.s_axil_wvalid, 0)
    ctx.set(dut.s_axil_bready, 1)
    await _wait_high(ctx, dut.s_axil_bvalid)
    ctx.set(dut.s_axil_bready, 0)


async def axil_read(ctx: SimulatorContext, dut: object, addr: int) -> int:
    """One AXI4-Lite read through ``dut.s_axil_*``."""
    ctx.set(dut.s_axil_araddr, addr)
    ctx.set(dut.s_axil_arvalid, 1)
    await _wait_high(ctx, dut.s_axil_arready)
    ctx.set(dut.s_axil_arvalid, 0)
    ctx.set(dut.s_axil_rready, 1)
    (rdata,) = await _wait_high(ctx, dut.s_axil_rvalid, dut.s_axil_rdata)
    ctx.set(dut.s_axil_rready, 0)
    return rdata


async def start_run(ctx: SimulatorContext, dut: object, rmap: regmap.RegisterMap,
                    settings: dict[str, int]) -> None:
    """Write ``settings`` (register name -> value) and ``CTRL.start`` through AXI4-Lite."""
    for name, value in settings.items():
        await axil_write(ctx, dut, rmap.offset(name), value)
    await axil_write(ctx, dut, rmap.offset("CTRL"), 1)


async def finish_run(ctx: SimulatorContext, dut: object, memory: AxiMemory,
                     rmap: regmap.RegisterMap, max_cycles: int) -> tuple[int, dict[str, int]]:
    """Serve ``memory`` until ``irq``; then ``STATUS`` and the counters of ``rmap``.

    Raises :class:`DefsliceError` when the run does not finish within ``max_cycles``.
    """
    for _ in range(max_cycles):
        (irq,) = await memory.step(ctx, dut.irq)
        if irq:
            break
    else:
        raise DefsliceError(f"the run did not finish within {max_cycles} cycles")
    ctx.set(dut.m_axi_rvalid, 0)
    ctx.set(dut.m_axi_bvalid, 0)
    status = await axil_read(ctx, dut, rmap.offset("STATUS"))
    return status, {name: await axil_read(ctx, dut, rmap.offset(name))
                    for name in rmap.counters}


def run_program(cfg: Config, prog: SlicedProgram, *, seed: int | None = None,
                max_cycles: int = 2_000_000, vcd: str | None = None,
                simulator: type[Simulator] = Simulator) -> SimResult:
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
    mem = bytearray(lay.total_bytes)
    for base, blob in prog.memory_image().items():
        mem[base:base + len(blob)] = blob
    result = SimResult(outputs=np.zeros((0,)), memory=mem)
    memory = AxiMemory(lambda ch, name: getattr(dut, f"m_axi_{ch}{name}"), mem,
                       lay.bus_bytes, random.Random(seed) if seed is not None else None,
                       tensor=lay.tensor_at)

    async def testbench(ctx: SimulatorContext) -> None:
        await ctx.tick()
        await start_run(ctx, dut, regmap.SAMPLING_MAP, {
            "VALUE_BASE": lay.value_base, "QUERY_BASE": lay.query_base,
            "DESC_BASE": lay.desc_base, "OUT_BASE": lay.out_base,
            "NUM_DESC": len(prog.descriptors)})
        result.status, result.counters = await finish_run(ctx, dut, memory,
                                                          regmap.SAMPLING_MAP, max_cycles)

    sim = simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    result.outputs = lay.unpack_outputs(bytes(mem[lay.out_base:]), prog.inputs.x.shape[1])
    result.bursts = memory.bursts
    return result
