"""Board wrapper for the Vivado build tree: ``defslice_top`` with an on-chip AXI4 RAM.

A development board without a DDR controller in the Amaranth flow still runs the
accelerator end to end:

* the AXI4 master of ``defslice_top`` talks to :class:`AxiRam`, an on-chip block-RAM AXI4
  slave holding the whole memory image (:func:`board_memory` decides its size and refuses
  an image larger than :data:`BOARD_RAM_CAP`); a beat beyond the RAM is answered with
  SLVERR, so a run that strays outside it ends with STATUS bit 3 instead of wrapping;
* the host reaches both the AXI4-Lite registers and the RAM through :class:`UartBridge`
  on the board's USB-UART (115200 8N1) with a 9-byte command protocol (``docs/hw.md``):
  ``'W' addr32 data32`` (reply ``'K'``, or ``'E'`` for a RAM address beyond the RAM) and
  ``'R' addr32 0`` (reply ``data32``), all little-endian; ``addr`` bit 31 selects the RAM
  (byte address in bits 30..0), otherwise a register offset;
* LEDs show busy, done and error.

Workloads larger than the on-chip RAM (``dat56``'s image is 892 KiB on the layer engine,
412 KiB on the sampling engine) run from the board's DDR3 instead (:mod:`defslice.hw.board_ddr`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defslice.config import Config
from defslice.errors import DefsliceError
from defslice.hw import build_top, regmap
from defslice.hw.params import HwParams
from defslice.hw.top import axi_members
from defslice.model.layout import PAGE
from defslice.records import Record

__all__ = ["AXI_SLVERR", "BOARD_RAM_CAP", "FROM_SLAVE", "AxiRam", "BoardMemory",
           "BoardMemoryError", "BoardTop", "UartBridge", "attach_bridge", "board_memory",
           "board_summary_lines", "connect_axi", "connect_board_io", "connect_registers",
           "image_bytes", "write_board_tree"]

#: Largest on-chip RAM the wrapper instantiates (bytes): 32 RAMB36, a quarter of the
#: Arty A7-100T's block RAM, leaving the rest to the accelerator's buffers.
BOARD_RAM_CAP = 128 * 1024
#: Smallest on-chip RAM (bytes): one page, the unit the memory image is laid out in;
#: sizes are powers of two from here up to the cap.
BOARD_RAM_MIN = PAGE
#: AXI response code of an access beyond the RAM (SLVERR).
AXI_SLVERR = 0b10


class BoardMemoryError(DefsliceError):
    """The configuration's memory image does not fit the board tree's memory."""


@dataclass(frozen=True)
class BoardMemory(Record):
    """Which memory serves the accelerator's AXI4 master in the board tree (``board.json``,
    and the Verilog stage's report).

    Attributes
    ----------
    board : str
        ``hw.board``.
    memory : str
        ``"bram"`` (on-chip :class:`AxiRam`) or ``"ddr3"`` (the board's DDR3 through
        LiteDRAM, :mod:`defslice.hw.board_ddr`).
    size_bytes : int
        Bytes the memory holds (B).
    needed_bytes : int
        Bytes of the configuration's memory image on its engine (:func:`image_bytes`).
    fits : bool
        ``needed_bytes <= size_bytes``; only then is a board tree generated.
    """

    board: str
    memory: str
    size_bytes: int
    needed_bytes: int
    fits: bool

    def describe(self) -> str:
        """One sentence: the memory, its size and the image's size."""
        return (f"{_MEMORY_NAMES[self.memory]} of {_kib(self.size_bytes)} on {self.board}; "
                f"the memory image needs {_kib(self.needed_bytes)}")

    def refusal(self, name: str) -> str:
        """The one-line error of a refused board tree, with the way out."""
        return (f"board tree for {name} refused: the memory image needs "
                f"{self.needed_bytes} B ({_kib(self.needed_bytes)}) but the "
                f"{_MEMORY_NAMES[self.memory]} of {self.board} holds at most "
                f"{self.size_bytes} B ({_kib(self.size_bytes)}); use the DDR3 tree "
                "(`defslice verilog --board-memory ddr3`, docs/hw.md)")


_MEMORY_NAMES = {"bram": "on-chip block RAM", "ddr3": "DDR3 (LiteDRAM)"}


def _kib(n: int) -> str:
    return f"{n / 1024:g} KiB" if n < 1 << 20 else f"{n / (1 << 20):g} MiB"


