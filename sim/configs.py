"""The configurations the system benches run: the sampling engine's derived from ``tiny``,
the layer engine's from ``dat56``.

Each entry but the full set's ``dat56-b-sampling`` (the ``dat56-b`` preset on the
sampling engine) changes one or two things against
``tiny`` (levels (8, 8) + (4, 4), slices 4 x 4, overlap 1, 2 lanes of 4 channels, double
buffering, 64-bit AXI) so that a failure points at the feature it exercises. Together
they cover: overlap 0, 1 and 2; a slice size that divides neither map side; one, two and
three levels; 1, 2 and 4 lanes; single and double buffering; short bursts (burst
splitting); narrow fixed-point formats and the ``drop`` policy; a DAT layer in two offset
groups; rows crossing 4 KiB pages and DAT++-B stage 1 (full set).

The layer engine's (``hw.engine = "layer"``, :data:`LAYER_CONFIGS`) are small DAT layers
that simulate in seconds, each named for what it covers; with ``dat56`` itself they are
:data:`LAYER_FULL_CONFIGS`. Together: a slice that divides neither map side, overlap
0, 1 and 3, one and two offset groups, ``offset_range_factor`` below 0 (clamp) and
above (tanh), square and non-square maps, one slice over the whole map, slices without
keys, 64- and 128-bit buses, 2 and 4 array columns.
"""

from __future__ import annotations

from typing import Any

from defslice.config import Config, preset

__all__ = ["CONFIGS", "FULL_CONFIGS", "LAYER_CONFIGS", "LAYER_FULL_CONFIGS", "sim_config"]


def _tiny(name: str, **changes: Any) -> Config:
    return preset("tiny").replace(name=name, **changes)


def _build() -> dict[str, Config]:
    cfgs = [
        preset("tiny"),
        _tiny("tiny-o0", slicing={"overlap": 0}),
        _tiny("tiny-o2", slicing={"overlap": 2}),
        # 8 is a multiple of neither 3 nor 5: the last slice row and column are smaller.
        _tiny("tiny-3x5", slicing={"slice_h": 3, "slice_w": 5}),
        _tiny("tiny-1lvl-lanes1-single", workload={"levels": ((8, 8),)},
              hw={"lanes": 1, "buffering": "single"}),
        _tiny("tiny-3lvl-lanes4", workload={"levels": ((8, 8), (4, 4), (2, 2))},
              hw={"lanes": 4}),
        _tiny("tiny-single", hw={"buffering": "single"}),
        # Bursts of at most 2 beats: every window row and query region is split.
        _tiny("tiny-burst2", hw={"max_burst_beats": 2}),
        # Narrow formats (more saturation) and the "drop" policy (no clamping).
        _tiny("tiny-narrow-drop", slicing={"clamp": "drop"},
              numerics={"value_bits": 12, "value_frac": 6, "coord_frac": 4,
                        "weight_bits": 10, "acc_bits": 26, "out_bits": 10, "out_frac": 5,
                        "coord_bits": 14}),
        # A DAT layer in two offset groups: the engine samples M = 2 groups of D = 4
        # channels (4 heads of 2), 4 x 4 keys from stride 4 and a 5 x 5 offset kernel.
        _tiny("tiny-dat-g2", workload={"kind": "dat", "levels": ((16, 16),), "heads": 4,
                                       "channels": 2, "groups": 2, "points": 1, "stride": 4,
                                       "offset_kernel": 5, "offset_std_px": 3.0},
              slicing={"slice_h": 6, "slice_w": 8, "overlap": 1}),
    ]
    return {c.name: c for c in cfgs}


#: name -> configuration, the default regression set.
CONFIGS: dict[str, Config] = _build()


