"""AXI4-Lite register map and port list of ``defslice_top`` (32-bit registers, byte
addresses).

Shared by the generator, the simulator benches and host software; ``docs/hw.md`` renders
it as a table. Counters are free-running during a run and cleared by ``CTRL.start``.
"""

from __future__ import annotations

from typing import NamedTuple

#: name -> (byte offset, access, meaning)
REGISTERS: dict[str, tuple[int, str, str]] = {
    "CTRL": (0x00, "w", "bit 0: start (write 1; self-clearing)"),
    "STATUS": (0x04, "r", "bit 0: busy, bit 1: done (set at the end of a run, cleared by "
                          "start), bit 2: a descriptor window did not fit the buffers (run "
                          "stopped), bit 3: an AXI read or write response was not OKAY"),
    "VALUE_BASE": (0x08, "rw", "byte address of the value tensor"),
    "QUERY_BASE": (0x0C, "rw", "byte address of the sorted query records"),
    "DESC_BASE": (0x10, "rw", "byte address of the slice descriptors"),
    "OUT_BASE": (0x14, "rw", "byte address of the outputs"),
    "NUM_DESC": (0x18, "rw", "number of descriptors (non-empty slices) to process"),
    "CYCLES": (0x20, "r", "cycles from start to done"),
    "BUSY_CYCLES": (0x24, "r", "cycles in which a bilinear sample was issued"),
    "STALL_CYCLES": (0x28, "r", "cycles in which compute waited for a window or queries"),
    "READ_BEATS": (0x2C, "r", "AXI read beats accepted (R handshakes)"),
    "WRITE_BEATS": (0x30, "r", "AXI write beats accepted (W handshakes)"),
    "READ_BURSTS": (0x34, "r", "AXI read bursts issued (AR handshakes)"),
    "WRITE_BURSTS": (0x38, "r", "AXI write bursts issued (AW handshakes)"),
    "ID": (0x3C, "r", "constant 0xDEF5_1CE0 + version"),
}

ID_VALUE = 0xDEF51CE0
ADDR_BITS = 8

#: Host-written configuration registers, in register-map order.
SETTINGS = ("VALUE_BASE", "QUERY_BASE", "DESC_BASE", "OUT_BASE", "NUM_DESC")
#: Performance counters, in register-map order (read only).
COUNTERS = ("CYCLES", "BUSY_CYCLES", "STALL_CYCLES", "READ_BEATS", "WRITE_BEATS",
            "READ_BURSTS", "WRITE_BURSTS")


class AxilPort(NamedTuple):
    """One AXI4-Lite slave port: width (bits) and whether the slave drives it."""

    width: int
    slave_out: bool


#: The AXI4-Lite slave ports without their prefix (``s_axil_``), as cocotbext-axi names
#: them.
AXIL_PORTS: dict[str, AxilPort] = {
    "awaddr": AxilPort(ADDR_BITS, False), "awprot": AxilPort(3, False),
    "awvalid": AxilPort(1, False), "awready": AxilPort(1, True),
    "wdata": AxilPort(32, False), "wstrb": AxilPort(4, False),
    "wvalid": AxilPort(1, False), "wready": AxilPort(1, True),
    "bresp": AxilPort(2, True), "bvalid": AxilPort(1, True), "bready": AxilPort(1, False),
    "araddr": AxilPort(ADDR_BITS, False), "arprot": AxilPort(3, False),
    "arvalid": AxilPort(1, False), "arready": AxilPort(1, True),
    "rdata": AxilPort(32, True), "rresp": AxilPort(2, True), "rvalid": AxilPort(1, True),
    "rready": AxilPort(1, False),
}


def offset(name: str) -> int:
    """Byte offset of register ``name``."""
    return REGISTERS[name][0]