def image_bytes(cfg: Config) -> int:
    """Bytes of ``cfg``'s memory image on its engine (B): the sampling engine's
    :class:`~defslice.model.layout.DramLayout`, the layer engine's
    :class:`~defslice.model.layer_layout.LayerLayout`."""
    if cfg.hw.engine == "layer":
        from defslice.hw.layer.plan import LayerPlan

        return LayerPlan.from_config(cfg).layout.total_bytes
    from defslice.model.layout import DramLayout

    return DramLayout(cfg).total_bytes


def board_memory(cfg: Config, memory: str = "bram") -> BoardMemory:
    """Decide the board tree's memory for ``cfg`` (no hardware is built).

    ``"bram"``: the power of two from :data:`BOARD_RAM_MIN` holding the memory image, at
    most :data:`BOARD_RAM_CAP`; ``"ddr3"``: the board's DDR3
    (:data:`defslice.hw.board_ddr.DDR3_BYTES`).
    """
    from defslice.errors import ConfigError

    need = image_bytes(cfg)
    if memory == "bram":
        size = BOARD_RAM_MIN
        while size < need and size < BOARD_RAM_CAP:
            size *= 2
    elif memory == "ddr3":
        from defslice.hw.board_ddr import ddr3_bytes

        size = ddr3_bytes(cfg.hw.board)
    else:
        raise ConfigError("--board-memory", memory, "one of bram, ddr3")
    return BoardMemory(cfg.hw.board, memory, size, need, need <= size)


def board_summary_lines(mem: BoardMemory | None) -> list[str]:
    """``summary.md`` lines on the board tree from its memory decision (``None``: no tree
    was asked for)."""
    if mem is None:
        return ["Board tree: not generated (`--no-xilinx`).", ""]
    if mem.fits:
        return [f"Board tree (`verilog/xilinx/`): {mem.describe()}; the workload fits.", ""]
    return [f"Board tree: **refused**, the workload does not fit: {mem.describe()}. "
            "Nothing was generated that would wrap addresses; the DDR3 tree "
            "(`defslice verilog --board-memory ddr3`) holds it.", ""]


