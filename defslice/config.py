"""The one configuration tree that flows through model, hw, sim, traffic and nas.

Every stage takes a :class:`Config`; none invents parameters of its own.  The tree is
made of frozen dataclasses, validated on construction: a bad value raises
:class:`~defslice.errors.ConfigError` naming the dotted field, the value and the
allowed range.  Cross-section rules (a slice larger than the map, lanes that do not
divide the channels, coordinates too narrow for the map) are checked by
:class:`Config` itself.

Configurations load from and save to TOML (:func:`load`, :func:`dump`), and four
named presets exist (:data:`PRESETS`): ``tiny`` (fast tests), ``dat56`` (the slicing
paper's 56x56 layer, DAT++-T stage 1), ``dat56-b`` (DAT++-B stage 1), both on the layer
engine, and ``msda-xmsda`` (the xMSDA paper's 5-level workload, sampling engine).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from defslice.errors import ConfigError

__all__ = [
    "PRESETS",
    "Config",
    "DramConfig",
    "HwConfig",
    "LayerNumericsConfig",
    "NasConfig",
    "NumericsConfig",
    "SlicingConfig",
    "TrafficConfig",
    "WorkloadConfig",
    "dump",
    "dumps",
    "load",
    "loads",
    "preset",
]

#: Widest feature map side the generator accepts (pixels).  Coordinates travel in at
#: most 24-bit words (see ``docs/numerics.md``), which bounds the map size.
MAX_MAP_SIDE = 4096


def _require(condition: bool, field_name: str, value: object, allowed: str) -> None:
    if not condition:
        raise ConfigError(field_name, value, allowed)


def _require_int(value: object, field_name: str, lo: int, hi: int | None = None) -> None:
    allowed = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"
    _require(
        isinstance(value, int) and not isinstance(value, bool), field_name, value, allowed
    )
    _require(value >= lo and (hi is None or value <= hi), field_name, value, allowed)


def _require_choice(value: object, field_name: str, choices: tuple) -> None:
    _require(value in choices, field_name, value, "one of " + ", ".join(map(repr, choices)))


def conv_output_side(side: int, kernel: int, stride: int) -> int:
    """Output side of DAT's offset convolution on a map side of ``side`` pixels.

    Padding is ``kernel // 2`` unless ``kernel == stride`` (then 0), as in DAT's
    ``DAttentionBaseline``: ``(side + 2 pad - kernel) // stride + 1``.
    """
    pad = 0 if kernel == stride else kernel // 2
    return (side + 2 * pad - kernel) // stride + 1


@dataclass(frozen=True)
class WorkloadConfig:
    """What is computed: the deformable-attention layer and how its inputs look.

    Members
    -------
    kind : ``"msda"`` or ``"dat"``
        ``msda``: multi-scale deformable attention (Deformable DETR / MMCV), each query
        samples ``points`` points per head and level, weighted by attention weights.
        ``dat``: DAT++'s deformable attention (``DAttentionBaseline``): a key grid of
        reference points per offset group moved by learned offsets, keys sampled there,
        attention of every pixel over them. The sampling engine sees it as MSDA with
        ``sample_heads`` = groups, ``sample_channels`` = C / groups, one level, one point
        and weight 1 (:attr:`sample_heads`, :attr:`sample_channels`).
    levels : tuple of (H, W)
        Feature-map size of each level in pixels, largest first.
    heads : int
        Attention heads (``msda``: the heads M of the sampling).
    channels : int
        Channels per attention head; the layer has C = heads * channels channels.
    groups : int
        ``dat``: offset groups (a divisor of ``heads``); ``msda``: must be 1.
    points : int
        Sampling points per head and level P (``dat``: must be 1).
    queries : int or None
        Number of queries (``msda``). ``None``: one query per value pixel of every level,
        the encoder case. Ignored for ``dat``, whose sampled queries are the key grid.
    stride : int
        ``dat``: stride of the offset convolution (DAT's sampling stride; DAT++ stage 1: 8).
    offset_kernel : int
        ``dat``: depthwise kernel of the offset network (DAT++ stage 1: 9).
    offset_range_factor : float
        ``dat``: DAT's offset mode. ``< 0`` (DAT++): offsets unbounded, positions clamped
        to the map; ``>= 0``: ``tanh(raw) * factor * (S - 1) / (2 (Sk - 1))`` pixels on a
        side of S pixels and Sk keys (``docs/numerics.md``, "DAT conventions").
    use_pe : bool
        ``dat``: relative-position bias from a (2H-1) x (2W-1) table per head.
    offset_std_px : float
        Standard deviation in pixels of the Gaussian offsets of a random workload (MSDA:
        per level; ``dat`` with a negative factor: raw offsets before the clamp).
    batch : int
        Batch size N.

    The key grid (Hk, Wk) of a ``dat`` workload is derived from the offset convolution
    (:attr:`key_grid`); both sides must be at least 2 (DAT divides by Hk - 1).
    """

    kind: Literal["msda", "dat"] = "msda"
    levels: tuple[tuple[int, int], ...] = ((8, 8), (4, 4))
    heads: int = 2
    channels: int = 4
    groups: int = 1
    points: int = 2
    queries: int | None = None
    stride: int = 8
    offset_kernel: int = 9
    offset_range_factor: float = -1.0
    use_pe: bool = True
    offset_std_px: float = 2.0
    batch: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(tuple(lvl) for lvl in self.levels))
        _require_choice(self.kind, "workload.kind", ("msda", "dat"))
        self._check_levels()
        _require_int(self.heads, "workload.heads", 1, 64)
        _require_int(self.channels, "workload.channels", 1, 1024)
        _require_int(self.groups, "workload.groups", 1, 64)
        _require_int(self.points, "workload.points", 1, 64)
        _require_int(self.batch, "workload.batch", 1, 64)
        if self.queries is not None:
            _require_int(self.queries, "workload.queries", 1, 1 << 24)
        _require_int(self.stride, "workload.stride", 1, MAX_MAP_SIDE)
        _require_int(self.offset_kernel, "workload.offset_kernel", 1, 31)
        _require(isinstance(self.offset_range_factor, (int, float))
                 and not isinstance(self.offset_range_factor, bool)
                 and math.isfinite(self.offset_range_factor),
                 "workload.offset_range_factor", self.offset_range_factor,
                 "a finite number (< 0: DAT++ clamp mode)")
        _require(isinstance(self.use_pe, bool), "workload.use_pe", self.use_pe, "true or false")
        _require(
            isinstance(self.offset_std_px, (int, float)) and self.offset_std_px >= 0,
            "workload.offset_std_px", self.offset_std_px, ">= 0",
        )
        if self.kind == "dat":
            self._check_dat()
        else:
            _require(self.groups == 1, "workload.groups", self.groups, "1 when kind = 'msda'")

    def _check_levels(self) -> None:
        _require(len(self.levels) >= 1, "workload.levels", self.levels, "at least one (H, W)")
        h0, w0 = self.levels[0]
        for i, lvl in enumerate(self.levels):
            _require(len(lvl) == 2, f"workload.levels[{i}]", lvl, "a pair (H, W)")
            _require_int(lvl[0], f"workload.levels[{i}].H", 1, MAX_MAP_SIDE)
            _require_int(lvl[1], f"workload.levels[{i}].W", 1, MAX_MAP_SIDE)
            _require(
                lvl[0] <= h0 and lvl[1] <= w0,
                f"workload.levels[{i}]",
                lvl,
                f"no larger than level 0 {self.levels[0]} (levels are listed largest first)",
            )

    def _check_dat(self) -> None:
        _require(len(self.levels) == 1, "workload.levels", self.levels,
                 "exactly one level when kind = 'dat'")
        _require(self.points == 1, "workload.points", self.points, "1 when kind = 'dat'")
        h, w = self.levels[0]
        _require(h >= 2 and w >= 2, "workload.levels[0]", self.levels[0],
                 "at least 2 x 2 pixels when kind = 'dat'")
        _require(self.heads % self.groups == 0, "workload.groups", self.groups,
                 f"a divisor of workload.heads = {self.heads}")
        hk, wk = self.key_grid
        _require(hk >= 2 and wk >= 2, "workload.stride", self.stride,
                 f"a stride and offset_kernel ({self.offset_kernel}) giving a key grid of at "
                 f"least 2 x 2 on the {h}x{w} map (got {hk} x {wk})")

    @property
    def num_levels(self) -> int:
        """Number of levels L."""
        return len(self.levels)

    @property
    def value_pixels(self) -> int:
        """Total value pixels S = sum of H_l * W_l."""
        return sum(h * w for h, w in self.levels)

    @property
    def key_grid(self) -> tuple[int, int]:
        """``dat``: sampled keys (Hk, Wk) per group, the offset convolution's output size."""
        h, w = self.levels[0]
        return (conv_output_side(h, self.offset_kernel, self.stride),
                conv_output_side(w, self.offset_kernel, self.stride))

    @property
    def num_queries(self) -> int:
        """Queries the sampling engine handles (``dat``: the Hk * Wk keys of a group)."""
        if self.kind == "dat":
            return self.key_grid[0] * self.key_grid[1]
        return self.queries if self.queries is not None else self.value_pixels

    @property
    def embed_dim(self) -> int:
        """Channels of the layer, C = heads * channels (= sample_heads * sample_channels)."""
        return self.heads * self.channels

    @property
    def sample_heads(self) -> int:
        """Heads M of the sampling engine: ``heads`` (``msda``) or ``groups`` (``dat``)."""
        return self.groups if self.kind == "dat" else self.heads

    @property
    def sample_channels(self) -> int:
        """Channels per sampling head D: ``channels`` (``msda``) or C / groups (``dat``)."""
        return self.embed_dim // self.groups if self.kind == "dat" else self.channels

    def describe(self) -> str:
        """One-line description of the layer and of what the sampling engine sees."""
        if self.kind == "dat":
            (h, w), (hk, wk), k = self.levels[0], self.key_grid, self.offset_kernel
            return (f"DAT, {h}x{w} map, {self.heads} head(s) x {self.channels} channels in "
                    f"{self.groups} offset group(s), stride {self.stride}, {k}x{k} offset "
                    f"kernel, {hk}x{wk} keys, offset_range_factor {self.offset_range_factor:g}"
                    f", position bias {'on' if self.use_pe else 'off'}; sampling engine: "
                    f"M = {self.sample_heads}, D = {self.sample_channels}, "
                    f"{self.num_queries} queries")
        return (f"MSDA, levels {list(self.levels)}, M={self.heads}, D={self.channels}, "
                f"P={self.points}, {self.num_queries} queries, offsets N(0, "
                f"{self.offset_std_px:g} px)")


@dataclass(frozen=True)
class SlicingConfig:
    """How the largest level is cut into slices (the paper's Hs, Ws and overlap).

    Members
    -------
    slice_h, slice_w : int
        Slice height Hs and width Ws in pixels of level 0. The last slice row/column may
        be smaller when they do not divide the map.
    overlap : int
        Halo O in pixels added on every side of the slice's region on each level.
    clamp : ``"clamp"`` or ``"drop"``
        What happens to a sampling point outside its window. ``clamp`` (the paper):
        the coordinate is clamped so the 2x2 footprint stays in the window. ``drop``:
        the coordinate is kept and corners outside the window contribute zero.
    """

    slice_h: int = 4
    slice_w: int = 4
    overlap: int = 1
    clamp: Literal["clamp", "drop"] = "clamp"

    def __post_init__(self) -> None:
        _require_int(self.slice_h, "slicing.slice_h", 1, MAX_MAP_SIDE)
        _require_int(self.slice_w, "slicing.slice_w", 1, MAX_MAP_SIDE)
        _require_int(self.overlap, "slicing.overlap", 0, MAX_MAP_SIDE)
        _require_choice(self.clamp, "slicing.clamp", ("clamp", "drop"))


@dataclass(frozen=True)
class NumericsConfig:
    """Fixed-point formats of the bit-exact datapath (see ``docs/numerics.md``).

    All signed values are two's complement; ``*_frac`` is the number of fraction bits.

    Members
    -------
    value_bits, value_frac : int
        Feature-map (value) samples, signed.
    coord_bits, coord_frac : int
        Sampling coordinates in pixels of their level, signed, at most 24 bits.
    weight_bits : int
        Attention weights, signed with ``weight_bits - 2`` fraction bits (range [-2, 2)).
    acc_bits : int
        Accumulator over levels and points, saturating.
    out_bits, out_frac : int
        Output samples, signed, rounded half up and saturated.
    rounding : ``"half_up"``
        The only rounding the datapath implements: ``floor(x + 1/2)``.
    saturate : bool
        Must be true: overflow saturates, never wraps.
    """

    value_bits: int = 16
    value_frac: int = 8
    coord_bits: int = 24
    coord_frac: int = 8
    weight_bits: int = 16
    acc_bits: int = 40
    out_bits: int = 16
    out_frac: int = 8
    rounding: Literal["half_up"] = "half_up"
    saturate: bool = True

    def __post_init__(self) -> None:
        _require_int(self.value_bits, "numerics.value_bits", 2, 24)
        _require_int(self.value_frac, "numerics.value_frac", 0, self.value_bits - 1)
        _require_int(self.coord_frac, "numerics.coord_frac", 1, 12)
        _require_int(self.coord_bits, "numerics.coord_bits", self.coord_frac + 2, 24)
        _require_int(self.weight_bits, "numerics.weight_bits", 3, 16)
        _require_int(self.acc_bits, "numerics.acc_bits", self.value_bits + self.weight_bits, 64)
        _require_int(self.out_bits, "numerics.out_bits", 2, 32)
        _require_int(self.out_frac, "numerics.out_frac", 0, self.value_frac + self.weight_frac)
        _require_choice(self.rounding, "numerics.rounding", ("half_up",))
        _require(self.saturate is True, "numerics.saturate", self.saturate,
                 "true (the datapath saturates; wrap-around is not offered)")

    @property
    def weight_frac(self) -> int:
        """Fraction bits of attention weights (``weight_bits - 2``)."""
        return self.weight_bits - 2

    @property
    def out_shift(self) -> int:
        """Right shift from accumulator to output: value_frac + weight_frac - out_frac."""
        return self.value_frac + self.weight_frac - self.out_frac


#: Largest table (entries) the fixed-point layer may need: one to four block RAMs.
MAX_TABLE_ENTRIES = 4096

#: Operand widths (signed bits) of one DSP48E1 multiplier: every product of the
#: fixed-point layer fits (the wide operand in port A, the narrow one in port B).
DSP_A_BITS, DSP_B_BITS = 25, 18


def gelu_table_len(frac: int) -> int:
    """Entries of the GELU table in Q(``frac``): inputs ``-i * 2**-frac``, ``i`` below it.

    Beyond, ``|GELU(-x)| = x * Phi(-x) <= 2**-(frac + 1)`` (decreasing for x > 0.76), so
    every entry rounds to 0: the length is ``ceil(x* * 2**frac)`` with ``x*`` solving
    ``x Phi(-x) = 2**-(frac + 1)`` (bisection in float64, 200 steps).
    """
    target = 2.0 ** -(frac + 1)
    lo, hi = 0.7518, 64.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid * 0.5 * math.erfc(mid / math.sqrt(2)) > target:
            lo = mid
        else:
            hi = mid
    return math.ceil(hi * 2 ** frac)


def tanh_table_len(in_frac: int, out_frac: int) -> int:
    """Entries of the tanh table, inputs ``i * 2**-in_frac``: from
    ``ceil(atanh(1 - 2**-(out_frac + 1)) * 2**in_frac)`` on, tanh rounds to 1 in Q(out_frac)."""
    return math.ceil(math.atanh(1.0 - 2.0 ** -(out_frac + 1)) * 2 ** in_frac)


def _dsp_fits(a: int, b: int) -> bool:
    return min(a, b) <= DSP_B_BITS and max(a, b) <= DSP_A_BITS


@dataclass(frozen=True)
class LayerNumericsConfig:
    """Fixed-point formats of the whole DAT++ layer (``docs/numerics.md``, "DAT++ layer in
    fixed point"); the map ``x``, coordinates and the output ``y`` use ``[numerics]``
    (``value_*``, ``coord_*``, ``out_*``).

    Every tensor is signed two's complement, ``Q(frac)`` with ``*_frac`` fraction bits;
    weights are ``weight_bits`` wide, activations ``act_bits``, biases ``acc_bits`` in
    their accumulator's format. Rounding is half up, overflow saturates.

    Members
    -------
    act_bits, weight_bits, acc_bits : int
        Activation, weight and exact-accumulator widths (bits).
    proj_q_frac, proj_k_frac, proj_v_frac, proj_out_frac : int
        Weights of the 1x1 projections (``proj_k`` after the logit-scale fold).
    offset_conv_frac, norm_frac, offset_proj_frac : int
        Weights of ``conv_offset.0`` (depthwise), ``conv_offset.1`` (LayerNorm gain) and
        ``conv_offset.3`` (after the pixel-scale fold when ``offset_range_factor < 0``).
    rpe_frac : int
        Relative-position bias table ``rpe_table``.
    offset_scale_frac : int
        The constant ``factor * (S - 1) / (2 (Sk - 1))`` pixels (``factor >= 0`` only).
    q_frac, h_frac, z_frac, n_frac : int
        q; the offset conv output; the normalised ``(h - mean) / std``; the LayerNorm
        output, which is also the GELU input and output.
    t_frac, tanh_frac : int
        tanh input and output (``factor >= 0`` only).
    k_frac, v_frac, o_frac : int
        Keys, values, attention output (probabilities times values).
    logit_bits, logit_frac : int
        Logits (scaled q.k plus the position bias).
    rsqrt_index_bits, rsqrt_frac : int
        1/sqrt table: ``3 * 2**(rsqrt_index_bits - 2)`` entries in Q(``rsqrt_frac``).
    log2e_frac : int
        The constant log2(e).
    exp_index_bits, exp_frac : int
        Fraction bits of the base-2 exponent (the exp2 table has ``2**exp_index_bits``
        entries) and of the table's values.
    recip_frac : int
        Softmax reciprocal ``floor(2**(exp_frac + recip_frac) / sum)``.
    prob_frac : int
        Probabilities.
    """

    act_bits: int = 16
    weight_bits: int = 16
    acc_bits: int = 48
    proj_q_frac: int = 14
    proj_k_frac: int = 14
    proj_v_frac: int = 14
    proj_out_frac: int = 14
    offset_conv_frac: int = 14
    norm_frac: int = 13
    offset_proj_frac: int = 11
    rpe_frac: int = 13
    offset_scale_frac: int = 10
    q_frac: int = 12
    h_frac: int = 13
    z_frac: int = 11
    n_frac: int = 10
    t_frac: int = 9
    tanh_frac: int = 11
    k_frac: int = 12
    v_frac: int = 11
    o_frac: int = 11
    logit_bits: int = 20
    logit_frac: int = 10
    rsqrt_index_bits: int = 10
    rsqrt_frac: int = 15
    log2e_frac: int = 15
    exp_index_bits: int = 10
    exp_frac: int = 15
    recip_frac: int = 22
    prob_frac: int = 15

    def __post_init__(self) -> None:
        p = "layer_numerics."
        _require_int(self.act_bits, p + "act_bits", 4, DSP_B_BITS - 1)
        _require_int(self.weight_bits, p + "weight_bits", 4, DSP_B_BITS)
        _require_int(self.acc_bits, p + "acc_bits", 2 * self.weight_bits, 64)
        for name in ("proj_q_frac", "proj_k_frac", "proj_v_frac", "proj_out_frac",
                     "offset_conv_frac", "norm_frac", "offset_proj_frac", "rpe_frac",
                     "offset_scale_frac"):
            _require_int(getattr(self, name), p + name, 0, self.weight_bits - 1)
        for name in ("q_frac", "h_frac", "z_frac", "n_frac", "t_frac", "k_frac", "v_frac",
                     "o_frac"):
            _require_int(getattr(self, name), p + name, 0, self.act_bits - 1)
        _require_int(self.tanh_frac, p + "tanh_frac", 1, DSP_B_BITS - 2)
        _require_int(self.logit_bits, p + "logit_bits", 4, DSP_A_BITS - 1)
        _require_int(self.logit_frac, p + "logit_frac", 0, self.logit_bits - 1)
        _require_int(self.rsqrt_index_bits, p + "rsqrt_index_bits", 2,
                     (MAX_TABLE_ENTRIES * 4 // 3).bit_length() - 1)
        _require_int(self.rsqrt_frac, p + "rsqrt_frac", self.z_frac, DSP_A_BITS - 3)
        _require_int(self.log2e_frac, p + "log2e_frac", 1, DSP_B_BITS - 2)
        _require_int(self.exp_index_bits, p + "exp_index_bits", 0,
                     MAX_TABLE_ENTRIES.bit_length() - 1)
        _require_int(self.exp_frac, p + "exp_frac", 1, DSP_B_BITS - 2)
        _require_int(self.prob_frac, p + "prob_frac", 1, DSP_B_BITS - 2)
        _require_int(self.recip_frac, p + "recip_frac", 1, DSP_A_BITS - 2)
        self._check_shifts()
        self._check_tables()

    def _check_shifts(self) -> None:
        """Every requantisation inside the section shifts right (or not at all)."""
        p = "layer_numerics."
        for name, frac, limit, why in (
            ("h_frac", self.h_frac, self.q_frac + self.offset_conv_frac,
             "q_frac + offset_conv_frac"),
            ("n_frac", self.n_frac, self.z_frac + self.norm_frac, "z_frac + norm_frac"),
            ("t_frac", self.t_frac, self.n_frac + self.offset_proj_frac,
             "n_frac + offset_proj_frac"),
            ("logit_frac", self.logit_frac, self.q_frac + self.k_frac, "q_frac + k_frac"),
            ("exp_index_bits", self.exp_index_bits, self.logit_frac + self.log2e_frac,
             "logit_frac + log2e_frac"),
            ("prob_frac", self.prob_frac, self.exp_frac + self.recip_frac,
             "exp_frac + recip_frac"),
            ("o_frac", self.o_frac, self.prob_frac + self.v_frac, "prob_frac + v_frac"),
        ):
            _require(frac <= limit, p + name, frac, f"<= {why} = {limit}")

    def _check_tables(self) -> None:
        p = "layer_numerics."
        for name, entries in (("n_frac", self.gelu_table_len),
                              ("t_frac", self.tanh_table_len)):
            _require(entries <= MAX_TABLE_ENTRIES, p + name, getattr(self, name),
                     f"a value whose table has <= {MAX_TABLE_ENTRIES} entries (has {entries})")

    # -- derived sizes ------------------------------------------------------------------
    @property
    def rsqrt_table_len(self) -> int:
        """Entries of the 1/sqrt table (indices ``2**(b-2) .. 2**b - 1``)."""
        return 3 << (self.rsqrt_index_bits - 2)

    @property
    def exp_table_len(self) -> int:
        """Entries of the exp2 table (one per fraction of the exponent)."""
        return 1 << self.exp_index_bits

    @property
    def gelu_table_len(self) -> int:
        """Entries of the GELU table (:func:`gelu_table_len` of ``n_frac``)."""
        return gelu_table_len(self.n_frac)

    @property
    def tanh_table_len(self) -> int:
        """Entries of the tanh table (:func:`tanh_table_len` of ``t_frac``, ``tanh_frac``)."""
        return tanh_table_len(self.t_frac, self.tanh_frac)

    def dsp_products(self, value_bits: int, coord_frac: int) -> list[tuple[str, int, int]]:
        """Every kind of product of the layer as ``(name, bits, bits)`` signed operand
        widths; ``value_bits`` and ``coord_frac`` come from ``[numerics]``."""
        a, w, bil = self.act_bits, self.weight_bits, 2 * coord_frac + 2
        return [
            ("1x1 projections and offset convolutions (weight x activation)", w, a),
            ("sampled value x bilinear weight", value_bits, bil),
            ("LayerNorm square d * d", a + 1, a + 1),
            ("LayerNorm d x 1/sqrt table", a + 1, self.rsqrt_frac + 2),
            ("LayerNorm gain z x gamma", a, w),
            ("tanh x offset scale", self.tanh_frac + 2, w),
            ("bias table x bilinear weight", w, bil),
            ("logit q x k", a, a),
            ("logit difference x log2(e)", self.logit_bits + 1, self.log2e_frac + 2),
            ("exponential x reciprocal", self.exp_frac + 2, self.recip_frac + 2),
            ("probability x value", self.prob_frac + 2, a),
        ]


@dataclass(frozen=True)
class HwConfig:
    """Shape of the generated accelerator.

    Members
    -------
    lanes : int
        Channels processed per cycle (multiply-accumulate lanes); must divide D.
    buffering : ``"single"`` or ``"double"``
        Window buffers: ``double`` loads the next window while this one computes.
    axi_data_bits : int
        Width of the AXI4 master data bus (bits); one beat carries this many bits.
    max_burst_beats : int
        Longest burst the master issues (AXI4 allows up to 256).
    addr_bits : int
        AXI address width.
    board : str
        amaranth-boards platform for the Vivado build tree.
    part : str
        Xilinx part the utilisation report targets.
    clock_mhz : float
        Target clock frequency.
    engine : ``"sampling"`` or ``"layer"``
        What the accelerator computes: ``sampling`` the deformable sampling and weighted
        sum (MSDA, or DAT's sampled keys); ``layer`` the whole DAT++ deformable-attention
        layer slice by slice (``docs/hw_layer.md``; ``workload.kind = "dat"`` only).
    array_cols : int
        ``layer`` engine: columns of the multiply-accumulate array, a power of two; the
        array has 4 x ``lanes`` x ``array_cols`` multipliers.
    operand_ram : ``"auto"`` or ``"block"``
        ``layer`` engine: RAM of the shallow operand buffers (keys, k, v, o, g): ``auto``
        lets synthesis choose (LUT RAM, being shallow); ``block`` marks them for block RAM
        (fewer LUT RAM cells, more block RAMs, same cycles; ``docs/hw_layer.md``).
    """

    lanes: int = 2
    buffering: Literal["single", "double"] = "double"
    axi_data_bits: int = 64
    max_burst_beats: int = 256
    addr_bits: int = 32
    board: str = "arty_a7_100"
    part: str = "xc7a100tcsg324-1"
    clock_mhz: float = 100.0
    engine: Literal["sampling", "layer"] = "sampling"
    array_cols: int = 4
    operand_ram: Literal["auto", "block"] = "auto"

    def __post_init__(self) -> None:
        _require_int(self.lanes, "hw.lanes", 1, 64)
        _require_choice(self.engine, "hw.engine", ("sampling", "layer"))
        _require_choice(self.array_cols, "hw.array_cols", (1, 2, 4, 8, 16, 32, 64))
        _require_choice(self.buffering, "hw.buffering", ("single", "double"))
        _require_choice(self.operand_ram, "hw.operand_ram", ("auto", "block"))
        _require_choice(self.axi_data_bits, "hw.axi_data_bits", (32, 64, 128, 256, 512))
        _require_int(self.max_burst_beats, "hw.max_burst_beats", 1, 256)
        _require_int(self.addr_bits, "hw.addr_bits", 16, 64)
        _require(isinstance(self.board, str) and self.board != "", "hw.board", self.board,
                 "a non-empty board name")
        _require(isinstance(self.part, str) and self.part != "", "hw.part", self.part,
                 "a non-empty Xilinx part name")
        _require(isinstance(self.clock_mhz, (int, float)) and 1 <= self.clock_mhz <= 1000,
                 "hw.clock_mhz", self.clock_mhz, "a frequency in [1, 1000] MHz")

    @property
    def bus_bytes(self) -> int:
        """Bytes carried by one AXI beat."""
        return self.axi_data_bits // 8


@dataclass(frozen=True)
class DramConfig:
    """DRAM storage and burst rules shared by the traffic counter and the RTL.

    Members
    -------
    element_bytes : int
        Bytes per stored value sample (a value of ``value_bits`` is sign-extended).
    out_element_bytes : int
        Bytes per stored output sample.

    No burst crosses a 4 KiB page (the AXI4 rule, :data:`defslice.model.layout.PAGE`).
    """

    element_bytes: int = 2
    out_element_bytes: int = 2

    def __post_init__(self) -> None:
        _require_choice(self.element_bytes, "dram.element_bytes", (1, 2, 4))
        _require_choice(self.out_element_bytes, "dram.out_element_bytes", (1, 2, 4))


@dataclass(frozen=True)
class TrafficConfig:
    """Assumptions of the DRAM-traffic study (see ``docs/traffic.md``).

    Members
    -------
    seed : int
        Seed of the random workload (offsets, weights) the counter walks.
    defa_reuse_kib : int
        Size of DEFA's on-chip feature-map reuse buffer (KiB); DEFA does not publish it.
    defa_point_prune_threshold : float
        Sampling points whose attention weight is below this are pruned (DEFA's
        probability-aware pruning); DEFA does not publish the threshold.
    defa_pixel_prune_ratio : float
        Fraction of feature-map pixels removed by frequency-weighted pruning, in [0, 1).
    """

    seed: int = 0
    defa_reuse_kib: int = 64
    defa_point_prune_threshold: float = 0.02
    defa_pixel_prune_ratio: float = 0.0

    def __post_init__(self) -> None:
        _require_int(self.seed, "traffic.seed", 0)
        _require_int(self.defa_reuse_kib, "traffic.defa_reuse_kib", 0, 1 << 20)
        _require(isinstance(self.defa_point_prune_threshold, (int, float))
                 and 0 <= self.defa_point_prune_threshold < 1,
                 "traffic.defa_point_prune_threshold", self.defa_point_prune_threshold,
                 "a number in [0, 1)")
        _require(isinstance(self.defa_pixel_prune_ratio, (int, float))
                 and 0 <= self.defa_pixel_prune_ratio < 1,
                 "traffic.defa_pixel_prune_ratio", self.defa_pixel_prune_ratio,
                 "a number in [0, 1)")


@dataclass(frozen=True)
class NasConfig:
    """The slicing-strategy search space and its evolutionary search (paper, Alg. 1).

    Members
    -------
    slice_h_range, slice_w_range : (lo, hi)
        Inclusive ranges of Hs and Ws (paper: 8..28 on a 56x56 map).
    overlaps : tuple of int
        Overlap values searched (paper: 0, 1, 2).
    beta : float
        Constant beta of eq. 3 (resources of everything but the slice buffer), bits.
    r_min, r_max : float or None
        Resource bounds [Rmin, Rmax] of the Pareto update; ``None``: unbounded.
    generations, samples_per_generation : int
        T and k of Algorithm 1.
    crossover_prob : float
        Crossover probability P.
    seed : int
        Seed; the search is reproducible from it.
    evaluator : ``"fashion"``, ``"digits"`` or ``"imagefolder"``
        Accuracy objective: the DAT++-style Fashion-MNIST classifier (the default), the
        digits proxy (fast, for tests: 8x8 digits blown up to the map) or a DAT model on
        an image folder.
    finetune_epochs : int
        Epochs of alpha-divergence supernet fine-tuning.
    resource : ``"bram18"`` or ``"eq3"``
        Resource objective of the search: the RAMB18 count of the window buffers
        (``defslice.nas.resources.buffer_bram18``, calibrated against yosys) or the
        paper's eq. 3 (bits); both are reported.
    max_accuracy_drop : float
        The chosen point is the front member with the fewest RAMB18 whose validation
        accuracy is at most this below the unsliced model's (a fraction, 0.01 = one
        percentage point); when none is, the report says so.
    alpha_min, alpha_max : float
        alpha- < 0 < alpha+ of the alpha-divergence of eq. 1 (AlphaNet: -1 and 1).
    finetune_students : int
        Sub-nets per fine-tuning step: the smallest one plus this many minus one random.
    finetune_images : int
        Training images drawn (seeded, anew each epoch) for one fine-tuning epoch; all of
        them when the training set is smaller.
    finetune_lr : float
        Peak learning rate of the fine-tuning (AdamW; linear warm-up over the first 10%
        of the steps, then cosine decay to 0).
    finetune_teacher_weight : float
        Weight of the unsliced model's cross-entropy in the fine-tuning loss (each
        student's alpha-divergence has weight 1).
    train_epochs : int or None
        Epochs of the classifier's first training (then cached); ``None``: the
        evaluator's own (``fashion``: 2, ``digits``: 16).
    train_images : int or None
        Images the Fashion-MNIST classifier trains on (a seeded draw from the training
        part; ``None``: all of it). Fewer train faster and reach a lower accuracy.
    val_images : int
        Images of the seeded, stratified validation split of the Fashion-MNIST training
        set (the rest trains); fine-tuning, search and choice are scored on them.
    digits_margin : int or None
        Background margin of the digits objective, pixels of the map on each side: the
        digit fills the map minus this margin and is moved by up to this many pixels in
        each direction (randomly every training step; at fixed seeded shifts for
        validation), so no slice boundary always cuts the same stroke. ``None``: one
        key-grid cell (8 on the 56x56 map with 7x7 keys).
    digits_val_shifts : int
        Placements of each validation digit (the first one centred); more placements
        give a less noisy accuracy per sub-net, at proportional evaluation cost.
    """

    slice_h_range: tuple[int, int] = (8, 28)
    slice_w_range: tuple[int, int] = (8, 28)
    overlaps: tuple[int, ...] = (0, 1, 2)
    beta: float = 0.0
    r_min: float | None = None
    r_max: float | None = None
    generations: int = 60
    samples_per_generation: int = 8
    crossover_prob: float = 0.5
    seed: int = 0
    evaluator: Literal["fashion", "digits", "imagefolder"] = "fashion"
    finetune_epochs: int = 2
    resource: Literal["bram18", "eq3"] = "bram18"
    max_accuracy_drop: float = 0.01
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    finetune_students: int = 2
    finetune_images: int = 2000
    train_epochs: int | None = None
    train_images: int | None = None
    val_images: int = 2000
    finetune_lr: float = 3e-4
    finetune_teacher_weight: float = 3.0
    digits_margin: int | None = None
    digits_val_shifts: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "slice_h_range", tuple(self.slice_h_range))
        object.__setattr__(self, "slice_w_range", tuple(self.slice_w_range))
        object.__setattr__(self, "overlaps", tuple(self.overlaps))
        for name in ("slice_h_range", "slice_w_range"):
            lo_hi = getattr(self, name)
            _require(len(lo_hi) == 2, f"nas.{name}", lo_hi, "a pair (lo, hi)")
            _require_int(lo_hi[0], f"nas.{name}.lo", 1, MAX_MAP_SIDE)
            _require_int(lo_hi[1], f"nas.{name}.hi", lo_hi[0], MAX_MAP_SIDE)
        _require(len(self.overlaps) >= 1, "nas.overlaps", self.overlaps, "at least one value")
        for o in self.overlaps:
            _require_int(o, "nas.overlaps[]", 0, MAX_MAP_SIDE)
        _require(isinstance(self.beta, (int, float)) and self.beta >= 0, "nas.beta",
                 self.beta, ">= 0")
        _require_int(self.generations, "nas.generations", 1, 100000)
        _require_int(self.samples_per_generation, "nas.samples_per_generation", 1, 100000)
        _require(isinstance(self.crossover_prob, (int, float))
                 and 0 <= self.crossover_prob <= 1,
                 "nas.crossover_prob", self.crossover_prob, "a probability in [0, 1]")
        _require_int(self.seed, "nas.seed", 0)
        _require_choice(self.evaluator, "nas.evaluator", ("fashion", "digits", "imagefolder"))
        _require_int(self.finetune_epochs, "nas.finetune_epochs", 0, 1000)
        _require_choice(self.resource, "nas.resource", ("bram18", "eq3"))
        _require(isinstance(self.max_accuracy_drop, (int, float))
                 and 0 <= self.max_accuracy_drop <= 1,
                 "nas.max_accuracy_drop", self.max_accuracy_drop, "a fraction in [0, 1]")
        _require(isinstance(self.alpha_min, (int, float)) and -10 <= self.alpha_min < 0,
                 "nas.alpha_min", self.alpha_min, "a number in [-10, 0)")
        _require(isinstance(self.alpha_max, (int, float)) and 0 < self.alpha_max <= 10,
                 "nas.alpha_max", self.alpha_max, "a number in (0, 10]")
        _require_int(self.finetune_students, "nas.finetune_students", 1, 64)
        _require_int(self.finetune_images, "nas.finetune_images", 1, 10**7)
        if self.train_epochs is not None:
            _require_int(self.train_epochs, "nas.train_epochs", 1, 1000)
        _require_int(self.val_images, "nas.val_images", 10, 30000)
        if self.train_images is not None:
            _require_int(self.train_images, "nas.train_images", 10, 10**7)
        _require(isinstance(self.finetune_lr, (int, float)) and 0 < self.finetune_lr <= 1,
                 "nas.finetune_lr", self.finetune_lr, "a number in (0, 1]")
        _require(isinstance(self.finetune_teacher_weight, (int, float))
                 and 0 <= self.finetune_teacher_weight <= 100,
                 "nas.finetune_teacher_weight", self.finetune_teacher_weight,
                 "a number in [0, 100]")
        if self.digits_margin is not None:
            _require_int(self.digits_margin, "nas.digits_margin", 0, MAX_MAP_SIDE // 4)
        _require_int(self.digits_val_shifts, "nas.digits_val_shifts", 1, 64)
        if self.r_min is not None and self.r_max is not None:
            _require(self.r_min <= self.r_max, "nas.r_min", self.r_min,
                     f"<= nas.r_max = {self.r_max}")


def _coord_int_bits(max_side: int) -> int:
    """Signed integer bits that hold every clamped coordinate in [-2, max_side + 1]."""
    return (max_side + 1).bit_length() + 1


@dataclass(frozen=True)
class Config:
    """The whole configuration; see the module docstring.

    Cross-section checks done here: the slice fits the map, lanes divide the channels,
    stored widths hold the fixed-point formats, coordinates are wide enough for the map,
    and every DRAM record is a whole number of bus beats apart.
    """

    name: str = "custom"
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    slicing: SlicingConfig = field(default_factory=SlicingConfig)
    numerics: NumericsConfig = field(default_factory=NumericsConfig)
    layer_numerics: LayerNumericsConfig = field(default_factory=LayerNumericsConfig)
    hw: HwConfig = field(default_factory=HwConfig)
    dram: DramConfig = field(default_factory=DramConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    nas: NasConfig = field(default_factory=NasConfig)

    def __post_init__(self) -> None:
        w, s, n, hw, d = self.workload, self.slicing, self.numerics, self.hw, self.dram
        h0, w0 = w.levels[0]
        _require(s.slice_h <= h0, "slicing.slice_h", s.slice_h,
                 f"<= the level-0 map height {h0}")
        _require(s.slice_w <= w0, "slicing.slice_w", s.slice_w,
                 f"<= the level-0 map width {w0}")
        _require(w.sample_channels % hw.lanes == 0, "hw.lanes", hw.lanes,
                 f"a divisor of the sampled channels per head = {w.sample_channels}")
        _require(n.value_bits <= 8 * d.element_bytes, "numerics.value_bits", n.value_bits,
                 f"<= 8 * dram.element_bytes = {8 * d.element_bytes}")
        _require(n.out_bits <= 8 * d.out_element_bytes, "numerics.out_bits", n.out_bits,
                 f"<= 8 * dram.out_element_bytes = {8 * d.out_element_bytes}")
        need = n.coord_frac + _coord_int_bits(max(h0, w0))
        _require(n.coord_bits >= need, "numerics.coord_bits", n.coord_bits,
                 f">= {need} (coord_frac {n.coord_frac} + integer bits for a "
                 f"{h0}x{w0} map)")
        if w.kind == "dat":
            self._check_layer_numerics()

    def _check_layer_numerics(self) -> None:
        """The fixed-point layer's formats against ``[numerics]``: right shifts only,
        every product inside one DSP48E1."""
        n, ln, p = self.numerics, self.layer_numerics, "layer_numerics."
        f = n.coord_frac
        for name, frac, limit, why in (
            ("q_frac", ln.q_frac, n.value_frac + ln.proj_q_frac,
             "numerics.value_frac + proj_q_frac"),
            ("k_frac", ln.k_frac, n.value_frac + ln.proj_k_frac,
             "numerics.value_frac + proj_k_frac"),
            ("v_frac", ln.v_frac, n.value_frac + ln.proj_v_frac,
             "numerics.value_frac + proj_v_frac"),
            ("logit_frac", ln.logit_frac, 2 * f + ln.rpe_frac,
             "2 numerics.coord_frac + rpe_frac"),
            ("offset_proj_frac", f, ln.n_frac + ln.offset_proj_frac,
             "n_frac + offset_proj_frac (numerics.coord_frac must not exceed it)"),
            ("offset_scale_frac", f, ln.tanh_frac + ln.offset_scale_frac,
             "tanh_frac + offset_scale_frac (numerics.coord_frac must not exceed it)"),
            ("proj_out_frac", n.out_frac, ln.o_frac + ln.proj_out_frac,
             "o_frac + proj_out_frac (numerics.out_frac must not exceed it)"),
        ):
            _require(frac <= limit, p + name, getattr(ln, name), f"such that {frac} <= "
                     f"{why} = {limit}")
        wl = self.workload
        cg = wl.embed_dim // wl.groups
        _require(4 ** (ln.act_bits - 1 - ln.z_frac) >= cg, p + "z_frac", ln.z_frac,
                 f"small enough for |z| <= sqrt(C / groups) = sqrt({cg}) to fit "
                 f"{ln.act_bits} bits")
        terms = max(wl.embed_dim, wl.offset_kernel ** 2)
        need = (terms << (ln.act_bits + ln.weight_bits - 2)).bit_length() + 2
        _require(ln.acc_bits >= need, p + "acc_bits", ln.acc_bits,
                 f">= {need} (exact sums of {terms} products plus a bias)")
        # The section's own ranges keep its products inside a DSP48E1; the bilinear
        # weights (2 coord_frac + 1 bits, unsigned) depend on [numerics].
        for what, a, b in ln.dsp_products(n.value_bits, f):
            _require(_dsp_fits(a, b), "numerics.coord_frac", f,
                     f"small enough for '{what}' ({a} x {b} bits) to fit one DSP48E1 "
                     f"({DSP_A_BITS} x {DSP_B_BITS} signed)")

    # -- conveniences ----------------------------------------------------------------
    def replace(self, **sections: Any) -> Config:
        """Copy with whole sections or dotted fields replaced.

        ``cfg.replace(slicing={"overlap": 2})`` or ``cfg.replace(name="x")``.
        """
        changes: dict[str, Any] = {}
        for key, value in sections.items():
            if isinstance(value, dict):
                changes[key] = dataclasses.replace(getattr(self, key), **value)
            else:
                changes[key] = value
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML-ready: tuples become lists, ``None`` is dropped)."""

        def clean(obj: Any) -> Any:
            if isinstance(obj, dict):
                return {k: clean(v) for k, v in obj.items() if v is not None}
            if isinstance(obj, (tuple, list)):
                return [clean(v) for v in obj]
            return obj

        return clean(dataclasses.asdict(self))


_SECTIONS = {
    "workload": WorkloadConfig,
    "slicing": SlicingConfig,
    "numerics": NumericsConfig,
    "layer_numerics": LayerNumericsConfig,
    "hw": HwConfig,
    "dram": DramConfig,
    "traffic": TrafficConfig,
    "nas": NasConfig,
}


#: Fields that no longer exist, with where their meaning went.
_RETIRED = {
    "workload.key_grid": "left out (the key grid is derived from workload.stride and "
                         "workload.offset_kernel)",
    "traffic.dat_offset_kernel": "left out (the kernel is workload.offset_kernel)",
}


def from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from a nested dict, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", type(data).__name__, "a table of sections")
    kwargs: dict[str, Any] = {}
    base_name = data.get("preset")
    base = preset(base_name) if base_name is not None else Config()
    for key, value in data.items():
        if key == "preset":
            continue
        if key == "name":
            kwargs["name"] = str(value)
            continue
        if key not in _SECTIONS:
            raise ConfigError(key, value, "one of the sections name, preset, "
                              + ", ".join(_SECTIONS))
        if not isinstance(value, dict):
            raise ConfigError(key, value, "a table")
        cls = _SECTIONS[key]
        known = {f.name for f in fields(cls)}
        for sub in value:
            if f"{key}.{sub}" in _RETIRED:
                raise ConfigError(f"{key}.{sub}", value[sub], _RETIRED[f"{key}.{sub}"])
            if sub not in known:
                raise ConfigError(f"{key}.{sub}", value[sub],
                                  "a known field: " + ", ".join(sorted(known)))
        kwargs[key] = dataclasses.replace(getattr(base, key), **value)
    return replace(base, **kwargs)


def loads(text: str) -> Config:
    """Parse a configuration from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<toml>", "...", f"valid TOML ({exc})") from None
    return from_dict(data)


def load(path: str | Path) -> Config:
    """Load a configuration from a TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file", str(path), "an existing TOML file")
    return loads(path.read_text())


def dumps(cfg: Config) -> str:
    """Serialise to TOML; ``loads(dumps(cfg)) == cfg``."""
    import tomli_w

    return tomli_w.dumps(cfg.to_dict())


def dump(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` as TOML to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(cfg))


def _make_presets() -> dict[str, Config]:
    tiny = Config(
        name="tiny",
        workload=WorkloadConfig(kind="msda", levels=((8, 8), (4, 4)), heads=2, channels=4,
                                points=2, queries=None, offset_std_px=1.5),
        slicing=SlicingConfig(slice_h=4, slice_w=4, overlap=1),
        hw=HwConfig(lanes=2, axi_data_bits=64),
    )
    # The slicing paper's layer: DAT++-T stage 1 (LeapLabTHU/DAT configs/dat_tiny.yaml):
    # a 56x56 map, C = 64 in 2 heads of 32 and one offset group, sampling stride 8 and a
    # 9x9 offset kernel (7x7 keys), offset_range_factor -1 (clamp mode), the position-bias
    # table. The paper's best strategy: Ws = 14, Hs = 28, overlap 2 (its largest).
    # Random offsets: one key-grid cell (8 pixels) of standard deviation. The whole layer
    # runs on the layer engine (``hw.engine = "layer"``); the sampling engine builds the
    # same workload with ``hw={"engine": "sampling"}``.
    dat56 = Config(
        name="dat56",
        workload=WorkloadConfig(kind="dat", levels=((56, 56),), heads=2, channels=32,
                                groups=1, points=1, stride=8, offset_kernel=9,
                                offset_range_factor=-1.0, use_pe=True, offset_std_px=8.0),
        slicing=SlicingConfig(slice_h=28, slice_w=14, overlap=2),
        hw=HwConfig(lanes=8, axi_data_bits=128, engine="layer"),
    )
    # DAT++-B stage 1, the model of the paper's 84.9% baseline: C = 128 in 4 heads of 32,
    # 2 offset groups; otherwise as dat56 (its layer engine needs about 380 RAMB18: more
    # than the xc7a100t has, which summary.md's resource table shows).
    dat56_b = dat56.replace(name="dat56-b", workload={"heads": 4, "groups": 2})
    # xMSDA's reference workload: 5 levels of a 1024x1024 image, M=8, D=32, P=4.
    xmsda = Config(
        name="msda-xmsda",
        workload=WorkloadConfig(kind="msda",
                                levels=((256, 256), (128, 128), (64, 64), (32, 32), (16, 16)),
                                heads=8, channels=32, points=4, queries=None,
                                offset_std_px=4.0),
        slicing=SlicingConfig(slice_h=64, slice_w=64, overlap=4),
        hw=HwConfig(lanes=8, axi_data_bits=128),
    )
    return {c.name: c for c in (tiny, dat56, dat56_b, xmsda)}


PRESETS: dict[str, Config] = _make_presets()


def preset(name: str) -> Config:
    """The named preset (``tiny``, ``dat56``, ``dat56-b``, ``msda-xmsda``)."""
    if name not in PRESETS:
        raise ConfigError("preset", name, "one of " + ", ".join(PRESETS))
    return PRESETS[name]
