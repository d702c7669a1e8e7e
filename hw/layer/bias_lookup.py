"""Position bias: the relative-position table sampled bilinearly per query and key (9b)."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import round_half_up
from defslice.hw.deep_memory import DeepMemory

__all__ = ["BiasLookup"]

BANKS = 4


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


class BiasLookup(wiring.Component):
    """One bias per cycle from four parity banks of the ``rpe`` table.

    Model (``docs/numerics.md``, step 9b): the key's bias position ``(py, px)`` in
    Q(``f``) splits into corners ``(cy, cx)`` and weights ``w`` (those of step 7); for
    query pixel ``(qy, qx)`` and head ``h``, ``bias = rnd(sum_corners RPE[h, qy - cy + H - 1,
    qx - cx + W - 1] w, 2f + rf - lf)``; an index outside ``[0, 2H-2] x [0, 2W-2]`` reads 0.
    The two corner rows (and columns) of one footprint have different parities, so the
    four entries sit in four banks, bank ``2 (ty & 1) + (tx & 1)``, entry
    ``(h * H + (ty >> 1)) * W + (tx >> 1)`` (``docs/dram.md``).

    Arguments
    ---------
    height, width : int
        Map size H x W (the table is (2H - 1) x (2W - 1) per head).
    heads, groups : int
        Attention heads; the bias of head ``h`` uses group ``h * groups // heads``.
    max_keys : int
        Keys per group the key memory holds.
    coord_bits, coord_frac : int
        Positions (``numerics.coord_*``).
    rpe_bits, shift : int
        Table entry width and ``2f + rpe_frac - logit_frac``.
    per_word : int
        Table entries per bank word (the bank is written a word at a time).

    Members
    -------
    key_w : In(stream.Signature(..., always_ready=True))
        Writes a key's bias position: ``key``, ``group``, ``py``, ``px``.
    table_w : In(stream.Signature(..., always_ready=True))
        Writes word ``addr`` (``per_word`` entries) of every bank: ``data[bank]``, one
        beat of the interleaved DRAM section.
    i : In(stream.Signature(..., always_ready=True))
        A lookup: ``qy``, ``qx``, ``head``, ``key``, ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        ``bias`` (signed ``bias_bits``), ``tag``; ``latency`` cycles after ``i``.
    """

    latency = 8

    def __init__(self, height: int, width: int, heads: int, groups: int, max_keys: int,
                 coord_bits: int, coord_frac: int, rpe_bits: int, shift: int,
                 per_word: int = 1, tag_bits: int = 1) -> None:
        if heads % groups:
            raise ValueError(f"groups ({groups}) must divide heads ({heads})")
        if per_word < 1 or per_word & (per_word - 1):
            raise ValueError(f"per_word must be a power of two, not {per_word}")
        if shift < 0:
            raise ValueError(f"shift must be >= 0, not {shift}")
        self.H, self.W, self.heads, self.groups = height, width, heads, groups
        self.max_keys, self.f, self.coord_bits = max_keys, coord_frac, coord_bits
        self.rpe_bits, self.shift, self.per_word = rpe_bits, shift, per_word
        self.bank_entries = heads * height * width
        self.bank_words = -(-self.bank_entries // per_word)
        self.bias_bits = max(2, rpe_bits + 2 * coord_frac - shift + 2)
        int_bits = coord_bits - coord_frac
        self.key_layout = data.StructLayout({
            "y0": signed(int_bits), "x0": signed(int_bits),
            "w": data.ArrayLayout(unsigned(2 * coord_frac + 1), BANKS)})
        super().__init__({
            "key_w": In(stream.Signature(data.StructLayout({
                "key": range(max_keys), "group": range(groups),
                "py": signed(coord_bits), "px": signed(coord_bits)}), always_ready=True)),
            "table_w": In(stream.Signature(self.table_layout(self.bank_words, rpe_bits,
                                                             per_word), always_ready=True)),
            "i": In(stream.Signature(data.StructLayout({
                "qy": range(height), "qx": range(width), "head": range(heads),
                "key": range(max_keys), "tag": tag_bits}), always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({
                "bias": signed(self.bias_bits), "tag": tag_bits}), always_ready=True)),
        })

    @staticmethod
    def table_layout(bank_words: int, rpe_bits: int, per_word: int) -> data.StructLayout:
        """Payload of :attr:`table_w`: one word of every bank."""
        return data.StructLayout({
            "addr": range(bank_words),
            "data": data.ArrayLayout(data.ArrayLayout(signed(rpe_bits), per_word), BANKS)})

    def _key_memory(self, m: Module) -> memory.ReadPort:
        """Per (group, key): corner integer parts and the four bilinear weights, written
        once per key (the weight products happen here, not per lookup)."""
        f, one = self.f, 1 << self.f
        m.submodules.keys = keys = memory.Memory(shape=self.key_layout,
                                                 depth=self.groups * self.max_keys, init=[])
        wp = keys.write_port()
        kw = self.key_w.payload
        fy, fx = kw.py[:f], kw.px[:f]
        word = Signal(self.key_layout)
        m.d.comb += [word.y0.eq(kw.py >> f), word.x0.eq(kw.px >> f),
                     word.w[0].eq((one - fy) * (one - fx)), word.w[1].eq((one - fy) * fx),
                     word.w[2].eq(fy * (one - fx)), word.w[3].eq(fy * fx),
                     wp.addr.eq(kw.group * self.max_keys + kw.key), wp.data.eq(word),
                     wp.en.eq(self.key_w.valid)]
        return keys.read_port()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        H, W, pw = self.H, self.W, self.per_word
        kr = self._key_memory(m)
        # Stage 0: read the key's corners and weights.
        per_group = self.heads // self.groups
        m.d.comb += kr.addr.eq((self.i.payload.head // per_group) * self.max_keys
                               + self.i.payload.key)
        s1 = Signal(self.i.payload.shape())
        v1 = Signal()
        m.d.sync += [s1.eq(self.i.payload), v1.eq(self.i.valid)]
        # Stage 1: the table row and column of the footprint; stage 2: the corner of
        # each bank, inside the table or not, the bank's weight; stage 3: the entry (a
        # multiply by W) and the bank address.
        key = kr.data
        # (and the row and column before it, the other corner's)
        t_row, t_col, t_row1, t_col1 = (Signal(signed(self.coord_bits + 2), name=f"bias_t_{n}")
                                        for n in ("row", "col", "row1", "col1"))
        kw1 = Signal.like(key.w, name="bias_key_w")
        head1, v1a, tag1a = Signal.like(s1.head), Signal(), Signal.like(s1.tag)
        m.d.sync += [t_row.eq(s1.qy - key.y0 + H - 1), t_col.eq(s1.qx - key.x0 + W - 1),
                     t_row1.eq(s1.qy - key.y0 + H - 2), t_col1.eq(s1.qx - key.x0 + W - 2),
                     kw1.eq(key.w), head1.eq(s1.head), v1a.eq(v1), tag1a.eq(s1.tag)]
        banks = [self._bank(m, b) for b in range(BANKS)]
        wsel1 = Signal(data.ArrayLayout(unsigned(2 * self.f + 1), BANKS))
        ok1 = Signal(BANKS)
        row1 = [Signal(range(self.heads * H), name=f"bias_row{b}") for b in range(BANKS)]
        col1 = [Signal(range(W), name=f"bias_col{b}") for b in range(BANKS)]
        v1b, tag1b = Signal(), Signal.like(s1.tag)
        m.d.sync += [v1b.eq(v1a), tag1b.eq(tag1a)]
        for b in range(BANKS):
            pr, pc = b >> 1, b & 1
            # The corner of this bank: row t_row (corner y0) or t_row - 1 (y0 + 1).
            second_row = t_row[0] != pr
            second_col = t_col[0] != pc
            r = Mux(second_row, t_row1, t_row)
            c = Mux(second_col, t_col1, t_col)
            inside = (r >= 0) & (r <= 2 * H - 2) & (c >= 0) & (c <= 2 * W - 2)
            # Outside the table the entry is any (its word is masked by ``ok``).
            m.d.sync += [ok1[b].eq(inside), wsel1[b].eq(kw1[second_row * 2 + second_col]),
                         row1[b].eq(head1 * H + (r >> 1)), col1[b].eq(c >> 1)]
        wsel = Signal.like(wsel1)
        ok2 = Signal(BANKS)
        lane2 = Signal(data.ArrayLayout(range(pw), BANKS))
        v2, tag2 = Signal(), Signal.like(s1.tag)
        m.d.sync += [v2.eq(v1b), tag2.eq(tag1b), wsel.eq(wsel1), ok2.eq(ok1)]
        for b, bank in enumerate(banks):
            entry = row1[b] * W + col1[b]
            m.d.comb += bank.r_addr.eq(Mux(ok1[b], entry // pw if pw > 1 else entry, 0))
            m.d.sync += lane2[b].eq(entry % pw if pw > 1 else 0)
        # Stage 4: the bank words arrive and are registered (block RAM outputs are slow);
        # stage 5: products with the weights.
        v3, tag3, wsel3 = Signal(), Signal.like(tag2), Signal.like(wsel)
        m.d.sync += [v3.eq(v2), tag3.eq(tag2), wsel3.eq(wsel)]
        v3b, tag3b = Signal(), Signal.like(tag3)
        m.d.sync += [v3b.eq(v3), tag3b.eq(tag3)]
        prods = []
        for b, bank in enumerate(banks):
            val = Array(bank.r_data[k] for k in range(pw))[lane2[b]] if pw > 1 else bank.r_data[0]
            word = Signal(signed(self.rpe_bits), name=f"bias_word{b}")
            m.d.sync += word.eq(Mux(ok2[b], val, 0))
            p = Signal(signed(self.rpe_bits + 2 * self.f + 2), name=f"bias_prod{b}")
            m.d.sync += p.eq(word * wsel3[b])
            prods.append(p)
        # Stage 6: sum; stage 7: round.
        total = Signal(signed(self.rpe_bits + 2 * self.f + 4))
        v4, tag4 = Signal(), Signal.like(tag3)
        m.d.sync += [total.eq(sum(prods)), v4.eq(v3b), tag4.eq(tag3b)]
        m.d.sync += [self.o.valid.eq(v4), self.o.payload.tag.eq(tag4),
                     self.o.payload.bias.eq(round_half_up(total, self.shift))]
        return m

    def _bank(self, m: Module, b: int) -> DeepMemory:
        shape = data.ArrayLayout(signed(self.rpe_bits), self.per_word)
        m.submodules[f"bank{b}"] = mem = DeepMemory(shape, self.bank_words)
        tw = self.table_w
        m.d.comb += [mem.w_addr.eq(tw.payload.addr), mem.w_data.eq(tw.payload.data[b]),
                     mem.w_en.eq(tw.valid)]
        return mem
