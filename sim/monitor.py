"""Passive AXI4 monitor: counts and records every burst and beat on the ``m_axi_`` port.

It samples the channels at every rising clock edge (outside reset), like the AXI models
do, and keeps:

* every read and write burst as ``(address, beats)`` from the AR / AW handshakes, to be
  compared with :meth:`defslice.model.layout.SlicedProgram.transfers` as multisets;
* R, W and B handshake counts;
* protocol errors: a burst that is not INCR, a beat size other than the bus width, an
  ``RLAST`` / ``WLAST`` on the wrong beat, a burst crossing 4 KiB, an error response,
  or an X on a valid signal.
"""

from __future__ import annotations

from collections import defaultdict, deque

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.triggers import RisingEdge
from cocotb.types import Logic

from defslice.model.layout import PAGE
from defslice.sim.job import MonitorSummary

__all__ = ["AxiMonitor"]

_MAX_ERRORS = 20
#: A one-bit handle's value is one of these shared objects when it is 0 or 1: an identity
#: test reads a handshake without converting it.
_ZERO, _ONE = Logic("0"), Logic("1")


class AxiMonitor:
    """Watch the AXI4 master ``prefix`` of ``dut``.

    Arguments
    ---------
    dut : cocotb handle
    clk, rst : cocotb handles
    bus_bytes : int
        Bytes per beat; every burst must use the full width (``axsize``).
    prefix : str
        Signal prefix (default ``m_axi``).
    """

    def __init__(self, dut: SimHandleBase, clk: SimHandleBase, rst: SimHandleBase,
                 bus_bytes: int, prefix: str = "m_axi") -> None:
        self.clk, self.rst = clk, rst
        self.bus_bytes = bus_bytes
        self.size_code = bus_bytes.bit_length() - 1
        s = {name: getattr(dut, f"{prefix}_{name}") for name in (
            "arvalid", "arready", "araddr", "arlen", "arsize", "arburst", "arid",
            "rvalid", "rready", "rlast", "rid", "rresp",
            "awvalid", "awready", "awaddr", "awlen", "awsize", "awburst", "awid",
            "wvalid", "wready", "wlast",
            "bvalid", "bready", "bresp")}
        self.sig = s
        self.clear()
        self._task = None

    def clear(self) -> None:
        """Forget everything observed so far (used after a mid-run reset)."""
        self.read_bursts: list[tuple[int, int]] = []
        self.write_bursts: list[tuple[int, int]] = []
        self.read_beats = 0
        self.write_beats = 0
        self.write_responses = 0
        self.errors: list[str] = []
        self._r_pending: dict[int, deque[int]] = defaultdict(deque)
        self._r_count: dict[int, int] = defaultdict(int)
        self._w_pending: deque[int] = deque()
        self._w_count = 0
        self._w_done: deque[int] = deque()

    def start(self) -> None:
        """Start watching (once)."""
        if self._task is None:
            self._task = cocotb.start_soon(self._run())

    def _error(self, msg: str) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(msg)

    def _bit(self, name: str) -> int:
        v = self.sig[name].value
        if v is _ONE:
            return 1
        if v is _ZERO:
            return 0
        if not v.is_resolvable:
            self._error(f"{name} is {v} (unresolved) outside reset")
            return 0
        return int(v)

    def _burst(self, kind: str) -> tuple[int, int]:
        s = self.sig
        addr = int(s[f"{kind}addr"].value)
        beats = int(s[f"{kind}len"].value) + 1
        if int(s[f"{kind}burst"].value) != 1:
            self._error(f"{kind} burst at {addr:#x} is not INCR")
        if int(s[f"{kind}size"].value) != self.size_code:
            self._error(f"{kind}size {int(s[f'{kind}size'].value)} at {addr:#x}: "
                        f"expected {self.size_code} ({self.bus_bytes}-byte beats)")
        last = addr + beats * self.bus_bytes - 1
        if addr // PAGE != last // PAGE:
            self._error(f"{kind} burst {addr:#x}+{beats} beats crosses a 4 KiB boundary")
        if addr % self.bus_bytes:
            self._error(f"{kind} burst address {addr:#x} is not bus aligned")
        return addr, beats

    async def _run(self) -> None:
        edge = RisingEdge(self.clk)
        while True:
            await edge
            rst = self.rst.value
            if rst is _ONE or (rst is not _ZERO and rst.is_resolvable and int(rst)):
                continue
            self._read_address()
            self._read_data()
            self._write_address()
            self._write_data()
            self._write_response()

    def _read_address(self) -> None:
        if self._bit("arvalid") and self._bit("arready"):
            addr, beats = self._burst("ar")
            self.read_bursts.append((addr, beats))
            self._r_pending[int(self.sig["arid"].value)].append(beats)

    def _read_data(self) -> None:
        s = self.sig
        if not (self._bit("rvalid") and self._bit("rready")):
            return
        self.read_beats += 1
        rid = int(s["rid"].value)
        self._r_count[rid] += 1
        if int(s["rresp"].value) != 0:
            self._error(f"read error response {int(s['rresp'].value)}")
        last = self._bit("rlast")
        queue = self._r_pending[rid]
        if not queue:
            self._error(f"R beat with id {rid} and no read burst outstanding")
        elif last or self._r_count[rid] == queue[0]:
            if not last or self._r_count[rid] != queue[0]:
                self._error(f"RLAST={last} on beat {self._r_count[rid]} of a "
                            f"{queue[0]}-beat read burst")
            queue.popleft()
            self._r_count[rid] = 0

    def _write_address(self) -> None:
        if self._bit("awvalid") and self._bit("awready"):
            addr, beats = self._burst("aw")
            self.write_bursts.append((addr, beats))
            self._w_pending.append(beats)

    def _write_data(self) -> None:
        if self._bit("wvalid") and self._bit("wready"):
            self.write_beats += 1
            self._w_count += 1
            if self._bit("wlast"):
                self._w_done.append(self._w_count)
                self._w_count = 0
        # W data may run ahead of its AW: burst lengths are matched in order.
        while self._w_pending and self._w_done:
            want, got = self._w_pending.popleft(), self._w_done.popleft()
            if want != got:
                self._error(f"WLAST after {got} beats of a {want}-beat write burst")

    def _write_response(self) -> None:
        if self._bit("bvalid") and self._bit("bready"):
            self.write_responses += 1
            if int(self.sig["bresp"].value) != 0:
                self._error(f"write error response {int(self.sig['bresp'].value)}")

    def summary(self) -> MonitorSummary:
        """Everything observed."""
        return MonitorSummary(
            read_bursts=tuple(self.read_bursts), write_bursts=tuple(self.write_bursts),
            read_beats=self.read_beats, write_beats=self.write_beats,
            write_responses=self.write_responses,
            outstanding_reads=sum(len(q) for q in self._r_pending.values()),
            errors=tuple(self.errors))
