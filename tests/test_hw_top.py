"""The whole ``defslice_top`` in the Amaranth simulator against the golden model.

A Python AXI memory model (:mod:`defslice.hw.simulate`) serves the master; outputs must
equal :meth:`SlicedProgram.expected_outputs` bit for bit and the bursts issued must be the
multiset of :meth:`SlicedProgram.transfers`.
"""

import re
import subprocess
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from defslice import config as C
from defslice.errors import ConfigError
from defslice.hw import BANKS_MODULE, build_top, generate_verilog
from defslice.hw.lint import lint_verilog
from defslice.hw.reports import read_stat_json
from defslice.hw.simulate import run_program
from defslice.model.fixed import quantize_inputs
from defslice.model.layout import SlicedProgram, burst_summary
from defslice.model.workload import make_workload


def _program(cfg, seed=0):
    wl = make_workload(cfg, seed)
    return SlicedProgram(cfg, quantize_inputs(cfg.numerics, *wl.args), wl.reference_points)


def _check_run(cfg, prog, seed):
    res = run_program(cfg, prog, seed=seed, max_cycles=100_000)
    np.testing.assert_array_equal(res.outputs, prog.expected_outputs())
    want = prog.transfers()
    assert Counter(res.bursts) == Counter(want)
    for b in res.bursts:
        assert 1 <= b.beats <= min(256, cfg.hw.max_burst_beats)
        assert b.addr // 4096 == (b.addr + b.beats * cfg.hw.bus_bytes - 1) // 4096
    s = burst_summary(want)
    c = res.counters
    assert (c["READ_BEATS"], c["READ_BURSTS"]) == (s["read"]["beats"], s["read"]["bursts"])
    assert (c["WRITE_BEATS"], c["WRITE_BURSTS"]) == (s["write"]["beats"],
                                                     s["write"]["bursts"])
    w = cfg.workload
    samples = prog.inputs.x.shape[1] * w.heads * w.num_levels * w.points \
        * (w.channels // cfg.hw.lanes)
    assert c["BUSY_CYCLES"] == samples
    assert c["BUSY_CYCLES"] + c["STALL_CYCLES"] <= c["CYCLES"]
    assert res.status == 0b10           # done, no error, not busy
    return res


def test_tiny_matches_model_bit_for_bit():
    cfg = C.preset("tiny")
    _check_run(cfg, _program(cfg), seed=None)


def test_tiny_under_random_back_pressure():
    cfg = C.preset("tiny")
    _check_run(cfg, _program(cfg, seed=3), seed=11)


@pytest.mark.parametrize("variant", [
    {"hw": {"buffering": "single", "lanes": 4, "max_burst_beats": 3}},
    {"hw": {"lanes": 1, "axi_data_bits": 128}, "slicing": {"clamp": "drop", "overlap": 0}},
    {"workload": {"queries": 7, "levels": ((8, 8), (4, 4), (2, 2))},
     "slicing": {"slice_h": 3, "slice_w": 5, "overlap": 2}},
])
def test_variants_match_model(variant):
    cfg = C.preset("tiny").replace(**variant)
    _check_run(cfg, _program(cfg, seed=5), seed=2)


def test_window_larger_than_buffers_stops_with_error():
    cfg = C.preset("tiny")
    prog = _program(cfg)
    dsc = prog.descriptors[1]
    bad = list(dsc.windows)
    bad[0] = (bad[0][0], bad[0][1], 7, *bad[0][3:])     # 7 rows > the 6-row buffer
    prog.descriptors[1] = replace(dsc, windows=tuple(bad))
    res = run_program(cfg, prog, seed=None, max_cycles=20_000)
    assert res.status == 0b110          # done + window error
    assert res.counters["WRITE_BEATS"] > 0      # the first slice was still computed


@pytest.mark.parametrize("change,field", [
    ({"hw": {"axi_data_bits": 32}}, "hw.axi_data_bits"),
    ({"workload": {"channels": 6}, "hw": {"lanes": 3}}, "hw.lanes"),
    ({"hw": {"lanes": 8, "axi_data_bits": 64}, "workload": {"channels": 8}}, "hw.lanes"),
])
def test_impossible_configs_are_refused(change, field):
    cfg = C.preset("tiny").replace(**change)
    with pytest.raises(ConfigError, match=field):
        build_top(cfg)


def test_absurd_buffers_are_refused():
    with pytest.raises(ConfigError, match="slicing.slice_h") as info:
        build_top(C.preset("msda-xmsda"))
    assert "bits" in str(info.value)


@pytest.mark.parametrize("preset", ["tiny", "dat56"])
def test_verilog_ports_and_lint(preset, tmp_path):
    # the sampling engine's top (dat56's preset engine is the layer engine)
    path = generate_verilog(C.preset(preset).replace(hw={"engine": "sampling"}), tmp_path)
    text = path.read_text()
    assert "module defslice_top(" in text
    for port in ("clk", "rst", "irq", "m_axi_awid", "m_axi_rlast", "m_axi_bid",
                 "s_axil_awaddr", "s_axil_rready"):
        assert f" {port};" in text or f" {port} " in text
    # The window buffers sit in their own module (the resource checks look there).
    banks = text[text.index(f"module \\{BANKS_MODULE}"):]
    banks = banks[:banks.index("endmodule")]
    assert all(re.search(rf"reg \[\d+:0\] bank{b}_0 \[\d+:0\];", banks) for b in range(4))
    lint_verilog(path)
    # Icarus (the other simulator of the system benches) compiles it too.
    proc = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "a.out"), str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_stat_json_drops_the_hierarchy_text_of_old_yosys(tmp_path):
    # yosys 0.23 writes nested hierarchies as text into `stat -json`.
    path = tmp_path / "stat.json"
    path.write_text('{\n "modules": {\n  "\\\\a.b": {"num_cells": 2}\n },\n'
                    '   a.b      1\n     a.b.c      1\n'
                    ' "design": {"num_cells_by_type": {"LUT2": 3}}\n}\n')
    data = read_stat_json(path)
    assert data["design"]["num_cells_by_type"] == {"LUT2": 3}
    assert list(data["modules"]) == ["\\a.b"]
