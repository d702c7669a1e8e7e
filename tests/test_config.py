"""Configuration tree: presets, TOML round trip, and errors that name field and range."""

import pytest

from defslice import config as C
from defslice.errors import ConfigError


@pytest.mark.parametrize("name", sorted(C.PRESETS))
def test_presets_round_trip_through_toml(name, tmp_path):
    cfg = C.preset(name)
    C.dump(cfg, tmp_path / "c.toml")
    assert C.load(tmp_path / "c.toml") == cfg


def test_preset_workloads_match_the_papers():
    x = C.preset("msda-xmsda").workload
    assert x.value_pixels == 87296 and (x.heads, x.channels, x.points) == (8, 32, 4)
    assert (x.sample_heads, x.sample_channels) == (8, 32)
    d = C.preset("dat56").workload
    assert d.levels == ((56, 56),) and d.num_queries == 49 and d.key_grid == (7, 7)
    # DAT++-T stage 1: C = 64, 2 heads of 32, one offset group, stride 8, 9x9, factor -1
    assert (d.embed_dim, d.heads, d.channels, d.groups) == (64, 2, 32, 1)
    assert (d.stride, d.offset_kernel, d.offset_range_factor, d.use_pe) == (8, 9, -1, True)
    assert (d.sample_heads, d.sample_channels) == (1, 64)
    s = C.preset("dat56").slicing
    assert (s.slice_w, s.slice_h, s.overlap) == (14, 28, 2)
    b = C.preset("dat56-b")
    assert (b.workload.embed_dim, b.workload.heads, b.workload.groups) == (128, 4, 2)
    assert (b.workload.sample_heads, b.workload.sample_channels) == (2, 64)
    assert b.slicing == s and b.workload.key_grid == (7, 7)


@pytest.mark.parametrize("side, k, stride, keys", [
    (56, 9, 8, 7), (28, 7, 4, 7), (14, 5, 2, 7), (7, 3, 1, 7),   # DAT++ stages 1-4
    (16, 4, 4, 4),                                               # k == stride: no padding
    (17, 9, 8, 3), (10, 2, 1, 11),                               # odd sizes, even kernel
])
def test_key_grid_follows_the_offset_conv(side, k, stride, keys):
    w = C.WorkloadConfig(kind="dat", levels=((side, side + 1),), heads=1, channels=4,
                         points=1, stride=stride, offset_kernel=k)
    pad = 0 if k == stride else k // 2
    assert w.key_grid[0] == keys == (side + 2 * pad - k) // stride + 1
    assert w.key_grid[1] == (side + 1 + 2 * pad - k) // stride + 1


@pytest.mark.parametrize("changes, field, allowed", [
    ({"stride": 8, "levels": ((8, 12),)}, "workload.stride", "at least 2 x 2"),
    ({"groups": 3}, "workload.groups", "divisor of workload.heads = 2"),
    ({"groups": 0}, "workload.groups", "[1, 64]"),
    ({"offset_kernel": 0}, "workload.offset_kernel", "[1, 31]"),
    ({"stride": 0}, "workload.stride", "[1, 4096]"),
    ({"offset_range_factor": float("nan")}, "workload.offset_range_factor", "finite"),
    ({"use_pe": 1}, "workload.use_pe", "true or false"),
    ({"levels": ((1, 56),)}, "workload.levels[0]", "at least 2 x 2"),
])
def test_dat_fields_are_validated(changes, field, allowed):
    base = dict(kind="dat", levels=((56, 56),), heads=2, channels=32, points=1)
    with pytest.raises(ConfigError) as err:
        C.WorkloadConfig(**{**base, **changes})
    assert err.value.field == field and allowed in str(err.value)
    assert "\n" not in str(err.value)


def test_msda_has_no_offset_groups_and_retired_fields_say_where_they_went():
    with pytest.raises(ConfigError, match="workload.groups .* 1 when kind = 'msda'"):
        C.WorkloadConfig(groups=2)
    with pytest.raises(ConfigError, match="workload.key_grid .* workload.stride"):
        C.loads('preset = "dat56"\n[workload]\nkey_grid = [7, 7]\n')
    with pytest.raises(ConfigError, match="traffic.dat_offset_kernel .* workload.offset_k"):
        C.loads('preset = "dat56"\n[traffic]\ndat_offset_kernel = 9\n')
    # a positive factor is CVPR'22 DAT's tanh mode, any float is accepted
    assert C.WorkloadConfig(kind="dat", levels=((56, 56),), points=1,
                            offset_range_factor=2.5).offset_range_factor == 2.5


@pytest.mark.parametrize("change, field, allowed", [
    ({"slicing": {"overlap": -1}}, "slicing.overlap", "[0, 4096]"),
    ({"slicing": {"slice_h": 9}}, "slicing.slice_h", "<= the level-0 map height 8"),
    ({"slicing": {"slice_w": 0}}, "slicing.slice_w", "[1, 4096]"),
    ({"hw": {"lanes": 3}}, "hw.lanes", "divisor of the sampled channels per head = 4"),
    ({"numerics": {"coord_bits": 12}}, "numerics.coord_bits", ">= 13"),
    ({"numerics": {"value_bits": 20}}, "numerics.value_bits", "8 * dram.element_bytes"),
    ({"numerics": {"out_frac": 40}}, "numerics.out_frac", "[0, 22]"),
    ({"hw": {"axi_data_bits": 48}}, "hw.axi_data_bits", "one of 32, 64"),
    ({"hw": {"max_burst_beats": 257}}, "hw.max_burst_beats", "[1, 256]"),
    ({"slicing": {"clamp": "wrap"}}, "slicing.clamp", "'clamp', 'drop'"),
    ({"hw": {"operand_ram": "lut"}}, "hw.operand_ram", "'auto', 'block'"),
])
def test_invalid_values_name_field_value_and_range(change, field, allowed):
    with pytest.raises(ConfigError) as err:
        C.preset("tiny").replace(**change)
    msg = str(err.value)
    assert err.value.field == field
    assert field in msg and allowed in msg


def test_coordinates_too_narrow_for_a_large_map():
    with pytest.raises(ConfigError, match="numerics.coord_bits .* 256x256 map"):
        C.preset("msda-xmsda").replace(numerics={"coord_bits": 16})


def test_level_larger_than_level_zero_is_refused():
    with pytest.raises(ConfigError, match=r"workload.levels\[1\]"):
        C.WorkloadConfig(levels=((4, 4), (8, 8)))


def test_dat_needs_one_point_and_one_level():
    with pytest.raises(ConfigError, match="workload.points"):
        C.WorkloadConfig(kind="dat", levels=((56, 56),), points=2)


def test_toml_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "tiny"\n[slicing]\noverlapp = 2\n')
    with pytest.raises(ConfigError, match="slicing.overlapp"):
        C.load(bad)
    bad.write_text("[slicing\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        C.load(bad)
    with pytest.raises(ConfigError, match="config file"):
        C.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="preset"):
        C.preset("nope")


def test_toml_on_top_of_a_preset(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "dat56"\nname = "mine"\n[slicing]\noverlap = 0\n')
    cfg = C.load(f)
    assert cfg.name == "mine" and cfg.slicing.overlap == 0
    assert cfg.workload == C.preset("dat56").workload
