"""AXI4 master channel signatures, the flat port names and the burst-splitting rule."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.params import AXI_ID_BITS, HwParams, require_params
from defslice.hw.records import COUNT_BITS
from defslice.model.layout import PAGE

__all__ = [
    "AXI_CHANNELS",
    "AddressSignature",
    "BurstWalker",
    "ReadDataSignature",
    "WriteDataSignature",
    "WriteResponseSignature",
    "axi_members",
    "burst_beats",
    "burst_beats_registered",
    "connect_flat",
]

#: AXI4 burst type INCR (the only one the master issues).
BURST_INCR = 1


class AddressSignature(wiring.Signature):
    """An AXI4 address channel (AW or AR) as seen by the master.

    Members
    -------
    id : Out(id_bits); addr : Out(addr_bits); len : Out(8)
        Beats - 1; size : Out(3) log2 bytes per beat; burst : Out(2); lock : Out(1);
        cache : Out(4); prot : Out(3); valid : Out(1); ready : In(1).
    """

    def __init__(self, addr_bits: int, id_bits: int = AXI_ID_BITS) -> None:
        if not isinstance(addr_bits, int) or addr_bits < 1:
            raise ValueError(f"addr_bits must be a positive integer, not {addr_bits!r}")
        super().__init__({
            "id": Out(id_bits), "addr": Out(addr_bits), "len": Out(8), "size": Out(3),
            "burst": Out(2), "lock": Out(1), "cache": Out(4), "prot": Out(3),
            "valid": Out(1), "ready": In(1),
        })


class WriteDataSignature(wiring.Signature):
    """The AXI4 W channel as seen by the master: ``data``, ``strb``, ``last``, ``valid``
    (Out) and ``ready`` (In)."""

    def __init__(self, data_bits: int) -> None:
        if not isinstance(data_bits, int) or data_bits < 8 or data_bits % 8:
            raise ValueError(f"data_bits must be a positive multiple of 8, not {data_bits!r}")
        super().__init__({"data": Out(data_bits), "strb": Out(data_bits // 8),
                          "last": Out(1), "valid": Out(1), "ready": In(1)})


class WriteResponseSignature(wiring.Signature):
    """The AXI4 B channel as seen by the master: ``id``, ``resp``, ``valid`` (In) and
    ``ready`` (Out)."""

    def __init__(self, id_bits: int = AXI_ID_BITS) -> None:
        super().__init__({"id": In(id_bits), "resp": In(2), "valid": In(1),
                          "ready": Out(1)})


class ReadDataSignature(wiring.Signature):
    """The AXI4 R channel as seen by the master: ``id``, ``data``, ``resp``, ``last``,
    ``valid`` (In) and ``ready`` (Out)."""

    def __init__(self, data_bits: int, id_bits: int = AXI_ID_BITS) -> None:
        if not isinstance(data_bits, int) or data_bits < 8 or data_bits % 8:
            raise ValueError(f"data_bits must be a positive multiple of 8, not {data_bits!r}")
        super().__init__({"id": In(id_bits), "data": In(data_bits), "resp": In(2),
                          "last": In(1), "valid": In(1), "ready": Out(1)})


def _channels(p: HwParams) -> dict[str, wiring.Signature]:
    return {"aw": AddressSignature(p.addr_bits), "w": WriteDataSignature(p.bus_bits),
            "b": WriteResponseSignature(), "ar": AddressSignature(p.addr_bits),
            "r": ReadDataSignature(p.bus_bits)}


#: The five channels of an AXI4 master, in port order.
AXI_CHANNELS = ("aw", "w", "b", "ar", "r")


def axi_members(p: HwParams, prefix: str = "m_axi") -> dict[str, wiring.Member]:
    """Flat AXI4 master ports (``{prefix}_awid`` ...), the directions of a master, named as
    cocotbext-axi's ``AxiBus.from_prefix`` expects."""
    return {f"{prefix}_{ch}{name}": member
            for ch, sig in _channels(p).items() for name, member in sig.members.items()}


