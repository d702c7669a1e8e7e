"""The configurations the system benches run, derived from the ``tiny`` preset.

Each entry but the full set's ``dat56-b`` preset changes one or two things against
``tiny`` (levels (8, 8) + (4, 4), slices 4 x 4, overlap 1, 2 lanes of 4 channels, double
buffering, 64-bit AXI) so that a failure points at the feature it exercises. Together
they cover: overlap 0, 1 and 2; a slice size that divides neither map side; one, two and
three levels; 1, 2 and 4 lanes; single and double buffering; short bursts (burst
splitting); narrow fixed-point formats and the ``drop`` policy; a DAT layer in two offset
groups; rows crossing 4 KiB pages and DAT++-B stage 1 (full set).
"""

from __future__ import annotations

from typing import Any

from defslice.config import Config, preset

__all__ = ["CONFIGS", "FULL_CONFIGS", "sim_config"]


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
        # DAT++-B stage 1 (M = 2 groups of D = 64 channels): about 30 s per Icarus run.
        preset("dat56-b"),
    ]
    return {**CONFIGS, **{c.name: c for c in cfgs}}


#: The longer regression (``SIM_FULL=1``): every default entry plus a few larger ones.
FULL_CONFIGS: dict[str, Config] = _build_full()


def sim_config(name: str) -> Config:
    """A bench configuration by name (the presets are accepted too)."""
    if name in FULL_CONFIGS:
        return FULL_CONFIGS[name]
    return preset(name)
