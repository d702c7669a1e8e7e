"""DRAM layout, slice descriptors and AXI transfers of the layer engine (``docs/dram.md``).

The layer engine computes the whole DAT++ deformable-attention layer one slice at a time
(``docs/hw_layer.md``). This module is its contract with the host, the simulator's DRAM
and the traffic counter, in the manner of :mod:`defslice.model.layout` for the sampling
engine:

* **x**: the input map, row-major ``H x W`` pixels of ``C`` channels, the value layout of
  :class:`defslice.model.layout.DramLayout` (``pixel_stride`` bytes per pixel);
* **parameters**: one region read once per run, sections in :data:`PARAM_SECTIONS`
  order, each already in the word order of the on-chip memory it fills;
* **descriptors**: one per slice, :data:`DESC_FIELDS` as ``i16``, ``desc_stride`` bytes;
* **y**: the output map, row-major ``H x W`` pixels of ``C`` outputs, ``out_stride`` bytes
  per pixel.

Per slice the engine reads the descriptor, then its window row by row, and writes ``y``
for the slice's own pixels row by row. A slice without keys has ``y = proj_out`` bias
on its pixels; its window is still read (the window loader, shared with the sampling
engine, loads every descriptor's window) and released at once. :func:`layer_transfers`
lists the bursts; the RTL may overlap those of consecutive slices in time, the multiset
is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from defslice.errors import ConfigError, InputError
from defslice.model.dat_layer import DatLayerSlicing, DatLayerSpec
from defslice.model.intmath import round_up
from defslice.model.layout import PAGE, Burst, _pack_rows, split_bursts
from defslice.model.slicing import SliceGrid, Window

if TYPE_CHECKING:
    from defslice.config import Config
    from defslice.model.dat_layer_fixed import FixedLayerParams

__all__ = [
    "ARRAY_ROWS",
    "DESC_FIELDS",
    "OPEN_HI",
    "OPEN_LO",
    "PARAM_SECTIONS",
    "LayerDims",
    "LayerLayout",
    "ParamSection",
    "Rect",
    "SliceTask",
    "layer_transfers",
    "rpe_banks",
    "slice_tasks",
]

#: Rows of the multiply-accumulate array: one 2x2 pixel quad, one pixel per window-buffer
#: parity bank. Parameter tiles of the depthwise convolution are laid out for it.
ARRAY_ROWS = 4

#: Descriptor fields, each a little-endian ``i16``. The first 32 bytes read as a sampling
#: engine descriptor of one level (``defslice.model.layout``): ``u32`` query start and
#: query count 0 (the layer engine reads no point records), ``u32`` slice index, then the
#: window's level record at bytes 16..31; the layer's fields follow.
DESC_FIELDS = (
    "query_start", "query_start_hi", "query_count", "query_count_hi", "slice_index",
    "slice_index_hi", "num_keys", "pad7",
    "row0", "col0", "rows", "cols", "y_lo", "y_hi", "x_lo", "x_hi",
    "reg_row0", "reg_col0", "reg_rows", "reg_cols",
    "q_row0", "q_col0", "q_rows", "q_cols",
    "by_lo", "by_hi", "bx_lo", "bx_hi",
    "key_row0", "key_col0", "key_rows", "key_cols",
)
DESC_BYTES = 2 * len(DESC_FIELDS)

#: A bias bound that does not clamp (a map edge): the ``i16`` extremes.
OPEN_LO = -(1 << 15)
OPEN_HI = (1 << 15) - 1

#: Bytes of one stored bias (accumulator format, sign-extended) and one reference
#: coordinate.
BIAS_BYTES = 8
REF_BYTES = 4
#: Bytes of one stored weight, bias-table entry.
WEIGHT_BYTES = 2

#: Parameter sections, in DRAM order.
PARAM_SECTIONS = ("proj_q", "proj_k", "proj_v", "proj_out", "offset_proj", "dwconv",
                  "bias", "norm_gain", "reference", "rpe")
#: Biases in the ``bias`` section, in order (``proj_*`` have C, the others Cg each).
BIAS_ORDER = ("proj_q", "proj_k", "proj_v", "proj_out", "conv", "norm")


@dataclass(frozen=True)
class Rect:
    """A rectangle of pixels (or keys): first row, first column, rows, columns."""

    row0: int
    col0: int
    rows: int
    cols: int

    @property
    def empty(self) -> bool:
        return self.rows <= 0 or self.cols <= 0

    @property
    def size(self) -> int:
        return 0 if self.empty else self.rows * self.cols

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.row0, self.col0, self.rows, self.cols)


@dataclass(frozen=True)
class LayerDims:
    """Shape of one DAT++ deformable-attention layer on its map.

    Members
    -------
    spec : DatLayerSpec
        Heads, groups, offset convolution, offset mode, position bias.
    height, width : int
        Map size H x W (pixels).
    channels : int
        C = heads * head_dim.
    """

    spec: DatLayerSpec
    height: int
    width: int
    channels: int

    def __post_init__(self) -> None:
        if self.channels % self.spec.heads:
            raise ConfigError("workload.channels", self.channels,
                              f"a multiple of the heads ({self.spec.heads})")

    @classmethod
    def from_config(cls, cfg: Config) -> LayerDims:
        """The layer of ``cfg.workload`` (kind ``dat``, one level)."""
        h, w = cfg.workload.levels[0]
        return cls(DatLayerSpec.from_config(cfg), h, w, cfg.workload.embed_dim)

    @property
    def heads(self) -> int:
        return self.spec.heads

    @property
    def head_dim(self) -> int:
        return self.channels // self.spec.heads

    @property
    def groups(self) -> int:
        return self.spec.groups

    @property
    def group_channels(self) -> int:
        return self.channels // self.spec.groups

    @property
    def kernel(self) -> int:
        return self.spec.offset_kernel

    @property
    def stride(self) -> int:
        return self.spec.stride

    @property
    def use_pe(self) -> bool:
        return self.spec.use_pe

    @property
    def key_grid(self) -> tuple[int, int]:
        """Keys (Hk, Wk) per group."""
        return self.spec.key_grid(self.height, self.width)

    @property
    def key_rows(self) -> int:
        return self.key_grid[0]

    @property
    def key_cols(self) -> int:
        return self.key_grid[1]

    @property
    def num_keys(self) -> int:
        return self.key_rows * self.key_cols

    @property
    def tap_quads(self) -> int:
        """2x2 quads of kernel taps, ``ceil(k / 2)^2`` (the kernel padded to even)."""
        return ((self.kernel + 1) // 2) ** 2

    def taps(self, index: int) -> tuple[int, int]:
        """First and one-past-last map row (or column) read by the offset convolution of
        key row (column) ``index`` (``DatLayerSpec.tap_rows``)."""
        lo = index * self.stride - self.spec.padding
        return lo, lo + self.kernel


def _run(indices: np.ndarray, value: int) -> tuple[int, int]:
    """First index and length of the run of ``value`` in ``indices`` (it is contiguous:
    the slice of a reference point grows with its coordinate)."""
    hits = np.flatnonzero(indices == value)
    if hits.size == 0:
        return 0, 0
    if hits[-1] - hits[0] + 1 != hits.size:
        raise InputError(f"the keys of slice row/column {value} are not contiguous")
    return int(hits[0]), int(hits.size)


@dataclass(frozen=True)
class SliceTask:
    """What the engine does for one slice, from the configuration alone.

    Members
    -------
    index : int
        Slice index (row-major in the slice grid).
    window : Window
        The window (slice + overlap, clipped to the map) with its clamp bounds.
    region : Rect
        The slice's own pixels: its queries, whose ``y`` it writes.
    keys : Rect
        Its keys in the key grid (rows and columns of keys whose reference point it holds).
    qbox : Rect
        Pixels whose ``q`` the engine computes: the bounding box of the region and the
        offset-convolution taps of its keys that lie inside the window (empty without keys).
    bias_bounds : (y_lo, y_hi, x_lo, x_hi)
        Interior bounds of the position used for the bias (map edges :data:`OPEN_LO` /
        :data:`OPEN_HI`: no clamp).
    """

    index: int
    window: Window
    region: Rect
    keys: Rect
    qbox: Rect
    bias_bounds: tuple[int, int, int, int]

    @property
    def num_keys(self) -> int:
        return self.keys.size

    def descriptor(self) -> tuple[int, ...]:
        """The :data:`DESC_FIELDS` values."""
        w = self.window
        head = (0, 0, 0, 0, self.index, 0, self.num_keys, 0)
        win = (w.row0, w.col0, w.rows, w.cols, w.y_lo, w.y_hi, w.x_lo, w.x_hi)
        return head + win + self.region.as_tuple() + self.qbox.as_tuple() \
            + self.bias_bounds + self.keys.as_tuple()


def _tap_hull(dims: LayerDims, keys: range, lo: int, hi: int) -> tuple[int, int]:
    """Hull ``[a, b)`` of the taps of ``keys`` on one axis clipped to ``[lo, hi)``
    (``a >= b`` when no tap is inside)."""
    a, b = hi, lo
    for k in keys:
        t0, t1 = dims.taps(k)
        t0, t1 = max(t0, lo), min(t1, hi)
        if t0 < t1:
            a, b = min(a, t0), max(b, t1)
    return a, b


def _qbox(dims: LayerDims, win: Window, region: Rect, keys: Rect) -> Rect:
    if keys.empty:
        return Rect(region.row0, region.col0, 0, 0)
    r0, r1 = _tap_hull(dims, range(keys.row0, keys.row0 + keys.rows), win.row0,
                       win.row0 + win.rows)
    c0, c1 = _tap_hull(dims, range(keys.col0, keys.col0 + keys.cols), win.col0,
                       win.col0 + win.cols)
    top, left = region.row0, region.col0
    bottom, right = region.row0 + region.rows, region.col0 + region.cols
    if r0 < r1 and c0 < c1:
        top, left = min(top, r0), min(left, c0)
        bottom, right = max(bottom, r1), max(right, c1)
    return Rect(top, left, bottom - top, right - left)


def slice_tasks(dims: LayerDims, grid: SliceGrid) -> list[SliceTask]:
    """Every slice's :class:`SliceTask`, in slice order.

    Raises
    ------
    ConfigError
        When the grid is not a one-level grid of the layer's map.
    """
    if grid.levels != ((dims.height, dims.width),):
        raise ConfigError("workload.levels", grid.levels,
                          f"one level of {dims.height}x{dims.width} for the layer engine")
    hk, wk = dims.key_grid
    key_slice = DatLayerSlicing.build(dims.spec, dims.height, dims.width,
                                      grid).key_slice.reshape(hk, wk)
    key_srow = key_slice[:, 0] // grid.n_cols
    key_scol = key_slice[0, :] % grid.n_cols
    tasks = []
    for s in range(grid.num_slices):
        i, j = divmod(s, grid.n_cols)
        r0, c0 = i * grid.slice_h, j * grid.slice_w
        region = Rect(r0, c0, min(grid.slice_h, dims.height - r0),
                      min(grid.slice_w, dims.width - c0))
        kr0, nkr = _run(key_srow, i)
        kc0, nkc = _run(key_scol, j)
        keys = Rect(kr0, kc0, nkr, nkc) if nkr and nkc else Rect(kr0, kc0, 0, 0)
        win = grid.window(s, 0)
        bounds = (win.y_lo if win.row0 > 0 else OPEN_LO,
                  win.y_hi if win.row0 + win.rows < dims.height else OPEN_HI,
                  win.x_lo if win.col0 > 0 else OPEN_LO,
                  win.x_hi if win.col0 + win.cols < dims.width else OPEN_HI)
        tasks.append(SliceTask(s, win, region, keys, _qbox(dims, win, region, keys), bounds))
    return tasks


def rpe_banks(table: np.ndarray) -> np.ndarray:
    """The position-bias table ``(heads, 2H - 1, 2W - 1)`` in its four parity banks,
    ``(4, heads * H * W)``: bank ``2 (ty & 1) + (tx & 1)`` holds entry ``(ty, tx)`` of head
    ``h`` at ``(h H + (ty >> 1)) W + (tx >> 1)``; places no entry falls on hold 0."""
    t = np.asarray(table, dtype=np.int64)
    heads, rows, cols = t.shape
    h, w = (rows + 1) // 2, (cols + 1) // 2
    banks = np.zeros((4, heads, h, w), dtype=np.int64)
    for pr in range(2):
        for pc in range(2):
            part = t[:, pr::2, pc::2]
            banks[2 * pr + pc, :, :part.shape[1], :part.shape[2]] = part
    return banks.reshape(4, heads * h * w)


@dataclass(frozen=True)
class ParamSection:
    """One section of the parameter region: byte offset from the region's start, bytes
    (a whole number of bus beats), and the on-chip word it is laid out for."""

    name: str
    offset: int
    nbytes: int
    word_bits: int
    words: int


def _section_sizes(dims: LayerDims, lanes: int, cols: int) -> dict[str, tuple[int, int]]:
    """Section name -> (word bits, words) of the on-chip memory each section fills."""
    c, cg = dims.channels, dims.group_channels
    tile = lanes * cols * 8 * WEIGHT_BYTES
    proj_words = (c // cols) * (c // lanes)
    sizes = {name: (tile, proj_words) for name in ("proj_q", "proj_k", "proj_v", "proj_out")}
    sizes["offset_proj"] = (tile, cg // lanes)
    sizes["dwconv"] = (ARRAY_ROWS * lanes * 8 * WEIGHT_BYTES, dims.tap_quads * (cg // lanes))
    sizes["bias"] = (8 * BIAS_BYTES, 4 * c + 2 * cg)
    sizes["norm_gain"] = (8 * WEIGHT_BYTES, cg)
    sizes["reference"] = (8 * REF_BYTES, dims.key_rows + dims.key_cols)
    # Bias table: per head, four parity banks of H x W entries (bank (ty & 1, tx & 1) of
    # table pixel (ty, tx); the largest bank has H x W), interleaved bank by bank.
    sizes["rpe"] = (8 * WEIGHT_BYTES, 4 * dims.heads * dims.height * dims.width
                    if dims.use_pe else 0)
    return sizes


class LayerLayout:
    """Strides, base addresses and parameter sections of the layer engine's DRAM image.

    Arguments
    ---------
    dims : LayerDims
    num_slices : int
        Slices of the run (one descriptor each).
    lanes, cols : int
        Multiply-accumulate array: lanes per row (channels of a window-buffer word) and
        columns (``hw.lanes``, ``hw.array_cols``); the parameter tiles follow them.
    bus_bytes, max_beats : int
        AXI data bytes per beat, longest burst.
    element_bytes, out_element_bytes : int
        Stored bytes of an ``x`` and of a ``y`` element.
    addr_bits : int
        AXI address width; the image must fit.
    """

    def __init__(self, dims: LayerDims, num_slices: int, lanes: int, cols: int,
                 bus_bytes: int, max_beats: int, element_bytes: int = 2,
                 out_element_bytes: int = 2, addr_bits: int = 32) -> None:
        self.dims = dims
        self.num_slices = num_slices
        self.lanes, self.cols = lanes, cols
        self.bus_bytes, self.max_beats = bus_bytes, max_beats
        self.element_bytes, self.out_element_bytes = element_bytes, out_element_bytes
        c = dims.channels
        self.pixel_stride = round_up(c * element_bytes, bus_bytes)
        self.out_stride = round_up(c * out_element_bytes, bus_bytes)
        self.desc_stride = round_up(DESC_BYTES, bus_bytes)
        sections, off = [], 0
        for name, (bits, words) in _section_sizes(dims, lanes, cols).items():
            nbytes = round_up(math.ceil(bits * words / 8), bus_bytes)
            sections.append(ParamSection(name, off, nbytes, bits, words))
            off += nbytes
        self.sections = {s.name: s for s in sections}
        self.param_bytes = off
        pixels = dims.height * dims.width
        self.x_base = PAGE
        self.param_base = round_up(self.x_base + pixels * self.pixel_stride, PAGE)
        self.desc_base = round_up(self.param_base + self.param_bytes, PAGE)
        self.y_base = round_up(self.desc_base + num_slices * self.desc_stride, PAGE)
        self.total_bytes = round_up(self.y_base + pixels * self.out_stride, PAGE)
        if self.total_bytes > 1 << addr_bits:
            raise ConfigError("hw.addr_bits", addr_bits,
                              f"wide enough for {self.total_bytes} bytes of DRAM")

    def x_addr(self, row: int, col: int) -> int:
        """Byte address of pixel ``(row, col)`` of ``x``."""
        return self.x_base + (row * self.dims.width + col) * self.pixel_stride

    def y_addr(self, row: int, col: int) -> int:
        """Byte address of pixel ``(row, col)`` of ``y``."""
        return self.y_base + (row * self.dims.width + col) * self.out_stride

    # -- host packing ---------------------------------------------------------------------
    def tensor_at(self, addr: int) -> str:
        """The tensor (``layer_transfers``' name) holding byte ``addr``."""
        if addr >= self.y_base:
            return "output"
        if addr >= self.desc_base:
            return "descriptor"
        if addr >= self.param_base:
            return "weights"
        return "value"

    def pack_x(self, x_q: np.ndarray) -> bytes:
        """The map ``(C, H, W)`` in Q(value_frac) -> ``x`` bytes (pixel-major)."""
        x = np.asarray(x_q, dtype=np.int64)
        return _pack_rows(x.reshape(x.shape[0], -1).T, self.element_bytes, self.pixel_stride)

    def unpack_y(self, data: bytes) -> np.ndarray:
        """``y`` bytes -> int64 ``(C, H, W)``, sign-extended."""
        d, eb = self.dims, self.out_element_bytes
        raw = np.frombuffer(data[: d.height * d.width * self.out_stride], dtype=np.uint8)
        raw = raw.reshape(d.height * d.width, self.out_stride)[:, : d.channels * eb]
        vals = raw.copy().view(f"<i{eb}").astype(np.int64)
        return vals.T.reshape(d.channels, d.height, d.width)

    def param_elements(self, qp: FixedLayerParams) -> dict[str, tuple[np.ndarray, int]]:
        """Each parameter section as ``(elements in memory order, bytes per element)``."""
        d, L, N = self.dims, self.lanes, self.cols
        c, cg = d.channels, d.group_channels
        out: dict[str, tuple[np.ndarray, int]] = {}
        for name in ("proj_q", "proj_k", "proj_v", "proj_out"):
            w = getattr(qp, name)[0]                                   # (out, in)
            tiles = w.reshape(c // N, N, c // L, L).transpose(0, 2, 3, 1)
            out[name] = (tiles.reshape(-1), WEIGHT_BYTES)
        off = np.zeros((cg // L, L, N), dtype=np.int64)
        off[:, :, :2] = qp.offset_w.T.reshape(cg // L, L, 2)
        out["offset_proj"] = (off.reshape(-1), WEIGHT_BYTES)
        k, q = d.kernel, (d.kernel + 1) // 2
        taps = np.zeros((cg, 2 * q, 2 * q), dtype=np.int64)
        taps[:, :k, :k] = qp.conv_w.reshape(cg, k, k)
        words = taps.reshape(cg // L, L, q, 2, q, 2).transpose(2, 4, 0, 3, 5, 1)
        out["dwconv"] = (words.reshape(-1), WEIGHT_BYTES)
        biases = [qp.proj_q[1], qp.proj_k[1], qp.proj_v[1], qp.proj_out[1], qp.conv_b,
                  qp.norm_b]
        out["bias"] = (np.concatenate(biases), BIAS_BYTES)
        out["norm_gain"] = (np.asarray(qp.norm_w), WEIGHT_BYTES)
        out["reference"] = (np.concatenate([qp.ref_y, qp.ref_x]), REF_BYTES)
        if d.use_pe:
            per = self.bus_bytes // (4 * WEIGHT_BYTES)      # entries per bank per beat
            banks = rpe_banks(qp.rpe)
            banks = np.pad(banks, ((0, 0), (0, -banks.shape[1] % per)))
            out["rpe"] = (banks.reshape(4, -1, per).transpose(1, 0, 2).reshape(-1),
                          WEIGHT_BYTES)
        else:
            out["rpe"] = (np.zeros(0, dtype=np.int64), WEIGHT_BYTES)
        return out

    def pack_params(self, qp: FixedLayerParams) -> bytes:
        """The parameter region: every section in :data:`PARAM_SECTIONS` order."""
        if qp.map_size != (self.dims.height, self.dims.width):
            raise InputError(f"the parameters are for a {qp.map_size} map, the layout for "
                             f"{(self.dims.height, self.dims.width)}")
        elements = self.param_elements(qp)
        parts = []
        for name in PARAM_SECTIONS:
            sec = self.sections[name]
            vals, nbytes = elements[name]
            raw = np.asarray(vals, dtype=np.int64).astype(f"<i{nbytes}").tobytes()
            if len(raw) > sec.nbytes:
                raise InputError(f"section {name}: {len(raw)} bytes for {sec.nbytes}")
            parts.append(raw.ljust(sec.nbytes, b"\0"))
        return b"".join(parts)

    def memory_image(self, x_q: np.ndarray, qp: FixedLayerParams,
                     tasks: list[SliceTask]) -> dict[int, bytes]:
        """Base address -> bytes of every input: ``x``, the parameters, the descriptors."""
        return {self.x_base: self.pack_x(x_q), self.param_base: self.pack_params(qp),
                self.desc_base: self.pack_descriptors(tasks)}

    def pack_descriptors(self, tasks: list[SliceTask]) -> bytes:
        """Descriptor bytes of ``tasks``, ``desc_stride`` each."""
        rows = []
        for t in tasks:
            values = np.asarray(t.descriptor(), dtype=np.int64)
            if values.min() < OPEN_LO or values.max() > OPEN_HI:
                raise InputError(f"slice {t.index}: a descriptor field exceeds i16")
            rows.append(values.astype("<i2").tobytes().ljust(self.desc_stride, b"\0"))
        return b"".join(rows)


def layer_transfers(layout: LayerLayout, tasks: list[SliceTask]) -> list[Burst]:
    """The bursts of one run of the layer engine, in the contract's order.

    1. the parameter region (tensor ``weights``), once;
    2. per slice: its descriptor (``descriptor``); its window row by row (``value``: the
       map ``x``; also for a slice without keys); the rows of its own pixels of ``y``
       (``output``).

    Each region is split by :func:`defslice.model.layout.split_bursts`.
    """
    out: list[Burst] = []

    def region(addr: int, nbytes: int, write: bool, tensor: str) -> None:
        for a, beats in split_bursts(addr, nbytes, layout.bus_bytes, layout.max_beats):
            out.append(Burst(a, beats, write, tensor))

    region(layout.param_base, layout.param_bytes, False, "weights")
    for k, t in enumerate(tasks):
        region(layout.desc_base + k * layout.desc_stride, layout.desc_stride, False,
               "descriptor")
        w = t.window
        for r in range(w.rows):
            region(layout.x_addr(w.row0 + r, w.col0), w.cols * layout.pixel_stride, False,
                   "value")
        g = t.region
        for r in range(g.rows):
            region(layout.y_addr(g.row0 + r, g.col0), g.cols * layout.out_stride, True,
                   "output")
    return out
