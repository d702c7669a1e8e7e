"""The layer engine's shape for one layer: array, slices, limits it refuses, DRAM layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from defslice.config import LayerNumericsConfig
from defslice.errors import ConfigError
from defslice.model.layer_layout import ARRAY_ROWS, LayerDims, LayerLayout, SliceTask, slice_tasks
from defslice.model.slicing import SliceGrid

if TYPE_CHECKING:
    from defslice.config import Config

__all__ = ["MAX_SLICE_KEYS", "LayerPlan"]

#: Most keys (of one group) a slice may hold: the key, k and v buffers and the softmax
#: rows are sized for it. DAT++'s stride-8 stage 1 puts at most 9 keys in a 28 x 14 slice.
MAX_SLICE_KEYS = 64
#: The shallow operand buffers ``hw.operand_ram = "block"`` puts in block RAM.
OPERAND_BUFFERS = ("keys", "k", "v", "o", "g")


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_formats(cfg: Config) -> None:
    """What the engine's words and windows are built for: 16-bit values and outputs in
    DRAM and on chip, keys clamped into their window (``docs/slicing.md``)."""
    d, n = cfg.dram, cfg.numerics
    if cfg.slicing.clamp != "clamp":
        raise ConfigError("slicing.clamp", cfg.slicing.clamp,
                          "'clamp' for hw.engine = 'layer' (key positions are clamped into "
                          "their window)")
    for field_name, value in (("dram.element_bytes", d.element_bytes),
                              ("dram.out_element_bytes", d.out_element_bytes)):
        if value != 2:
            raise ConfigError(field_name, value, "2 for hw.engine = 'layer' (16-bit words)")
    if n.value_bits != 16:
        raise ConfigError("numerics.value_bits", n.value_bits,
                          "16 for hw.engine = 'layer' (the window words are 16-bit lanes)")
    if n.out_bits > 16:
        raise ConfigError("numerics.out_bits", n.out_bits,
                          "at most 16 for hw.engine = 'layer' (16-bit y words)")


@dataclass(frozen=True)
class LayerPlan:
    """Everything the layer engine's generator, cycle model and resource estimate need.

    Members
    -------
    dims : LayerDims
    grid : SliceGrid
    lanes : int
        Channels per window-buffer word and reduction width of the array (``hw.lanes``).
    cols : int
        Array columns (``hw.array_cols``).
    bus_bytes, max_beats : int
        AXI beat bytes and longest burst.
    sets : int
        Window-buffer sets: 2 when double-buffered.
    element_bytes, out_element_bytes, addr_bits : int
        DRAM element sizes and the address width.
    ln : LayerNumericsConfig
        Fixed-point formats of the layer (``[layer_numerics]``).
    operand_ram : str
        ``hw.operand_ram``: ``"block"`` puts :data:`OPERAND_BUFFERS` in block RAM.
    """

    dims: LayerDims
    grid: SliceGrid
    lanes: int
    cols: int
    bus_bytes: int
    max_beats: int
    sets: int = 2
    element_bytes: int = 2
    out_element_bytes: int = 2
    addr_bits: int = 32
    ln: LayerNumericsConfig = field(default_factory=LayerNumericsConfig)
    operand_ram: str = "auto"

    @classmethod
    def from_config(cls, cfg: Config) -> LayerPlan:
        """The plan of ``cfg`` (``hw.engine = "layer"``).

        Raises
        ------
        ConfigError
            For a workload that is not a one-level DAT layer of batch 1, and for the
            limits of :meth:`__post_init__`.
        """
        w, hw = cfg.workload, cfg.hw
        if w.kind != "dat":
            raise ConfigError("workload.kind", w.kind, "'dat' for hw.engine = 'layer'")
        if w.batch != 1:
            raise ConfigError("workload.batch", w.batch,
                              "1 for the accelerator (run batch elements one after another)")
        _check_formats(cfg)
        return cls(LayerDims.from_config(cfg), SliceGrid.from_config(cfg), hw.lanes,
                   hw.array_cols, hw.bus_bytes, hw.max_burst_beats,
                   2 if hw.buffering == "double" else 1, cfg.dram.element_bytes,
                   cfg.dram.out_element_bytes, hw.addr_bits, cfg.layer_numerics,
                   hw.operand_ram)

    def __post_init__(self) -> None:
        self._check_array()
        too_many = max(t.num_keys for t in self.tasks)
        if too_many > MAX_SLICE_KEYS:
            raise ConfigError("slicing.slice_h/slice_w", (self.grid.slice_h, self.grid.slice_w),
                              f"slices holding at most {MAX_SLICE_KEYS} keys for the layer "
                              f"engine (one holds {too_many})")

    def _check_array(self) -> None:
        """``lanes``: a power of two >= 4 (the v banks take four keys of a result tile in
        different banks), dividing the head channels, a word fitting a beat; ``cols``: 2
        or 4 (a logit tile's keys sit in four k banks), no more than ``lanes``, dividing
        the head channels."""
        d = self.dims
        if not _is_pow2(self.lanes) or self.lanes < ARRAY_ROWS or d.head_dim % self.lanes:
            raise ConfigError("hw.lanes", self.lanes, f"a power of two >= {ARRAY_ROWS} "
                              f"dividing the head channels {d.head_dim} for the layer engine")
        if self.lanes * self.element_bytes > self.bus_bytes:
            raise ConfigError("hw.lanes", self.lanes, f"at most {self.bus_bytes} bytes of "
                              f"lanes * dram.element_bytes per bus beat")
        if self.cols not in (2, 4) or self.cols > self.lanes or d.head_dim % self.cols:
            raise ConfigError("hw.array_cols", self.cols, f"2 or 4, at most hw.lanes = "
                              f"{self.lanes}, dividing the head channels {d.head_dim}")
        tile = 2 * self.lanes * min(self.cols, ARRAY_ROWS)
        if tile < self.bus_bytes:
            raise ConfigError("hw.axi_data_bits", 8 * self.bus_bytes,
                              f"at most {8 * tile} bits (a weight tile of hw.lanes x "
                              f"hw.array_cols 16-bit weights fills whole beats)")

    # -- derived sizes ---------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Array rows: one 2x2 quad of pixels (:data:`ARRAY_ROWS`)."""
        return ARRAY_ROWS

    @property
    def multipliers(self) -> int:
        """Multipliers of the array, ``rows * lanes * cols``."""
        return self.rows * self.lanes * self.cols

    @cached_property
    def tasks(self) -> list[SliceTask]:
        return slice_tasks(self.dims, self.grid)

    @cached_property
    def layout(self) -> LayerLayout:
        return LayerLayout(self.dims, self.grid.num_slices, self.lanes, self.cols,
                           self.bus_bytes, self.max_beats, self.element_bytes,
                           self.out_element_bytes, self.addr_bits)

    @property
    def max_keys(self) -> int:
        """Most keys in one slice (per group)."""
        return max(t.num_keys for t in self.tasks)

    @property
    def window_max(self) -> tuple[int, int]:
        """Largest window (rows, cols): the window and q buffers hold it."""
        return self.grid.max_window(0)

    @property
    def region_max(self) -> tuple[int, int]:
        """Largest slice (rows, cols)."""
        return min(self.grid.slice_h, self.dims.height), min(self.grid.slice_w,
                                                              self.dims.width)

    @property
    def bank_pixels(self) -> int:
        """Pixels of one window set in one parity bank, ``ceil(rows/2) * ceil(cols/2)``."""
        r, c = self.window_max
        return -(-r // 2) * -(-c // 2)

    @property
    def pixel_words(self) -> int:
        """Bank words per pixel, ``C / lanes``."""
        return self.dims.channels // self.lanes