def connect_flat(m: Module, flat: object, prefix: str, iface: object) -> None:
    """Connect the channel interface ``iface`` (an :class:`AddressSignature` ... member
    of a component) to the flat ports ``{prefix}{name}`` of ``flat`` (the top).

    ``flat``'s ports have the directions of a master, like ``iface``'s: the master's
    outputs go out, its inputs come in.
    """
    for name, member in iface.signature.members.items():
        port, inner = getattr(flat, f"{prefix}{name}"), getattr(iface, name)
        if member.flow == Out:
            m.d.comb += port.eq(inner)
        else:
            m.d.comb += inner.eq(port)


def burst_beats(m: Module, p: HwParams, addr: Value, remaining: Value, name: str) -> Signal:
    """Beats of the next burst of a region: ``min(max_beats, remaining, to the next 4 KiB
    boundary)`` -- the hardware twin of :func:`defslice.model.layout.split_bursts`."""
    page_bits = (PAGE - 1).bit_length()
    to_page = Signal(range(PAGE // p.bus_bytes + 1), name=f"{name}_to_page")
    beats = Signal(range(p.max_beats + 1), name=f"{name}_beats")
    m.d.comb += to_page.eq((PAGE - addr[:page_bits]) >> p.beat_shift)
    with m.If((remaining <= to_page) & (remaining <= p.max_beats)):
        m.d.comb += beats.eq(remaining)
    with m.Elif(to_page <= p.max_beats):
        m.d.comb += beats.eq(to_page)
    with m.Else():
        m.d.comb += beats.eq(p.max_beats)
    return beats


def burst_beats_registered(m: Module, p: HwParams, addr: Value, remaining: Value,
                           name: str) -> tuple[Signal, Value, Signal]:
    """:func:`burst_beats` one cycle late, off the critical path.

    Returns ``(beats, ok, touch)``. The caller drives ``touch`` high in every cycle in
    which it assigns ``addr`` or ``remaining``; ``beats`` is computed from last cycle's
    values and ``ok`` is high when they did not change since, i.e. ``beats`` is exact.
    """
    comb = burst_beats(m, p, addr, remaining, name)
    beats = Signal.like(comb, name=f"{name}_beats_q")
    touch = Signal(name=f"{name}_touch")
    fresh = Signal(name=f"{name}_fresh", init=1)
    m.d.sync += [beats.eq(comb), fresh.eq(touch)]
    return beats, ~fresh, touch


class BurstWalker(wiring.Component):
    """Walks one DRAM region burst by burst (:func:`burst_beats_registered`).

    Members
    -------
    load : In(1)
        Start a region at ``load_addr`` (bytes, bus aligned) of ``load_beats`` beats.
    load_addr : In(addr_bits); load_beats : In(32)
    advance : In(1)
        The current burst was accepted: move past it. Never together with ``load``.
    addr : Out(addr_bits)
        Byte address of the current burst.
    remaining : Out(32)
        Beats of the region not yet issued (the current burst included).
    beats : Out(range(max_beats + 1))
        Length of the current burst; exact only while ``ok``.
    ok : Out(1)
        ``beats`` is exact (low for one cycle after every ``load`` or ``advance``).
    last : Out(1)
        The current burst is the region's last (``remaining == beats``).
    """

    def __init__(self, p: HwParams, name: str) -> None:
        self.p = require_params(p)
        self.prefix = name
        super().__init__({
            "load": In(1), "load_addr": In(p.addr_bits), "load_beats": In(COUNT_BITS),
            "advance": In(1), "addr": Out(p.addr_bits), "remaining": Out(COUNT_BITS),
            "beats": Out(range(p.max_beats + 1)), "ok": Out(1), "last": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        addr = Signal(p.addr_bits, name=f"{self.prefix}_addr")
        rem = Signal(COUNT_BITS, name=f"{self.prefix}_rem")
        beats, ok, touch = burst_beats_registered(m, p, addr, rem, self.prefix)
        m.d.comb += [self.addr.eq(addr), self.remaining.eq(rem), self.beats.eq(beats),
                     self.ok.eq(ok), self.last.eq(rem == beats),
                     touch.eq(self.load | self.advance)]
        with m.If(self.load):
            m.d.sync += [addr.eq(self.load_addr), rem.eq(self.load_beats)]
        with m.Elif(self.advance):
            m.d.sync += [addr.eq(addr + (beats << p.beat_shift)), rem.eq(rem - beats)]
        return m