class AxiRam(wiring.Component):
    """AXI4 slave (INCR bursts) over one block RAM of ``size`` bytes.

    One read and one write burst are served at a time, concurrently. A read beat beyond
    ``size`` returns zero data with RRESP = SLVERR; a write beat beyond it is dropped and
    its burst answered with BRESP = SLVERR (addresses never wrap). The ``host_*`` port
    (32-bit words) shares the RAM ports and must only be used while the master is idle;
    ``host_err`` flags a host address beyond ``size`` (the bridge then writes nothing);
    ``host_ack`` pulses one cycle after ``host_sel`` rises, with ``host_rdata`` valid.
    """

    def __init__(self, p: HwParams, size: int, image: dict[int, bytes] | None = None) -> None:
        if size % p.bus_bytes or size & (size - 1):
            raise ValueError(f"RAM size must be a power of two of bus words, got {size}")
        self.p, self.size = p, size
        self.init = _words(image or {}, size, p.bus_bytes)
        members = dict(wiring.Signature(axi_members(p, "s")).flip().members.items())
        members.update({"host_addr": In(32), "host_wdata": In(32), "host_we": In(1),
                        "host_rdata": Out(32), "host_sel": In(1), "host_err": Out(1),
                        "host_ack": Out(1)})
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        words = self.size // p.bus_bytes
        m.submodules.mem = self.mem = mem = Memory(shape=p.bus_bits, depth=words,
                                                   init=self.init)
        wp = mem.write_port(granularity=8)
        rp = mem.read_port()
        self._read_side(m, rp, words)
        self._write_side(m, wp, words)
        self._host_port(m, rp, wp, words)
        return m

    def _read_side(self, m: Module, rp: object, words: int) -> None:
        """Reads: a beat counter, one beat per cycle, the RAM read one cycle ahead."""
        sh = self.p.beat_shift
        r_beat = Signal(self.p.addr_bits - sh)     # beat index, not wrapped at ``words``
        r_left = Signal(9)
        r_busy = Signal()
        r_err = Signal()                           # the beat on R lies beyond the RAM
        m.d.comb += [self.s_arready.eq(~r_busy), self.s_rid.eq(0),
                     self.s_rresp.eq(Mux(r_err, AXI_SLVERR, 0))]
        with m.If(self.s_arvalid & ~r_busy):
            m.d.sync += [r_beat.eq(self.s_araddr[sh:]), r_left.eq(self.s_arlen + 1),
                         r_busy.eq(1)]
        advance = r_busy & (~self.s_rvalid | self.s_rready) & (r_left != 0)
        m.d.comb += rp.addr.eq(r_beat)
        with m.If(self.s_rvalid & self.s_rready):
            m.d.sync += self.s_rvalid.eq(0)
        with m.If(advance):
            m.d.sync += [self.s_rvalid.eq(1), r_beat.eq(r_beat + 1), r_left.eq(r_left - 1),
                         self.s_rlast.eq(r_left == 1), r_err.eq(r_beat >= words)]
        with m.If(self.s_rvalid & self.s_rready & self.s_rlast):
            m.d.sync += r_busy.eq(0)
        # The read port registers the address each cycle; keep the beat stable while held.
        m.d.comb += rp.en.eq(~(self.s_rvalid & ~self.s_rready) | self.host_sel)
        m.d.comb += self.s_rdata.eq(Mux(r_err, 0, rp.data))

    def _write_side(self, m: Module, wp: object, words: int) -> None:
        """Writes: beats beyond the RAM are dropped and turn the burst's BRESP to SLVERR."""
        sh = self.p.beat_shift
        w_beat = Signal(self.p.addr_bits - sh)
        w_busy = Signal()
        w_err = Signal()
        m.d.comb += [self.s_awready.eq(~w_busy & ~self.s_bvalid), self.s_wready.eq(w_busy),
                     self.s_bresp.eq(Mux(w_err, AXI_SLVERR, 0)), self.s_bid.eq(0)]
        with m.If(self.s_awvalid & ~w_busy & ~self.s_bvalid):
            m.d.sync += [w_beat.eq(self.s_awaddr[sh:]), w_busy.eq(1), w_err.eq(0)]
        with m.If(self.s_wvalid & w_busy):
            m.d.sync += w_beat.eq(w_beat + 1)
            with m.If(w_beat >= words):
                m.d.sync += w_err.eq(1)
            with m.If(self.s_wlast):
                m.d.sync += [w_busy.eq(0), self.s_bvalid.eq(1)]
        with m.If(self.s_bvalid & self.s_bready):
            m.d.sync += self.s_bvalid.eq(0)
        with m.If(~self.host_sel):
            m.d.comb += [wp.addr.eq(w_beat), wp.data.eq(self.s_wdata)]
            with m.If(self.s_wvalid & w_busy & (w_beat < words)):
                m.d.comb += wp.en.eq(self.s_wstrb)

    def _host_port(self, m: Module, rp: object, wp: object, words: int) -> None:
        """Host access (32-bit words, byte address in bits 30..0) shares the ports."""
        p = self.p
        sh = p.beat_shift
        lanes32 = p.bus_bits // 32
        hsel = self.host_addr[2:sh] if lanes32 > 1 else 0
        beat = self.host_addr[sh:31]
        m.d.comb += self.host_err.eq(beat >= words)
        m.d.sync += self.host_ack.eq(self.host_sel & ~self.host_ack)
        with m.If(self.host_sel):
            m.d.comb += [rp.addr.eq(beat), wp.addr.eq(beat),
                         wp.data.eq(self.host_wdata.replicate(lanes32))]
            with m.If(self.host_we & ~self.host_err):
                m.d.comb += wp.en.eq(0xF << (hsel * 4) if lanes32 > 1 else 0xF)
        if lanes32 > 1:
            m.d.comb += self.host_rdata.eq(rp.data.word_select(hsel, 32))
        else:
            m.d.comb += self.host_rdata.eq(rp.data)


