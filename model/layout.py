"""DRAM layout, host-side packing, and the sliced dataflow's AXI transfers.

This module is the contract between the host, the RTL, the simulator's DRAM model and the
traffic counter (``docs/dram.md``). Everything is little-endian and 4 KiB aligned.

Tensors (one batch element per accelerator run):

* **value**: per level, row-major ``H x W`` pixels; a pixel is the ``M * D`` channels
  (head-major) as ``element_bytes`` two's-complement integers, padded to
  ``pixel_stride`` (a multiple of the bus width).
* **queries**: the queries sorted by slice (stable); a query is ``M * L * P`` point
  records in order ``(m, l, p)``, padded to ``query_stride``. A point record
  (:data:`POINT_RECORD`) is one 64-bit word: bits ``[23:0]`` x, ``[47:24]`` y (pixel
  coordinates of its level in Q(coord_frac)), ``[63:48]`` attention weight
  (Q(weight_bits - 2)); fields are two's complement, sign-extended from their configured
  widths.
* **descriptors**: one per non-empty slice, in slice order, ``desc_stride`` bytes each:
  the header (:data:`DESC_HEADER`) ``u32 query_start, u32 query_count, u32 slice_index,
  u32 0``, then per level (:data:`DESC_LEVEL`) eight ``i16``: ``row0, col0, rows, cols,
  y_lo, y_hi, x_lo, x_hi``.
* **outputs**: in the sorted query order, ``M * D`` samples of ``out_element_bytes``,
  padded to ``out_stride``.

The record formats are declared once, as data (:class:`RecordFormat`): the host packing
below and the hardware's Amaranth layouts (:mod:`defslice.hw.records`) are both built from
these declarations.

Transfers of the sliced dataflow, per descriptor in order: read the descriptor; read the
window, level by level, row by row (one region per window row); read the slice's query
records (one region); write its outputs (one region). Each region is split into bursts by
:func:`split_bursts`: as long as possible, at most ``max_burst_beats`` beats, never
crossing a 4 KiB boundary. The RTL may overlap transfers of different slices in time;
the multiset of bursts is fixed by this list.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

import numpy as np

from defslice.config import Config
from defslice.errors import ConfigError, InputError
from defslice.model.fixed import FixedInputs
from defslice.model.intmath import round_up
from defslice.model.slicing import SliceGrid, Window

__all__ = [
    "DESC_HEADER",
    "DESC_HEADER_BYTES",
    "DESC_LEVEL",
    "DESC_LEVEL_BYTES",
    "PAGE",
    "POINT_RECORD",
    "POINT_RECORD_BYTES",
    "WINDOW_FIELDS",
    "Burst",
    "DramLayout",
    "Field",
    "RecordFormat",
    "SlicedProgram",
    "burst_summary",
    "split_bursts",
]

#: Bytes of the AXI boundary no burst crosses (the 4 KiB page), and the alignment of
#: every tensor's base address.
PAGE = 4096


@dataclass(frozen=True)
class Field:
    """One field of a DRAM record: ``width`` bits from bit ``offset`` of the record
    (little-endian), two's complement when ``signed``."""

    name: str
    offset: int
    width: int
    signed: bool


