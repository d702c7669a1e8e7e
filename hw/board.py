"""Board wrapper for the Vivado build tree: ``defslice_top`` with on-chip DRAM stand-in.

A development board without a DDR controller in the Amaranth flow still runs the
accelerator end to end:

* the AXI4 master of ``defslice_top`` talks to :class:`AxiRam`, an on-chip block-RAM AXI4
  slave of ``ram_bytes`` (the whole memory image when it fits, else the board's cap);
* the host reaches both the AXI4-Lite registers and the RAM through :class:`UartBridge`
  on the board's USB-UART (115200 8N1) with a 9-byte command protocol (``docs/hw.md``):
  ``'W' addr32 data32`` (reply ``'K'``) and ``'R' addr32 0`` (reply ``data32``), all
  little-endian; ``addr`` bit 31 selects the RAM (byte address in bits 30..0), otherwise a
  register offset;
* LEDs show busy, done and error.

For workloads larger than on-chip RAM (``dat56``'s value tensor is 392 KiB), use
``defslice_top.v`` directly in a Vivado block design with the MIG DDR controller on the
AXI4 master port and any AXI4-Lite master (JTAG-to-AXI, MicroBlaze) on the register port.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defslice.hw import regmap
from defslice.hw.params import HwParams
from defslice.hw.top import DefsliceTop, axi_members

__all__ = ["BOARD_RAM_CAP", "AxiRam", "BoardTop", "UartBridge", "board_ram_bytes"]

#: Largest on-chip RAM the wrapper instantiates (bytes).
BOARD_RAM_CAP = 128 * 1024


def board_ram_bytes(p: HwParams) -> int:
    """RAM size: the power of two holding the default memory image, at most the cap."""
    from defslice.model.layout import DramLayout

    need = DramLayout(p.cfg).total_bytes
    size = 4096
    while size < need and size < BOARD_RAM_CAP:
        size *= 2
    return size


class AxiRam(wiring.Component):
    """AXI4 slave (INCR bursts) over one block RAM; addresses wrap at ``size`` bytes.

    One read and one write burst are served at a time, concurrently. The ``host_*`` port
    (32-bit words) shares the RAM ports and must only be used while the master is idle.
    """

    def __init__(self, p: HwParams, size: int, image: dict[int, bytes] | None = None):
        self.p, self.size = p, size
        self.init = _words(image or {}, size, p.bus_bytes)
        members = dict(wiring.Signature(axi_members(p, "s")).flip().members.items())
        members.update({"host_addr": In(32), "host_wdata": In(32), "host_we": In(1),
                        "host_rdata": Out(32), "host_sel": In(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        words = self.size // p.bus_bytes
        m.submodules.mem = self.mem = mem = Memory(shape=p.bus_bits, depth=words,
                                                   init=self.init)
        wp = mem.write_port(granularity=8)
        rp = mem.read_port()
        idx_bits = (words - 1).bit_length()
        sh = p.beat_shift
        # Reads: address counter, one beat per cycle, the RAM read one cycle ahead.
        r_addr = Signal(idx_bits)
        r_left = Signal(9)
        r_busy = Signal()
        m.d.comb += [self.s_arready.eq(~r_busy), self.s_rresp.eq(0), self.s_rid.eq(0)]
        with m.If(self.s_arvalid & ~r_busy):
            m.d.sync += [r_addr.eq(self.s_araddr[sh:sh + idx_bits]),
                         r_left.eq(self.s_arlen + 1), r_busy.eq(1)]
        advance = r_busy & (~self.s_rvalid | self.s_rready) & (r_left != 0)
        m.d.comb += rp.addr.eq(r_addr)
        with m.If(self.s_rvalid & self.s_rready):
            m.d.sync += self.s_rvalid.eq(0)
        with m.If(advance):
            m.d.sync += [self.s_rvalid.eq(1), r_addr.eq(r_addr + 1), r_left.eq(r_left - 1),
                         self.s_rlast.eq(r_left == 1)]
        with m.If(self.s_rvalid & self.s_rready & self.s_rlast):
            m.d.sync += r_busy.eq(0)
        # The read port registers the address each cycle; keep the beat stable while held.
        m.d.comb += rp.en.eq(~(self.s_rvalid & ~self.s_rready) | self.host_sel)
        m.d.comb += self.s_rdata.eq(rp.data)
        # Writes.
        w_addr = Signal(idx_bits)
        w_busy = Signal()
        m.d.comb += [self.s_awready.eq(~w_busy & ~self.s_bvalid), self.s_wready.eq(w_busy),
                     self.s_bresp.eq(0), self.s_bid.eq(0)]
        with m.If(self.s_awvalid & ~w_busy & ~self.s_bvalid):
            m.d.sync += [w_addr.eq(self.s_awaddr[sh:sh + idx_bits]), w_busy.eq(1)]
        with m.If(self.s_wvalid & w_busy):
            m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(self.s_wlast):
                m.d.sync += [w_busy.eq(0), self.s_bvalid.eq(1)]
        with m.If(self.s_bvalid & self.s_bready):
            m.d.sync += self.s_bvalid.eq(0)
        # Host access (32-bit words) shares the ports.
        lanes32 = p.bus_bits // 32
        hsel = self.host_addr[2:sh] if lanes32 > 1 else 0
        with m.If(self.host_sel):
            m.d.comb += [rp.addr.eq(self.host_addr[sh:sh + idx_bits]),
                         wp.addr.eq(self.host_addr[sh:sh + idx_bits]),
                         wp.data.eq(self.host_wdata.replicate(lanes32))]
            with m.If(self.host_we):
                m.d.comb += wp.en.eq(0xF << (hsel * 4) if lanes32 > 1 else 0xF)
        with m.Else():
            m.d.comb += [wp.addr.eq(w_addr), wp.data.eq(self.s_wdata)]
            with m.If(self.s_wvalid & w_busy):
                m.d.comb += wp.en.eq(self.s_wstrb)
        if lanes32 > 1:
            m.d.comb += self.host_rdata.eq(rp.data.word_select(hsel, 32))
        else:
            m.d.comb += self.host_rdata.eq(rp.data)
        return m


def _words(image: dict[int, bytes], size: int, bus_bytes: int) -> list[int]:
    """Memory image (base -> bytes) as RAM words; what lies beyond ``size`` is dropped."""
    raw = bytearray(size)
    for base, blob in image.items():
        blob = blob[: max(0, size - base)]
        raw[base:base + len(blob)] = blob
    if not any(raw):
        return []
    return [int.from_bytes(raw[k:k + bus_bytes], "little") for k in range(0, size, bus_bytes)]


class UartBridge(Elaboratable):
    """UART (8N1) command bridge to the AXI4-Lite registers and the RAM host port.

    Arguments
    ---------
    divisor : int
        Clock cycles per UART bit (``clk_hz // baud``).
    """

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"divisor must be >= 4, got {divisor}")
        self.divisor = divisor
        self.rx = Signal(init=1)
        self.tx = Signal(init=1)
        self.axil = {name: Signal(width, name=f"b_{name}")
                     for name, width in _AXIL_WIDTHS.items()}
        self.ram_addr = Signal(32)
        self.ram_wdata = Signal(32)
        self.ram_we = Signal()
        self.ram_sel = Signal()
        self.ram_rdata = Signal(32)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        # Receiver.
        rx_sync = Signal(2, init=0b11)
        m.d.sync += rx_sync.eq(Cat(self.rx, rx_sync[0]))
        rx = rx_sync[1]
        rx_cnt = Signal(range(2 * d))
        rx_bit = Signal(4)
        rx_sr = Signal(8)
        rx_byte = Signal(8)
        rx_stb = Signal()
        m.d.sync += rx_stb.eq(0)
        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [rx_cnt.eq(d + d // 2 - 1), rx_bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += rx_cnt.eq(rx_cnt - 1)
                with m.If(rx_cnt == 0):
                    m.d.sync += [rx_sr.eq(Cat(rx_sr[1:], rx)), rx_bit.eq(rx_bit + 1),
                                 rx_cnt.eq(d - 1)]
                    with m.If(rx_bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += rx_cnt.eq(rx_cnt - 1)
                with m.If(rx_cnt == 0):
                    m.d.sync += [rx_byte.eq(rx_sr), rx_stb.eq(rx)]
                    m.next = "IDLE"
        # Transmitter.
        tx_data = Signal(8)
        tx_stb = Signal()
        tx_busy = Signal()
        tx_sr = Signal(10, init=0x3FF)
        tx_cnt = Signal(range(d))
        tx_bits = Signal(4)
        m.d.comb += self.tx.eq(tx_sr[0])
        with m.If(tx_stb & ~tx_busy):
            m.d.sync += [tx_sr.eq(Cat(0, tx_data, 1)), tx_bits.eq(10), tx_cnt.eq(d - 1),
                         tx_busy.eq(1)]
        with m.Elif(tx_busy):
            m.d.sync += tx_cnt.eq(tx_cnt - 1)
            with m.If(tx_cnt == 0):
                m.d.sync += [tx_sr.eq(Cat(tx_sr[1:], 1)), tx_bits.eq(tx_bits - 1),
                             tx_cnt.eq(d - 1)]
                with m.If(tx_bits == 1):
                    m.d.sync += tx_busy.eq(0)
        # Command decoder.
        cmd = Signal(72)
        n_rx = Signal(4)
        reply = Signal(32)
        n_tx = Signal(3)
        a = self.axil
        addr = cmd[8:40]
        data = cmd[40:72]
        is_ram = addr[31]
        m.d.comb += [self.ram_addr.eq(addr), self.ram_wdata.eq(data)]
        m.d.comb += [a["awaddr"].eq(addr), a["araddr"].eq(addr), a["wdata"].eq(data),
                     a["wstrb"].eq(0xF), a["bready"].eq(1), a["rready"].eq(1)]
        with m.FSM(name="bridge"):
            with m.State("RECV"):
                with m.If(rx_stb):
                    m.d.sync += [cmd.eq(Cat(cmd[8:], rx_byte)), n_rx.eq(n_rx + 1)]
                    with m.If(n_rx == 8):
                        m.d.sync += n_rx.eq(0)
                        m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(cmd[:8] == ord("W")):
                    with m.If(is_ram):
                        m.d.comb += [self.ram_sel.eq(1), self.ram_we.eq(1)]
                        m.d.sync += [reply.eq(ord("K")), n_tx.eq(1)]
                        m.next = "SEND"
                    with m.Else():
                        m.next = "AXIL_W"
                with m.Elif(cmd[:8] == ord("R")):
                    with m.If(is_ram):
                        m.d.comb += self.ram_sel.eq(1)
                        m.next = "RAM_R"
                    with m.Else():
                        m.next = "AXIL_AR"
                with m.Else():
                    m.next = "RECV"
            with m.State("RAM_R"):
                m.d.comb += self.ram_sel.eq(1)
                m.d.sync += [reply.eq(self.ram_rdata), n_tx.eq(4)]
                m.next = "SEND"
            with m.State("AXIL_W"):
                m.d.comb += [a["awvalid"].eq(1), a["wvalid"].eq(1)]
                with m.If(a["awready"]):
                    m.next = "AXIL_B"
            with m.State("AXIL_B"):
                with m.If(a["bvalid"]):
                    m.d.sync += [reply.eq(ord("K")), n_tx.eq(1)]
                    m.next = "SEND"
            with m.State("AXIL_AR"):
                m.d.comb += a["arvalid"].eq(1)
                with m.If(a["arready"]):
                    m.next = "AXIL_R"
            with m.State("AXIL_R"):
                with m.If(a["rvalid"]):
                    m.d.sync += [reply.eq(a["rdata"]), n_tx.eq(4)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += tx_data.eq(reply[:8])
                with m.If(n_tx == 0):
                    m.next = "RECV"
                with m.Elif(~tx_busy & ~tx_stb):
                    m.d.sync += tx_stb.eq(1)
                with m.Elif(tx_busy & tx_stb):
                    m.d.sync += [tx_stb.eq(0), reply.eq(reply >> 8), n_tx.eq(n_tx - 1)]
        return m


_AXIL_WIDTHS = {"awaddr": regmap.ADDR_BITS, "awvalid": 1, "awready": 1, "wdata": 32,
                "wstrb": 4, "wvalid": 1, "wready": 1, "bresp": 2, "bvalid": 1, "bready": 1,
                "araddr": regmap.ADDR_BITS, "arvalid": 1, "arready": 1, "rdata": 32,
                "rresp": 2, "rvalid": 1, "rready": 1}


_FROM_BRIDGE = ("awaddr", "awvalid", "wdata", "wstrb", "wvalid", "bready", "araddr",
                "arvalid", "rready")


class BoardTop(Elaboratable):
    """``defslice_top`` + :class:`AxiRam` + :class:`UartBridge` for an amaranth-boards
    platform (resources ``uart``, ``led`` 0..2; the platform's default clock and reset).

    ``uart_divisor`` overrides the bit time (clock cycles) for simulation; ``image``
    (base address -> bytes, e.g. :meth:`SlicedProgram.memory_image`) preloads the RAM.
    """

    def __init__(self, p: HwParams, uart_divisor: int | None = None,
                 image: dict[int, bytes] | None = None):
        self.p = p
        self.uart_divisor = uart_divisor
        self.ram_bytes = board_ram_bytes(p)
        self.top = DefsliceTop(p)
        self.ram = AxiRam(p, self.ram_bytes, image)
        self._bridge = None

    def elaborate(self, platform):
        m = Module()
        p = self.p
        m.submodules.core = core = self.top
        m.submodules.ram = ram = self.ram
        divisor = self.uart_divisor
        if divisor is None:
            divisor = int(platform.default_clk_frequency) // 115200
        m.submodules.bridge = bridge = self._bridge = UartBridge(divisor)
        for name in axi_members(p, "m"):
            suffix = name[2:]
            port, slave = getattr(core, f"m_axi_{suffix}"), getattr(ram, f"s_{suffix}")
            if suffix in ("awready", "wready", "bid", "bresp", "bvalid", "arready", "rid",
                          "rdata", "rresp", "rlast", "rvalid"):
                m.d.comb += port.eq(slave)
            else:
                m.d.comb += slave.eq(port)
        for name, sig in bridge.axil.items():
            port = getattr(core, f"s_axil_{name}")
            if name in _FROM_BRIDGE:
                m.d.comb += port.eq(sig)
            else:
                m.d.comb += sig.eq(port)
        m.d.comb += [core.s_axil_awprot.eq(0), core.s_axil_arprot.eq(0),
                     ram.host_addr.eq(bridge.ram_addr), ram.host_wdata.eq(bridge.ram_wdata),
                     ram.host_we.eq(bridge.ram_we), ram.host_sel.eq(bridge.ram_sel),
                     bridge.ram_rdata.eq(ram.host_rdata)]
        if platform is not None:
            uart = platform.request("uart", 0, dir="-")
            m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
            m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
            m.d.comb += [bridge.rx.eq(rx.i), tx.o.eq(bridge.tx)]
            status = Signal(3)
            m.d.sync += status.eq(Cat(core.busy_o, core.irq, core.error_o))
            for k in range(3):
                led = io.Buffer("o", platform.request("led", k, dir="-"))
                m.submodules[f"led{k}"] = led
                m.d.comb += led.o.eq(status[k])
        return m