def _words(image: dict[int, bytes], size: int, bus_bytes: int) -> list[int]:
    """Memory image (base -> bytes) as RAM words; an image beyond ``size`` is an error."""
    raw = bytearray(size)
    for base, blob in image.items():
        if base + len(blob) > size:
            raise BoardMemoryError(f"memory image block at {base:#x} ({len(blob)} B) ends "
                                   f"beyond the {size} B RAM")
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

    def __init__(self, divisor: int) -> None:
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
        #: The RAM flags ``ram_addr`` as beyond its size: writes answer ``'E'``.
        self.ram_err = Signal()
        #: The RAM finished the access (``ram_sel`` is held until then; read data valid).
        self.ram_ack = Signal()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        rx_byte, rx_stb = _uart_receiver(m, self.rx, self.divisor)
        tx_data, tx_stb, tx_busy = _uart_transmitter(m, self.tx, self.divisor)
        self._decoder(m, rx_byte, rx_stb, tx_data, tx_stb, tx_busy)
        return m

    def _decoder(self, m: Module, rx_byte: Signal, rx_stb: Signal, tx_data: Signal,
                 tx_stb: Signal, tx_busy: Signal) -> None:
        """Collect 9 command bytes, execute the command, send the reply bytes."""
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
                        m.next = "RAM_W"
                    with m.Else():
                        m.next = "AXIL_W"
                with m.Elif(cmd[:8] == ord("R")):
                    with m.If(is_ram):
                        m.next = "RAM_R"
                    with m.Else():
                        m.next = "AXIL_AR"
                with m.Else():
                    m.next = "RECV"
            with m.State("RAM_W"):
                m.d.comb += [self.ram_sel.eq(1), self.ram_we.eq(~self.ram_err)]
                with m.If(self.ram_ack):
                    m.d.sync += [reply.eq(Mux(self.ram_err, ord("E"), ord("K"))), n_tx.eq(1)]
                    m.next = "SEND"
            with m.State("RAM_R"):
                m.d.comb += self.ram_sel.eq(1)
                with m.If(self.ram_ack):
                    m.d.sync += [reply.eq(Mux(self.ram_err, 0, self.ram_rdata)), n_tx.eq(4)]
                    m.next = "SEND"
            self._register_states(m, reply, n_tx)
            with m.State("SEND"):
                m.d.comb += tx_data.eq(reply[:8])
                with m.If(n_tx == 0):
                    m.next = "RECV"
                with m.Elif(~tx_busy & ~tx_stb):
                    m.d.sync += tx_stb.eq(1)
                with m.Elif(tx_busy & tx_stb):
                    m.d.sync += [tx_stb.eq(0), reply.eq(reply >> 8), n_tx.eq(n_tx - 1)]

    def _register_states(self, m: Module, reply: Signal, n_tx: Signal) -> None:
        """The bridge FSM's AXI4-Lite states: one write or one read, then ``SEND``."""
        a = self.axil
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


def _uart_receiver(m: Module, rx_pin: Signal, d: int) -> tuple[Signal, Signal]:
    """8N1 receiver, ``d`` cycles per bit: (byte, one-cycle strobe on a valid stop bit)."""
    rx_sync = Signal(2, init=0b11)
    m.d.sync += rx_sync.eq(Cat(rx_pin, rx_sync[0]))
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
    return rx_byte, rx_stb


def _uart_transmitter(m: Module, tx_pin: Signal, d: int) -> tuple[Signal, Signal, Signal]:
    """8N1 transmitter, ``d`` cycles per bit: (data, start strobe, busy)."""
    tx_data = Signal(8)
    tx_stb = Signal()
    tx_busy = Signal()
    tx_sr = Signal(10, init=0x3FF)
    tx_cnt = Signal(range(d))
    tx_bits = Signal(4)
    m.d.comb += tx_pin.eq(tx_sr[0])
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
    return tx_data, tx_stb, tx_busy


#: The bridge's AXI4-Lite master ports: the register port's (:data:`regmap.AXIL_PORTS`)
#: but the protection types, which are tied to 0.
_AXIL_WIDTHS = {name: port.width for name, port in regmap.AXIL_PORTS.items()
                if not name.endswith("prot")}
#: Those the bridge drives.
_FROM_BRIDGE = tuple(name for name in _AXIL_WIDTHS if not regmap.AXIL_PORTS[name].slave_out)

#: AXI4 signal suffixes the slave drives (the rest the master drives).
FROM_SLAVE = ("awready", "wready", "bid", "bresp", "bvalid", "arready", "rid", "rdata",
              "rresp", "rlast", "rvalid")


def connect_axi(m: Module, p: HwParams, master: object, mprefix: str, slave: object,
                sprefix: str) -> None:
    """Wire ``master``'s AXI4 ports ``{mprefix}{suffix}`` to ``slave``'s ``{sprefix}{suffix}``."""
    for name in axi_members(p, "m"):
        suffix = name[2:]
        src, dst = getattr(master, f"{mprefix}{suffix}"), getattr(slave, f"{sprefix}{suffix}")
        m.d.comb += src.eq(dst) if suffix in FROM_SLAVE else dst.eq(src)


