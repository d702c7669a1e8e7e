"""Row table: a slice's offset-network rows and what the operand fetch derives from each alone."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.sequencer import INDEX_BITS
from defslice.model.layer_layout import LayerDims

__all__ = ["ADDR", "COORD", "ROW_LATENCY", "RowTable", "row_entry", "row_layout"]

#: Cycles from a fill request to its entry being written (readable one cycle later).
ROW_LATENCY = 4
#: A signed word address; a signed window-relative pixel coordinate.
ADDR = signed(2 * INDEX_BITS)
COORD = signed(INDEX_BITS + 2)


def row_layout(dims: LayerDims) -> data.StructLayout:
    """An entry of the row table (:func:`row_entry`)."""
    return data.StructLayout({
        "key": data.ArrayLayout(unsigned(INDEX_BITS), 3),  # (key_row, key_col, group)
        "parity": 2,                                       # window parity of the tap origin
        "base": ADDR,                                      # q-bank word of the origin's quad
        "word": unsigned(INDEX_BITS),                      # first word of the group in a pixel
        "inside": data.ArrayLayout(dims.kernel + 1, 2),    # kernel offsets inside the window
    })


def row_entry(dims: LayerDims, lanes: int, bank_cols: int, window: dict,
              key: tuple[int, int, int]) -> dict:
    """Row-table entry of offset-network row ``key`` = ``(key_row, key_col, group)`` in the
    window ``row0, col0, rows, cols`` (map pixels).

    The row's kernel taps start at ``tap = key * stride - pad - (row0, col0)``
    (window-relative); ``parity`` = ``2 (tap_y & 1) + (tap_x & 1)``; ``base`` = ``((tap_y
    >> 1) bank_cols + (tap_x >> 1)) C / L + group C_g / L`` (floor shifts), the word, in
    the parity banks, of the quad at the origin plus the group's first word (``word``);
    bit ``t`` of ``inside[a]`` is ``0 <= tap_a + t < (rows, cols)[a]``, ``t <= kernel``.
    """
    pw, gw = dims.channels // lanes, dims.group_channels // lanes
    tap = [key[a] * dims.stride - dims.spec.padding - window[("row0", "col0")[a]]
           for a in range(2)]
    ext = [window["rows"], window["cols"]]
    inside = [sum(1 << t for t in range(dims.kernel + 1) if 0 <= tap[a] + t < ext[a])
              for a in range(2)]
    return {"key": list(key), "parity": 2 * (tap[0] & 1) + (tap[1] & 1),
            "base": ((tap[0] >> 1) * bank_cols + (tap[1] >> 1)) * pw + key[2] * gw,
            "word": key[2] * gw, "inside": inside}


class RowTable(wiring.Component):
    """The row table of the slice in ``window``: entries computed from their keys in a
    pipeline (:data:`ROW_LATENCY`), read combinationally.

    Members
    -------
    window : In(StructLayout)
        ``row0, col0, rows, cols`` of the slice's window (held while it is filled and read).
    fill : In(stream.Signature(addr, key), always_ready=True)
        Entry ``addr`` is row ``key``; written :data:`ROW_LATENCY` cycles later.
    rd_addr : In(unsigned); rd_data : Out(row_layout(dims))
        A read port (combinational).
    """

    def __init__(self, plan: LayerPlan, bank_cols: int) -> None:
        self.plan, self.bank_cols = plan, bank_cols
        self.depth = plan.max_keys * plan.dims.groups
        key = data.ArrayLayout(unsigned(INDEX_BITS), 3)
        super().__init__({
            "window": In(data.StructLayout({n: signed(INDEX_BITS)
                                            for n in ("row0", "col0", "rows", "cols")})),
            "fill": In(stream.Signature(data.StructLayout({"addr": unsigned(INDEX_BITS),
                                                           "key": key}), always_ready=True)),
            "rd_addr": In(unsigned(INDEX_BITS)), "rd_data": Out(row_layout(plan.dims)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        d, L = self.plan.dims, self.plan.lanes
        pw, gw, pad, w = d.channels // L, d.group_channels // L, d.spec.padding, self.window
        m.submodules.mem = mem = memory.Memory(shape=row_layout(d), depth=self.depth, init=[])
        wp, rp = mem.write_port(), mem.read_port(domain="comb")
        m.d.comb += [rp.addr.eq(self.rd_addr), self.rd_data.eq(rp.data)]
        # The window's edges less the padding (registered: the window is held).
        lo = [Signal(COORD, name=f"lo{a}") for a in range(2)]
        hi = [Signal(COORD, name=f"hi{a}") for a in range(2)]
        m.d.sync += [lo[0].eq(w.row0 + pad), lo[1].eq(w.col0 + pad),
                     hi[0].eq(w.row0 + pad + w.rows), hi[1].eq(w.col0 + pad + w.cols)]
        # Stages: the key; key * stride; tap and room; parity, inside, address parts.
        s = [Signal(data.StructLayout({"en": 1, "addr": unsigned(INDEX_BITS),
                                       "key": self.fill.payload.key.shape(),
                                       "v": data.ArrayLayout(COORD, 2),
                                       "room": data.ArrayLayout(COORD, 2)}), name=f"s{k}")
             for k in range(3)]
        s4 = Signal(data.StructLayout({"en": 1, "addr": unsigned(INDEX_BITS),
                                       "entry": row_layout(d), "part": data.ArrayLayout(ADDR, 2)}),
                    name="s3")
        m.d.sync += [s[0].en.eq(self.fill.valid), s[0].addr.eq(self.fill.payload.addr),
                     s[0].key.eq(self.fill.payload.key)]
        for k in (1, 2):
            m.d.sync += [s[k].en.eq(s[k - 1].en), s[k].addr.eq(s[k - 1].addr),
                         s[k].key.eq(s[k - 1].key)]
        for a in range(2):
            m.d.sync += [s[1].v[a].eq(s[0].key[a] * d.stride),
                         s[2].v[a].eq(s[1].v[a] - lo[a]), s[2].room[a].eq(hi[a] - s[1].v[a])]
            for t in range(d.kernel + 1):
                m.d.sync += s4.entry.inside[a][t].eq((s[2].v[a] >= -t) & (s[2].room[a] > t))
        m.d.sync += [s4.en.eq(s[2].en), s4.addr.eq(s[2].addr), s4.entry.key.eq(s[2].key),
                     s4.entry.parity.eq(Cat(s[2].v[1][0], s[2].v[0][0])),
                     s4.part[0].eq((s[2].v[0] >> 1) * (self.bank_cols * pw)),
                     s4.part[1].eq((s[2].v[1] >> 1) * pw),
                     s4.entry.word.eq(s[2].key[2] * gw)]
        m.d.comb += [wp.en.eq(s4.en), wp.addr.eq(s4.addr)]
        for name in ("key", "parity", "word", "inside"):
            m.d.comb += getattr(wp.data, name).eq(getattr(s4.entry, name))
        m.d.comb += wp.data.base.eq(s4.part[0] + s4.part[1] + s4.entry.word)
        return m
