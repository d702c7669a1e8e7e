"""Parameter reader: the parameter region's AXI read bursts, ahead of the window loader."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.axi import BURST_INCR, AddressSignature, BurstWalker, ReadDataSignature
from defslice.hw.params import HwParams, require_params
from defslice.hw.records import COUNT_BITS
from defslice.hw.regmap import REG_BITS

__all__ = ["ParamReader"]


class ParamReader(wiring.Component):
    """Reads the parameter region once per run, then hands the read channels to the loader.

    On ``start`` it requests the region (``weight_base``, ``beats`` bus beats) in the
    bursts of :func:`~defslice.model.layout.split_bursts`; the window loader's read
    requests (``loader_ar``) wait until the last of them is accepted. AXI returns the reads
    of one ID in order, so the first ``beats`` R beats of a run are the parameters: they
    go to ``params``, every later beat to ``loader_r``.

    Parameters
    ----------
    p : HwParams
        Bus width, burst length, address width.
    beats : int
        Bus beats of the parameter region (``LayerLayout.param_bytes / bus_bytes``).

    Members
    -------
    ar : Out(AddressSignature(addr_bits)); r : Out(ReadDataSignature(bus_bits))
        The AXI4 read channels (master side).
    loader_ar : In(AddressSignature(addr_bits)); loader_r : In(ReadDataSignature(bus_bits))
        The window loader's read channels, passed through after the parameters.
    params : Out(stream.Signature(bus_bits))
        The parameter region's beats, in address order.
    start : In(1)
        Pulse: a run starts.
    weight_base : In(32)
        Byte address of the parameter region (bus aligned).
    busy : Out(1)
        A parameter burst is still to be requested or a parameter beat to be received.
    error_resp : Out(1)
        A parameter beat's response was not OKAY (cleared by ``start``).
    """

    def __init__(self, p: HwParams, beats: int) -> None:
        self.p = require_params(p)
        if beats < 1:
            raise ValueError(f"beats must be at least 1, not {beats}")
        self.beats = beats
        super().__init__({
            "ar": Out(AddressSignature(p.addr_bits)), "r": Out(ReadDataSignature(p.bus_bits)),
            "loader_ar": In(AddressSignature(p.addr_bits)),
            "loader_r": In(ReadDataSignature(p.bus_bits)),
            "params": Out(stream.Signature(p.bus_bits)),
            "start": In(1), "weight_base": In(REG_BITS), "busy": Out(1), "error_resp": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        m.submodules.walk = walk = BurstWalker(p, "pa")
        requesting = Signal()           # parameter bursts still to be requested
        left = Signal(COUNT_BITS)       # parameter beats still to be received
        ar, lar = self.ar, self.loader_ar
        m.d.comb += [walk.load_addr.eq(self.weight_base), walk.load_beats.eq(self.beats),
                     walk.load.eq(self.start)]
        with m.If(requesting):
            m.d.comb += [ar.valid.eq(walk.ok), ar.addr.eq(walk.addr),
                         ar.len.eq(walk.beats - 1), ar.size.eq(p.beat_shift),
                         ar.burst.eq(BURST_INCR), ar.id.eq(0), ar.lock.eq(0),
                         ar.cache.eq(0), ar.prot.eq(0)]
            with m.If(ar.valid & ar.ready):
                m.d.comb += walk.advance.eq(1)
                with m.If(walk.last):
                    m.d.sync += requesting.eq(0)
        with m.Elif(~self.start):
            m.d.comb += [getattr(ar, name).eq(getattr(lar, name))
                         for name in ("id", "addr", "len", "size", "burst", "lock", "cache",
                                      "prot", "valid")]
            m.d.comb += lar.ready.eq(ar.ready)
        r, lr = self.r, self.loader_r
        with m.If(left != 0):
            m.d.comb += [self.params.valid.eq(r.valid), self.params.payload.eq(r.data),
                         r.ready.eq(self.params.ready)]
            with m.If(r.valid & r.ready):
                m.d.sync += left.eq(left - 1)
                with m.If(r.resp != 0):
                    m.d.sync += self.error_resp.eq(1)
        with m.Else():
            m.d.comb += [lr.valid.eq(r.valid), lr.data.eq(r.data), lr.resp.eq(r.resp),
                         lr.last.eq(r.last), lr.id.eq(r.id), r.ready.eq(lr.ready)]
        with m.If(self.start):            # last: a new run wins over the old one's beats
            m.d.sync += [requesting.eq(1), left.eq(self.beats), self.error_resp.eq(0)]
        m.d.comb += self.busy.eq(requesting | (left != 0))
        return m