def connect_registers(m: Module, core: wiring.Component, bridge: UartBridge) -> None:
    """Wire the bridge's AXI4-Lite master to ``core``'s register port."""
    for name, sig in bridge.axil.items():
        port = getattr(core, f"s_axil_{name}")
        m.d.comb += port.eq(sig) if name in _FROM_BRIDGE else sig.eq(port)
    m.d.comb += [core.s_axil_awprot.eq(0), core.s_axil_arprot.eq(0)]


def attach_bridge(m: Module, platform: object, uart_divisor: int | None, core: wiring.Component,
                  memory: object) -> UartBridge:
    """Add the :class:`UartBridge` (bit time ``uart_divisor`` cycles, else 115200 baud at
    the platform's clock) wired to ``core``'s registers and ``memory``'s ``host_*`` port."""
    if uart_divisor is None:
        uart_divisor = int(platform.default_clk_frequency) // 115200
    m.submodules.bridge = bridge = UartBridge(uart_divisor)
    connect_registers(m, core, bridge)
    m.d.comb += [memory.host_addr.eq(bridge.ram_addr), memory.host_wdata.eq(bridge.ram_wdata),
                 memory.host_we.eq(bridge.ram_we), memory.host_sel.eq(bridge.ram_sel),
                 bridge.ram_rdata.eq(memory.host_rdata), bridge.ram_err.eq(memory.host_err),
                 bridge.ram_ack.eq(memory.host_ack)]
    return bridge


def connect_board_io(m: Module, platform: object, core: wiring.Component,
                     bridge: UartBridge) -> None:
    """The board's USB-UART to the bridge; LEDs 0..2 show busy, done, error."""
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


class BoardTop(Elaboratable):
    """``defslice_top`` (either engine, :func:`~defslice.hw.build_top`) + :class:`AxiRam`
    + :class:`UartBridge` for an amaranth-boards platform (resources ``uart``, ``led``
    0..2; the platform's default clock and reset).

    The RAM size is :func:`board_memory`'s; a configuration whose memory image does not
    fit raises :class:`BoardMemoryError` (nothing that would wrap addresses is built).
    ``uart_divisor`` overrides the bit time (clock cycles) for simulation; ``image``
    (base address -> bytes, e.g. :meth:`SlicedProgram.memory_image`) preloads the RAM.
    """

    def __init__(self, p: HwParams, uart_divisor: int | None = None,
                 image: dict[int, bytes] | None = None) -> None:
        self.p = p
        self.uart_divisor = uart_divisor
        self.memory = board_memory(p.cfg)
        if not self.memory.fits:
            self._MustUse__silence = True    # refused: nothing to elaborate
            raise BoardMemoryError(self.memory.refusal(p.cfg.name))
        self.ram_bytes = self.memory.size_bytes
        self.top = build_top(p)
        self.ram = AxiRam(p, self.ram_bytes, image)
        self._bridge = None

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.core = core = self.top
        m.submodules.ram = ram = self.ram
        connect_axi(m, self.p, core, "m_axi_", ram, "s_")
        bridge = self._bridge = attach_bridge(m, platform, self.uart_divisor, core, ram)
        if platform is not None:
            connect_board_io(m, platform, core, bridge)
        return m


def write_board_tree(cfg: Config, out_dir: Path, platform: object,
                     memory: str = "bram") -> BoardMemory:
    """Extract the Vivado build tree of the board wrapper into ``out_dir``.

    Only when the memory image fits ``memory`` (:func:`board_memory`); otherwise a stale
    tree in ``out_dir`` is removed and nothing is written. Returns the decision either way.
    """
    import shutil

    from defslice.hw.params import derive

    mem = board_memory(cfg, memory)
    shutil.rmtree(out_dir, ignore_errors=True)
    if not mem.fits:
        return mem
    if memory == "ddr3":
        from defslice.hw.board_ddr import write_ddr_tree

        write_ddr_tree(cfg, Path(out_dir), platform)
        return mem
    plan = platform.build(BoardTop(derive(cfg)), name="defslice_board",
                          build_dir=str(out_dir), do_build=False)
    plan.extract(str(out_dir))
    return mem