@dataclass(frozen=True)
class RecordFormat:
    """A DRAM record of ``bits`` bits (a multiple of 64) made of byte-aligned fields.

    The one declaration of a record's bit layout: :meth:`pack` builds host memory images
    from it and :func:`defslice.hw.records.record_layout` the hardware's Amaranth layout.
    A field may not cross a 64-bit word of the record.
    """

    name: str
    bits: int
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        if self.bits <= 0 or self.bits % 64:
            raise ValueError(f"{self.name}: bits must be a positive multiple of 64, not "
                             f"{self.bits}")
        used = 0
        for f in self.fields:
            mask = ((1 << f.width) - 1) << f.offset
            if f.width < 1 or f.offset < 0 or f.offset + f.width > self.bits:
                raise ValueError(f"{self.name}.{f.name}: bits [{f.offset}, "
                                 f"{f.offset + f.width}) outside the {self.bits}-bit record")
            if f.offset % 8 or f.width % 8 or f.offset // 64 != (f.offset + f.width - 1) // 64:
                raise ValueError(f"{self.name}.{f.name}: must be byte aligned inside one "
                                 "64-bit word")
            if used & mask:
                raise ValueError(f"{self.name}.{f.name}: overlaps another field")
            used |= mask

    @property
    def nbytes(self) -> int:
        return self.bits // 8

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def pack(self, **values: np.ndarray | int) -> np.ndarray:
        """Integer arrays per field (broadcast together; missing fields are 0) -> uint8
        records of shape ``(..., nbytes)``, each value truncated to its field's width."""
        unknown = set(values) - {f.name for f in self.fields}
        if unknown:
            raise KeyError(f"{self.name} has no field(s) {sorted(unknown)}")
        arrays = {k: np.asarray(v, dtype=np.int64) for k, v in values.items()}
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values())) if arrays else ()
        words = np.zeros((*shape, self.bits // 64), dtype=np.uint64)
        for f in self.fields:
            if f.name in arrays:
                v = arrays[f.name].astype(np.uint64) & np.uint64((1 << f.width) - 1)
                words[..., f.offset // 64] |= v << np.uint64(f.offset % 64)
        return words.astype("<u8").view(np.uint8).reshape(*shape, self.nbytes)

    def unpack(self, raw: np.ndarray | bytes) -> dict[str, np.ndarray]:
        """uint8 records ``(..., nbytes)`` (or bytes) -> int64 array per field,
        sign-extended for signed fields."""
        b = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes | bytearray) \
            else np.asarray(raw, dtype=np.uint8)
        words = np.ascontiguousarray(b).reshape(-1, self.nbytes).view("<u8")
        out = {}
        for f in self.fields:
            v = (words[:, f.offset // 64] >> np.uint64(f.offset % 64)) \
                & np.uint64((1 << f.width) - 1)
            v = v.astype(np.int64)
            if f.signed:
                v = np.where(v >> (f.width - 1), v - (1 << f.width), v)
            out[f.name] = v.reshape(b.shape[:-1] if b.ndim > 1 else (-1,))
        return out


#: A point record: sampling coordinates (pixels of the level, Q(coord_frac)) and the
#: attention weight (Q(weight_bits - 2)), sign-extended from their configured widths.
POINT_RECORD = RecordFormat("point record", 64, (
    Field("x", 0, 24, True), Field("y", 24, 24, True), Field("weight", 48, 16, True)))
#: The first 16 bytes of a descriptor.
DESC_HEADER = RecordFormat("descriptor header", 128, (
    Field("query_start", 0, 32, False), Field("query_count", 32, 32, False),
    Field("slice_index", 64, 32, False), Field("reserved", 96, 32, False)))
#: A slice window's fields on one level, in :class:`defslice.model.slicing.Window` order.
WINDOW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Window))
#: The descriptor entry of one level (after the header, one per level in level order).
DESC_LEVEL = RecordFormat("descriptor level", 128, tuple(
    Field(name, 16 * k, 16, True) for k, name in enumerate(WINDOW_FIELDS)))
POINT_RECORD_BYTES = POINT_RECORD.nbytes
DESC_HEADER_BYTES = DESC_HEADER.nbytes
DESC_LEVEL_BYTES = DESC_LEVEL.nbytes


@dataclass(frozen=True)
class Burst:
    """One AXI burst: start byte address, beats, direction and the tensor it serves."""

    addr: int
    beats: int
    write: bool
    tensor: str


def split_bursts(addr: int, nbytes: int, bus_bytes: int, max_beats: int,
                 boundary: int = PAGE) -> list[tuple[int, int]]:
    """Split the byte region ``[addr, addr + nbytes)`` into legal INCR bursts.

    ``addr`` and ``nbytes`` must be multiples of ``bus_bytes``. Returns ``(addr, beats)``
    pairs: each burst is as long as possible, at most ``max_beats`` beats, and ends at or
    before the next multiple of ``boundary``.
    """
    if addr % bus_bytes or nbytes % bus_bytes:
        raise InputError(f"region {addr:#x}+{nbytes} is not aligned to the {bus_bytes}-byte "
                         "bus")
    out = []
    end = addr + nbytes
    while addr < end:
        to_boundary = (boundary - addr % boundary) // bus_bytes
        beats = min(max_beats, (end - addr) // bus_bytes, to_boundary)
        out.append((addr, beats))
        addr += beats * bus_bytes
    return out


class DramLayout:
    """Strides, base addresses and sizes of every tensor for a configuration.

    Arguments
    ---------
    cfg : Config
    num_queries : int
        Queries stored (default ``cfg.workload.num_queries``).
    """

    def __init__(self, cfg: Config, num_queries: int | None = None) -> None:
        if cfg.workload.batch != 1:
            raise ConfigError("workload.batch", cfg.workload.batch,
                              "1 for the accelerator (run batch elements one after another)")
        w, d = cfg.workload, cfg.dram
        self.cfg = cfg
        self.bus_bytes = cfg.hw.bus_bytes
        self.max_beats = cfg.hw.max_burst_beats
        self.num_queries = w.num_queries if num_queries is None else num_queries
        self.pixel_stride = round_up(w.embed_dim * d.element_bytes, self.bus_bytes)
        self.query_stride = round_up(
            w.sample_heads * w.num_levels * w.points * POINT_RECORD_BYTES, self.bus_bytes)
        self.out_stride = round_up(w.embed_dim * d.out_element_bytes, self.bus_bytes)
        self.desc_stride = round_up(DESC_HEADER_BYTES + DESC_LEVEL_BYTES * w.num_levels,
                                     self.bus_bytes)
        offsets, off = [], 0
        for h, wl in w.levels:
            offsets.append(off)
            off += h * wl * self.pixel_stride
        self.level_offset = tuple(offsets)
        self.value_bytes = off
        grid = SliceGrid.from_config(cfg)
        self.max_descriptors = grid.num_slices
        self.value_base = PAGE
        self.query_base = round_up(self.value_base + self.value_bytes, PAGE)
        self.desc_base = round_up(self.query_base + self.num_queries * self.query_stride,
                                   PAGE)
        self.out_base = round_up(self.desc_base + self.max_descriptors * self.desc_stride,
                                  PAGE)
        self.total_bytes = round_up(self.out_base + self.num_queries * self.out_stride, PAGE)
        if self.total_bytes > 1 << cfg.hw.addr_bits:
            raise ConfigError("hw.addr_bits", cfg.hw.addr_bits,
                              f"wide enough for {self.total_bytes} bytes of DRAM")

    def pixel_addr(self, level: int, row: int, col: int) -> int:
        """Byte address of a value pixel."""
        wl = self.cfg.workload.levels[level][1]
        return self.value_base + self.level_offset[level] + (row * wl + col) * self.pixel_stride

    # -- packing ------------------------------------------------------------------------
    def pack_value(self, value_q: np.ndarray) -> bytes:
        """(1, S, M, D) stored integers -> value tensor bytes."""
        eb = self.cfg.dram.element_bytes
        v = np.asarray(value_q, dtype=np.int64).reshape(-1, self.cfg.workload.embed_dim)
        return _pack_rows(v, eb, self.pixel_stride)

    def pack_queries(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> bytes:
        """(Lq, M, L, P) coordinate and weight integers (already sorted) -> query bytes."""
        recs = POINT_RECORD.pack(x=x, y=y, weight=weight)
        return _pack_rows(recs.reshape(recs.shape[0], -1), 1, self.query_stride)

    def pack_descriptors(self, descriptors: list[Descriptor]) -> bytes:
        """Descriptors -> ``desc_stride`` bytes each: header, then one entry per level."""
        rows = []
        for dsc in descriptors:
            head = DESC_HEADER.pack(query_start=dsc.query_start, query_count=dsc.query_count,
                                    slice_index=dsc.slice_index)
            win = np.asarray(dsc.windows, dtype=np.int64)
            body = DESC_LEVEL.pack(**{n: win[:, k] for k, n in enumerate(WINDOW_FIELDS)})
            rows.append((head.tobytes() + body.tobytes()).ljust(self.desc_stride, b"\0"))
        return b"".join(rows)

    def tensor_at(self, addr: int) -> str:
        """The tensor (the traffic counter's name) holding byte ``addr``."""
        if addr >= self.out_base:
            return "output"
        if addr >= self.desc_base:
            return "descriptor"
        if addr >= self.query_base:
            return "query"
        return "value"

    def unpack_outputs(self, data: bytes, count: int) -> np.ndarray:
        """Output bytes of ``count`` queries -> int64 (count, M*D), sign-extended."""
        eb = self.cfg.dram.out_element_bytes
        raw = np.frombuffer(data[: count * self.out_stride], dtype=np.uint8)
        raw = raw.reshape(count, self.out_stride)[:, : self.cfg.workload.embed_dim * eb]
        vals = raw.copy().view(f"<i{eb}").astype(np.int64)
        return vals.reshape(count, -1)


def _pack_rows(v: np.ndarray, elem_bytes: int, stride: int) -> bytes:
    """Rows of two's-complement integers -> little-endian bytes, each row padded."""
    # Casting int64 to a narrower unsigned type keeps the low bytes: two's complement.
    u = np.ascontiguousarray(v).astype(f"<u{elem_bytes}")
    raw = u.view(np.uint8).reshape(v.shape[0], -1)
    out = np.zeros((v.shape[0], stride), dtype=np.uint8)
    out[:, : raw.shape[1]] = raw
    return out.tobytes()


@dataclass(frozen=True)
class Descriptor:
    """One non-empty slice: its queries in the sorted order and its windows (L, 8)."""

    slice_index: int
    query_start: int
    query_count: int
    windows: tuple[tuple[int, ...], ...]


class SlicedProgram:
    """Everything the host prepares for one run of the accelerator, and what it expects.

    Arguments
    ---------
    cfg : Config
    inputs : FixedInputs
        Quantized inputs with ``N = 1``.
    reference_points : array (1, Lq, 2)
        Normalized (x, y) reference point of each query.

    Members
    -------
    order : int array (Lq,)
        Query permutation: stored query ``k`` is original query ``order[k]``.
    descriptors : list of Descriptor
    layout : DramLayout
    """

    def __init__(self, cfg: Config, inputs: FixedInputs,
                 reference_points: np.ndarray) -> None:
        self.cfg = cfg
        self.inputs = inputs
        if inputs.value.shape[0] != 1:
            raise InputError("the accelerator runs one batch element at a time (N = 1)")
        self.grid = SliceGrid.from_config(cfg)
        lq = inputs.x.shape[1]
        self.layout = DramLayout(cfg, lq)
        self.reference_points = np.asarray(reference_points, dtype=np.float64).reshape(1, lq, 2)
        slice_idx = self.grid.slice_of(self.reference_points[0])
        self.order = np.argsort(slice_idx, kind="stable")
        self.slice_of_query = slice_idx
        counts = np.bincount(slice_idx, minlength=self.grid.num_slices)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        windows = self.grid.windows_array()
        self.descriptors = [
            Descriptor(int(s), int(starts[s]), int(counts[s]),
                       tuple(tuple(int(v) for v in row) for row in windows[s]))
            for s in range(self.grid.num_slices) if counts[s] > 0
        ]

    def memory_image(self) -> dict[int, bytes]:
        """Base address -> bytes of every input tensor (value, queries, descriptors)."""
        lay, inp, o = self.layout, self.inputs, self.order
        return {
            lay.value_base: lay.pack_value(inp.value),
            lay.query_base: lay.pack_queries(inp.x[0, o], inp.y[0, o], inp.weight[0, o]),
            lay.desc_base: lay.pack_descriptors(self.descriptors),
        }

    def transfers(self) -> list[Burst]:
        """The bursts the RTL issues, in the contract's order (see module docstring)."""
        lay = self.layout
        out: list[Burst] = []

        def region(addr: int, nbytes: int, write: bool, tensor: str) -> None:
            for a, beats in split_bursts(addr, nbytes, lay.bus_bytes, lay.max_beats):
                out.append(Burst(a, beats, write, tensor))

        for i, dsc in enumerate(self.descriptors):
            region(lay.desc_base + i * lay.desc_stride, lay.desc_stride, False, "descriptor")
            for level, win in enumerate(dsc.windows):
                row0, col0, rows, cols = win[:4]
                for r in range(rows):
                    region(lay.pixel_addr(level, row0 + r, col0), cols * lay.pixel_stride,
                           False, "value")
            region(lay.query_base + dsc.query_start * lay.query_stride,
                   dsc.query_count * lay.query_stride, False, "query")
            region(lay.out_base + dsc.query_start * lay.out_stride,
                   dsc.query_count * lay.out_stride, True, "output")
        return out

    def expected_outputs(self) -> np.ndarray:
        """Fixed-point outputs in stored (sorted) order, int64 (Lq, M*D)."""
        from defslice.model.sliced import sliced_fixed_forward

        out = sliced_fixed_forward(self.cfg, self.inputs,
                                   reference_points=self.reference_points, grid=self.grid)
        return out[0, self.order]


def burst_summary(bursts: list[Burst]) -> dict[str, dict[str, int]]:
    """Totals per tensor and direction: bursts, beats (the counter's and the bench's
    common currency)."""
    summary: dict[str, dict[str, int]] = {}
    beats: Counter = Counter()
    count: Counter = Counter()
    for b in bursts:
        key = b.tensor
        beats[key] += b.beats
        count[key] += 1
    for key in beats:
        summary[key] = {"bursts": count[key], "beats": beats[key]}
    summary["read"] = {"bursts": sum(1 for b in bursts if not b.write),
                       "beats": sum(b.beats for b in bursts if not b.write)}
    summary["write"] = {"bursts": sum(1 for b in bursts if b.write),
                        "beats": sum(b.beats for b in bursts if b.write)}
    return summary
