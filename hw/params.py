"""Every constant of the generated hardware, derived once from a :class:`Config`.

:func:`derive` validates what the generator itself can build on top of what
:class:`defslice.config.Config` already checks, and raises
:class:`~defslice.errors.ConfigError` naming the field and the allowed range before any
Amaranth elaboration starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from defslice.config import Config
from defslice.errors import ConfigError
from defslice.hw.bram import DEEP_WORDS
from defslice.model.intmath import ceil_div
from defslice.model.layout import POINT_RECORD, POINT_RECORD_BYTES, DramLayout
from defslice.model.slicing import SliceGrid

__all__ = ["MAX_BUFFER_BITS", "HwParams", "bank_chunk_depth", "bank_chunk_depths", "derive",
           "index_bits", "require_params"]

#: Largest total window-buffer size the generator accepts (bits, all banks and sets):
#: 32 Mbit, more than the block RAM of any part the project targets (Arty A7-100T: 4.9
#: Mbit); beyond it the slices are too large for an on-chip window.
MAX_BUFFER_BITS = 1 << 25

#: Width of the AXI ID signals (the master uses ID 0 for everything).
AXI_ID_BITS = 1


def bank_chunk_depth(word_bits: int) -> int:
    """Words per window-bank chunk: the depth of one 18 Kbit block RAM at ``word_bits``
    (512 above 18 bits, 1024 above 9, else 2048). Below its 2048-word chunks a bank is a
    column of such chunks, so each chunk maps to one row of blocks with no multiplexer
    between a block's read data and the register that follows it (``docs/hw.md``,
    "Window buffers")."""
    if word_bits > 18:
        return 512
    return 1024 if word_bits > 9 else 2048


def bank_chunk_depths(bank_depth: int, word_bits: int) -> list[int]:
    """Depths of a bank's chunks, top to bottom: chunks of
    :data:`~defslice.hw.bram.DEEP_WORDS` words (2048 x 9 blocks side by side) while they
    fill, then chunks of :func:`bank_chunk_depth` words, the last one holding the rest.
    Every chunk starts at a multiple of :func:`bank_chunk_depth`."""
    deep, rest = divmod(bank_depth, DEEP_WORDS)
    chunk = bank_chunk_depth(word_bits)
    full, tail = divmod(rest, chunk)
    return [DEEP_WORDS] * deep + [chunk] * full + ([tail] if tail else [])


def index_bits(n: int) -> int:
    """Bits of an index into ``n`` items (at least 1)."""
    return max(1, (n - 1).bit_length())


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class HwParams:
    """Constants of one generated accelerator (all sizes in bytes, beats or words).

    A *word* is ``lanes`` channels: the width of one window-buffer bank entry and of one
    multiply-accumulate step. Buffers hold, per level, ``win_rows x win_cols`` pixels in
    four banks chosen by (row parity, column parity) of the pixel's position inside its
    window; each pixel is ``pixel_words`` consecutive words.
    """

    cfg: Config
    bus_bytes: int
    beat_shift: int
    max_beats: int
    addr_bits: int
    levels: tuple[tuple[int, int], ...]
    heads: int
    channels: int
    points: int
    lanes: int
    head_words: int          # D / lanes
    pixel_words: int         # M * D / lanes
    value_bits: int
    element_bytes: int
    value_words_per_beat: int
    pixel_stride: int
    pixel_stride_words: int
    out_bits: int
    out_element_bytes: int
    out_words_per_beat: int
    out_stride: int
    records: int             # M * L * P point records per query
    records_per_beat: int
    query_stride: int
    query_beats: int
    desc_stride: int
    desc_beats: int
    level_offset: tuple[int, ...]
    win_max: tuple[tuple[int, int], ...]
    bank_cols: tuple[int, ...]     # ceil(max cols / 2)
    bank_rows: tuple[int, ...]     # ceil(max rows / 2)
    level_base: tuple[int, ...]    # first word of each level inside one bank set
    set_depth: int
    sets: int
    coord_frac: int
    coord_bits: int
    weight_bits: int
    acc_bits: int
    out_shift: int
    clamp: bool

    @property
    def bank_depth(self) -> int:
        return self.sets * self.set_depth

    @property
    def word_bits(self) -> int:
        return self.lanes * self.value_bits

    @property
    def bus_bits(self) -> int:
        return 8 * self.bus_bytes

    @property
    def buffer_bits(self) -> int:
        return 4 * self.bank_depth * self.word_bits

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def bank_addr_bits(self) -> int:
        """Bits of a word address inside one bank (all sets)."""
        return index_bits(self.bank_depth)


def require_params(p: object) -> HwParams:
    """``p`` itself; :class:`TypeError` unless it is a :class:`HwParams` (what every
    hardware block checks first)."""
    if not isinstance(p, HwParams):
        raise TypeError(f"p must be a HwParams, not {type(p).__name__}")
    return p


def derive(cfg: Config) -> HwParams:
    """Derive and check the hardware constants of ``cfg``.

    Raises
    ------
    ConfigError
        For configurations the generator cannot build: a bus narrower than a point record,
        lane words that do not pack into bus beats, window buffers above
        :data:`MAX_BUFFER_BITS`, or a workload batch other than 1.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a defslice.config.Config, not {type(cfg).__name__}")
    w, n, hw, d = cfg.workload, cfg.numerics, cfg.hw, cfg.dram
    bus = hw.bus_bytes
    if bus < POINT_RECORD_BYTES:
        raise ConfigError("hw.axi_data_bits", hw.axi_data_bits,
                          f"one of 64, 128, 256, 512 (a beat must hold a {POINT_RECORD.bits}-bit "
                          "point record)")
    lane_bytes = hw.lanes * d.element_bytes
    if not _is_pow2(lane_bytes) or lane_bytes > bus:
        raise ConfigError("hw.lanes", hw.lanes,
                          f"a value with lanes * dram.element_bytes a power of two <= the "
                          f"bus width {bus} bytes")
    out_lane_bytes = hw.lanes * d.out_element_bytes
    if not _is_pow2(out_lane_bytes) or out_lane_bytes > bus:
        raise ConfigError("hw.lanes", hw.lanes,
                          f"a value with lanes * dram.out_element_bytes a power of two <= "
                          f"the bus width {bus} bytes")
    lay = DramLayout(cfg, 1)   # raises for batch != 1
    grid = SliceGrid.from_config(cfg)
    lanes = hw.lanes
    pixel_words = w.embed_dim // lanes
    win_max = tuple(grid.max_window(lvl) for lvl in range(w.num_levels))
    bank_rows = tuple(ceil_div(r, 2) for r, _ in win_max)
    bank_cols = tuple(ceil_div(c, 2) for _, c in win_max)
    bases, off = [], 0
    for br, bc in zip(bank_rows, bank_cols, strict=True):
        bases.append(off)
        off += br * bc * pixel_words
    sets = 2 if hw.buffering == "double" else 1
    p = HwParams(
        cfg=cfg, bus_bytes=bus, beat_shift=bus.bit_length() - 1,
        max_beats=hw.max_burst_beats, addr_bits=hw.addr_bits,
        levels=tuple(w.levels), heads=w.sample_heads, channels=w.sample_channels,
        points=w.points, lanes=lanes, head_words=w.sample_channels // lanes,
        pixel_words=pixel_words,
        value_bits=n.value_bits, element_bytes=d.element_bytes,
        value_words_per_beat=bus // lane_bytes, pixel_stride=lay.pixel_stride,
        pixel_stride_words=lay.pixel_stride // lane_bytes,
        out_bits=n.out_bits, out_element_bytes=d.out_element_bytes,
        out_words_per_beat=bus // out_lane_bytes, out_stride=lay.out_stride,
        records=w.sample_heads * w.num_levels * w.points,
        records_per_beat=bus // POINT_RECORD_BYTES,
        query_stride=lay.query_stride, query_beats=lay.query_stride // bus,
        desc_stride=lay.desc_stride, desc_beats=lay.desc_stride // bus,
        level_offset=lay.level_offset, win_max=win_max, bank_cols=bank_cols,
        bank_rows=bank_rows, level_base=tuple(bases), set_depth=off, sets=sets,
        coord_frac=n.coord_frac, coord_bits=n.coord_bits, weight_bits=n.weight_bits,
        acc_bits=n.acc_bits, out_shift=n.out_shift, clamp=cfg.slicing.clamp == "clamp",
    )
    if p.buffer_bits > MAX_BUFFER_BITS:
        raise ConfigError(
            "slicing.slice_h/slice_w/overlap", (cfg.slicing.slice_h, cfg.slicing.slice_w,
                                                cfg.slicing.overlap),
            f"windows whose buffers fit in {MAX_BUFFER_BITS} bits (this configuration "
            f"needs {p.buffer_bits} bits: {sets} set(s) x 4 banks x {p.set_depth} words x "
            f"{p.word_bits} bits)")
    return p
