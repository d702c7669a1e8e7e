"""Window loader: the read side of the AXI4 master, from descriptors to loaded slices.

:class:`Loader` wires the :class:`~defslice.hw.reader.Reader` (AR), the
:class:`~defslice.hw.router.Router` (R) and the :class:`~defslice.hw.banks.WindowBanks`.
Given the register values and a start pulse it reads every descriptor, loads each
slice's window into a free buffer set, streams the slice's point records and hands the
slice off; the consumer reads the banks and releases the set when done. An engine that
computes on slice windows uses it as is.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.axi import AddressSignature, ReadDataSignature
from defslice.hw.banks import SET_BITS, BankReadSignature, WindowBanks
from defslice.hw.params import HwParams, require_params
from defslice.hw.reader import Reader
from defslice.hw.regmap import REG_BITS
from defslice.hw.router import Router, slice_layout

__all__ = ["Loader"]


class Loader(wiring.Component):
    """Reader, router and window banks.

    Members
    -------
    ar : Out(AddressSignature(addr_bits)); r : Out(ReadDataSignature(bus_bits))
        The AXI4 read channels.
    start : In(1)
        Pulse: load the ``num_desc`` descriptors at ``desc_base``.
    value_base, query_base, desc_base, out_base, num_desc : In(32)
        Registers (``hw/regmap.py``).
    slice : Out(stream.Signature(slice_layout(p)))
        A slice whose window is in set ``set`` of the banks.
    queries : Out(stream.Signature(bus_bits))
        The point records of the slices, in slice order, as bus beats.
    banks : In(BankReadSignature(p))
        The read port of the window banks.
    release, release_set : In(1), In(1)
        Pulse: the slice in ``release_set`` is computed, its set is free.
    done : Out(1)
        Every read burst of the run is issued and its data consumed.
    error_window, error_resp : Out(1)
        STATUS bit 2; a read response was not OKAY (STATUS bit 3).
    """

    def __init__(self, p: HwParams) -> None:
        self.p = require_params(p)
        super().__init__({
            "ar": Out(AddressSignature(p.addr_bits)), "r": Out(ReadDataSignature(p.bus_bits)),
            "start": In(1), "value_base": In(REG_BITS), "query_base": In(REG_BITS),
            "desc_base": In(REG_BITS), "out_base": In(REG_BITS), "num_desc": In(REG_BITS),
            "slice": Out(stream.Signature(slice_layout(p))),
            "queries": Out(stream.Signature(p.bus_bits)),
            "banks": In(BankReadSignature(p)),
            "release": In(1), "release_set": In(SET_BITS),
            "done": Out(1), "error_window": Out(1), "error_resp": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.reader = reader = Reader(self.p)
        m.submodules.router = router = Router(self.p)
        m.submodules.banks = banks = WindowBanks(self.p)
        wiring.connect(m, reader.tags, router.tags)
        wiring.connect(m, router.desc, reader.desc)
        wiring.connect(m, wiring.flipped(self.ar), reader.ar)
        wiring.connect(m, wiring.flipped(self.r), router.r)
        wiring.connect(m, wiring.flipped(self.slice), router.slice)
        wiring.connect(m, wiring.flipped(self.queries), router.queries)
        wiring.connect(m, wiring.flipped(self.banks), banks.rd)
        m.d.comb += [
            reader.start.eq(self.start), reader.value_base.eq(self.value_base),
            reader.desc_base.eq(self.desc_base), reader.num_desc.eq(self.num_desc),
            reader.error_window.eq(router.error_window), reader.set_busy.eq(banks.busy),
            reader.q_level.eq(router.q_level), reader.q_push.eq(router.q_push),
            router.start.eq(self.start), router.query_base.eq(self.query_base),
            router.out_base.eq(self.out_base),
            banks.wr_en.eq(router.wr_en), banks.wr_addr.eq(router.wr_addr),
            banks.wr_data.eq(router.wr_data),
            banks.claim.eq(reader.claim), banks.claim_set.eq(reader.claim_set),
            banks.release.eq(self.release), banks.release_set.eq(self.release_set),
            banks.clear.eq(self.start),
            self.done.eq(reader.done & router.done),
            self.error_window.eq(router.error_window), self.error_resp.eq(router.error_resp),
        ]
        return m
