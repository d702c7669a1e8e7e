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
    d = C.preset("dat56").workload
    assert d.levels == ((56, 56),) and d.num_queries == 49
    s = C.preset("dat56").slicing
    assert (s.slice_w, s.slice_h) == (14, 28)


@pytest.mark.parametrize("change, field, allowed", [
    ({"slicing": {"overlap": -1}}, "slicing.overlap", "[0, 4096]"),
    ({"slicing": {"slice_h": 9}}, "slicing.slice_h", "<= the level-0 map height 8"),
    ({"slicing": {"slice_w": 0}}, "slicing.slice_w", "[1, 4096]"),
    ({"hw": {"lanes": 3}}, "hw.lanes", "divisor of workload.channels = 4"),
    ({"numerics": {"coord_bits": 12}}, "numerics.coord_bits", ">= 13"),
    ({"numerics": {"value_bits": 20}}, "numerics.value_bits", "8 * dram.element_bytes"),
    ({"numerics": {"out_frac": 40}}, "numerics.out_frac", "[0, 22]"),
    ({"hw": {"axi_data_bits": 48}}, "hw.axi_data_bits", "one of 32, 64"),
    ({"hw": {"max_burst_beats": 257}}, "hw.max_burst_beats", "[1, 256]"),
    ({"slicing": {"clamp": "wrap"}}, "slicing.clamp", "'clamp', 'drop'"),
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