def _build_full() -> dict[str, Config]:
    cfgs = [
        # A 16 x 16 level 0 of 32-byte pixels spans two 4 KiB pages: rows cross them.
        _tiny("wide-4k", workload={"levels": ((16, 16), (8, 8)), "channels": 8,
                                   "queries": 48},
              slicing={"slice_h": 6, "slice_w": 7, "overlap": 1}),
        _tiny("tiny-o3", slicing={"overlap": 3}),
        _tiny("tiny-p1-m1", workload={"heads": 1, "points": 1}, hw={"lanes": 4}),
        _tiny("tiny-slice-full", slicing={"slice_h": 8, "slice_w": 8, "overlap": 0}),
        _tiny("tiny-bus128", hw={"axi_data_bits": 128, "max_burst_beats": 16}),
        # DAT++-B stage 1 on the sampling engine (M = 2 groups of D = 64 channels): about
        # 30 s per Icarus run.
        preset("dat56-b").replace(name="dat56-b-sampling", hw={"engine": "sampling"}),
    ]
    return {**CONFIGS, **{c.name: c for c in cfgs}}


#: The longer regression (``SIM_FULL=1``): every default entry plus a few larger ones.
FULL_CONFIGS: dict[str, Config] = _build_full()


def _layer(name: str, size: tuple[int, int], heads: int, channels: int, groups: int,
           conv: tuple[int, int, float], slices: tuple[int, int, int],
           array: tuple[int, int], bus: int = 64) -> Config:
    """A DAT layer for the layer engine: map ``size``, ``conv`` = (stride, offset kernel,
    offset_range_factor), ``slices`` = (slice_h, slice_w, overlap), ``array`` = (lanes,
    array_cols), an AXI bus of ``bus`` bits."""
    stride, kernel, factor = conv
    hs, ws, overlap = slices
    lanes, cols = array
    return preset("dat56").replace(
        name=name,
        workload={"levels": (size,), "heads": heads, "channels": channels, "groups": groups,
                  "stride": stride, "offset_kernel": kernel, "offset_range_factor": factor},
        slicing={"slice_h": hs, "slice_w": ws, "overlap": overlap},
        hw={"engine": "layer", "lanes": lanes, "array_cols": cols, "axi_data_bits": bus})


def _build_layer() -> dict[str, Config]:
    cfgs = [
        # 12 x 12 in 5 x 6 slices (5 divides neither side), clamp offsets (factor < 0).
        _layer("ldat-a", (12, 12), 2, 8, 1, (3, 5, -1.0), (5, 6, 1), (4, 2)),
        # Two offset groups, tanh offsets (factor >= 0), overlap 3, a 16 x 14 map in
        # 7 x 5 slices, a 4-column array.
        _layer("ldat-g2-tanh", (16, 14), 4, 4, 2, (4, 5, 2.0), (7, 5, 3), (4, 4)),
        # Overlap 0 on a 10 x 13 map, stride 2 and a 3 x 3 kernel, a 128-bit bus.
        _layer("ldat-o0", (10, 13), 2, 8, 1, (2, 3, -1.0), (4, 5, 0), (8, 2), bus=128),
    ]
    return {c.name: c for c in cfgs}


#: The layer engine's default regression set.
LAYER_CONFIGS: dict[str, Config] = _build_layer()


def _build_layer_full() -> dict[str, Config]:
    cfgs = [
        # One slice over the whole map: the unsliced layer.
        _layer("ldat-whole", (9, 11), 2, 4, 1, (3, 3, -1.0), (9, 11, 0), (4, 2)),
        # Two keys per side (kernel = stride, no padding): slices without keys.
        _layer("ldat-sparse", (12, 12), 2, 4, 1, (6, 6, -1.0), (4, 4, 1), (4, 2)),
        # DAT++-T stage 1: the preset (on the layer engine).
        preset("dat56").replace(name="dat56-layer"),
    ]
    return {**LAYER_CONFIGS, **{c.name: c for c in cfgs}}


#: The layer engine's longer regression (``SIM_FULL=1``): the default set, the whole-map
#: and key-sparse cases and ``dat56`` (as ``dat56-layer``).
LAYER_FULL_CONFIGS: dict[str, Config] = _build_layer_full()


def sim_config(name: str) -> Config:
    """A bench configuration by name (the presets are accepted too)."""
    if name in FULL_CONFIGS:
        return FULL_CONFIGS[name]
    if name in LAYER_FULL_CONFIGS:
        return LAYER_FULL_CONFIGS[name]
    return preset(name)
