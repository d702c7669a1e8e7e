"""AXI4 register slice: a two-entry skid buffer whose ready and valid are flip-flops."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiSlice"]


class AxiSlice(wiring.Component):
    """One AXI4 channel of a master through a register slice (full throughput).

    The source's ``ready`` is a flip-flop ("the spare entry is free") and the sink's
    ``valid`` and payload come from the output register, so no combinational path
    crosses the slice in either direction. A beat taken while the output register is
    held waits in the spare entry; beats leave in order, each once.

    Parameters
    ----------
    signature : wiring.Signature
        The channel as seen by the master (:class:`~defslice.hw.axi.ReadDataSignature`,
        :class:`~defslice.hw.axi.AddressSignature` ...): ``valid``, ``ready`` and the
        payload members, all of them flowing as ``valid``.

    Members
    -------
    bus : Out(signature)
        The channel's side on the bus (connect it to the flat ports with
        :func:`~defslice.hw.axi.connect_flat`).
    inner : In(signature)
        The same channel as the master's logic sees it.

    For a channel the slave drives (R, B) beats go from ``bus`` to ``inner`` and
    ``bus.ready`` is the registered one; for a channel the master drives (AR, AW, W) from
    ``inner`` to ``bus``, ``inner.ready`` registered.
    """

    #: Cycles from a beat's handshake at the source to its ``valid`` at the sink.
    latency = 1

    def __new__(cls, signature: wiring.Signature, **kwargs: object) -> AxiSlice:
        # Refuse before the object exists: a refused one would be reported as an
        # elaboratable created and never used.
        cls._payload(signature)
        return super().__new__(cls, signature, **kwargs)

    def __init__(self, signature: wiring.Signature) -> None:
        self.fields = self._payload(signature)
        self._from_bus = signature.members["valid"].flow == In
        super().__init__({"bus": Out(signature), "inner": In(signature)})

    @staticmethod
    def _payload(signature: wiring.Signature) -> tuple[str, ...]:
        """The payload member names (all but ``valid`` and ``ready``), checked."""
        members = signature.members
        if "valid" not in members or "ready" not in members:
            raise ValueError(f"signature must have valid and ready members, not "
                             f"{list(members)}")
        flow = members["valid"].flow
        if members["ready"].flow == flow:
            raise ValueError("signature's ready must flow against its valid")
        wrong = [name for name, mb in members.items()
                 if name != "ready" and (mb.flow != flow or not mb.is_port)]
        if wrong:
            raise ValueError(f"payload members must be ports flowing as valid: {wrong}")
        return tuple(name for name in members if name not in ("valid", "ready"))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        src, snk = (self.bus, self.inner) if self._from_bus else (self.inner, self.bus)
        out = {name: Signal.like(getattr(src, name), name=f"out_{name}")
               for name in self.fields}
        spare = {name: Signal.like(getattr(src, name), name=f"spare_{name}")
                 for name in self.fields}
        out_valid, spare_valid = Signal(), Signal()
        ready = Signal(init=1)              # == ~spare_valid, its own flip-flop
        take = src.valid & ready
        m.d.comb += [src.ready.eq(ready), snk.valid.eq(out_valid)]
        m.d.comb += [getattr(snk, name).eq(out[name]) for name in self.fields]
        with m.If(~out_valid | snk.ready):                  # the output register moves
            with m.If(spare_valid):
                m.d.sync += [out[name].eq(spare[name]) for name in self.fields]
                m.d.sync += [out_valid.eq(1), spare_valid.eq(0), ready.eq(1)]
            with m.Else():
                m.d.sync += [out[name].eq(getattr(src, name)) for name in self.fields]
                m.d.sync += out_valid.eq(take)
        with m.Elif(take):                                  # held: into the spare entry
            m.d.sync += [spare[name].eq(getattr(src, name)) for name in self.fields]
            m.d.sync += [spare_valid.eq(1), ready.eq(0)]
        return m
