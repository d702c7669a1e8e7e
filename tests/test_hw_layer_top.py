"""The layer engine's top (parameter reader, loader, core, y writer, registers) in the
Amaranth simulator against a Python AXI memory: y equal to the fixed-point layer bit for
bit, the bursts on the bus equal to layer_transfers and to the design's counters."""

import numpy as np
import pytest
from layer_support import CONFIGS, traced

from defslice import config as C
from defslice.errors import ConfigError
from defslice.hw import build_top
from defslice.hw.layer.cycles import slice_steps
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.simulate import simulate_top
from defslice.hw.layer.top import LayerTop
from defslice.model.layer_layout import layer_transfers
from defslice.model.layout import burst_summary
from defslice.sim.testing import FULL

#: About a minute each: one by default (slices without keys: their windows are read and
#: their y is the output bias), all with SIM_FULL=1.
TOP_CASES = CONFIGS if FULL else [c for c in CONFIGS if c.name == "ldat-sparse"]


def _check_run(cfg, seed, reset_after=None):
    plan, _, qp, x_q, y_want, _ = traced(cfg, seed)
    run = simulate_top(cfg, x_q, qp, seed=seed, reset_after=reset_after)
    assert run.status & 0b1110 == 0b0010            # done, no error
    assert np.array_equal(run.y, y_want[0])
    want = layer_transfers(plan.layout, plan.tasks)
    for write in (False, True):                      # each channel in the contract's order
        assert [b for b in run.bursts if b.write == write] == \
            [b for b in want if b.write == write]
    s, c = burst_summary(want), run.counters
    assert (c["READ_BURSTS"], c["READ_BEATS"]) == (s["read"]["bursts"], s["read"]["beats"])
    assert (c["WRITE_BURSTS"], c["WRITE_BEATS"]) == (s["write"]["bursts"],
                                                     s["write"]["beats"])
    assert c["ARRAY_BUSY"] == sum(sum(slice_steps(plan, t).values()) for t in plan.tasks)
    assert c["ARRAY_BUSY"] + c["STALL_CYCLES"] + c["LOAD_CYCLES"] == c["CYCLES"]
    # Before the first slice: the parameters and the first window at one beat per cycle.
    first = s["weights"]["beats"] + plan.layout.desc_stride // plan.layout.bus_bytes \
        + plan.tasks[0].window.pixels * plan.layout.pixel_stride // plan.layout.bus_bytes
    assert c["LOAD_CYCLES"] >= first
    return run


@pytest.mark.parametrize("cfg", TOP_CASES, ids=lambda c: c.name)
def test_top_equals_fixed_layer_with_back_pressure(cfg):
    _check_run(cfg, seed=1)


def test_top_single_buffered():
    # One window set (the ECP5 report's configuration): the next window loads only after
    # the slice before releases the set.
    cfg = next(c for c in CONFIGS if c.name == "ldat-sparse").replace(
        hw={"buffering": "single"})
    _check_run(cfg, seed=1)


def test_top_after_a_mid_run_reset():
    # ldat-sparse takes about 3,700 cycles with back-pressure: reset while slices are in
    # flight (y partly written), then a whole clean run.
    cfg = next(c for c in CONFIGS if c.name == "ldat-sparse")
    run = _check_run(cfg, seed=2, reset_after=1800)
    assert run.status_after_reset & 0b11 == 0       # neither busy nor done
    assert any(b.write for b in run.bursts_before_reset)


def test_a_fault_in_the_requantizer_is_caught(monkeypatch):
    """The requantizer rounding down instead of half up (every phase's results): the bus
    traffic is unchanged, y is not."""
    from defslice.hw.layer import requantizer

    monkeypatch.setattr(requantizer, "half_lsb", lambda shift: 0)
    cfg = next(c for c in CONFIGS if c.name == "ldat-sparse")
    plan, _, qp, x_q, y_want, _ = traced(cfg, 1)
    run = simulate_top(cfg, x_q, qp)
    want = layer_transfers(plan.layout, plan.tasks)
    for write in (False, True):
        assert [b for b in run.bursts if b.write == write] == \
            [b for b in want if b.write == write]
    assert (run.y != y_want[0]).sum() > 0.1 * run.y.size


def test_build_top_chooses_the_engine():
    cfg = CONFIGS[0]
    top = build_top(cfg)
    top._MustUse__silence = True
    assert isinstance(top, LayerTop)
    assert "m_axi_arvalid" in top.signature.members
    assert "s_axil_awaddr" in top.signature.members
    sampling = build_top(cfg.replace(hw={"engine": "sampling"}))
    sampling._MustUse__silence = True
    assert not isinstance(sampling, LayerTop)


@pytest.mark.parametrize(("change", "field"), [
    ({"slicing": {"clamp": "drop"}}, "slicing.clamp"),
    ({"dram": {"element_bytes": 4}}, "dram.element_bytes"),
    ({"hw": {"lanes": 2}}, "hw.lanes"),
    ({"workload": {"kind": "msda"}}, "workload.kind"),
])
def test_refused_configurations_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        LayerPlan.from_config(CONFIGS[0].replace(**change))
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_top(CONFIGS[0].replace(**change))


def test_verilog_lints_clean(tmp_path):
    """The layer top's Verilog passes ``verilator --lint-only -Wall`` with the waivers, with
    the sampling top's port names."""
    from defslice.hw import generate_verilog, top_signature
    from defslice.hw.lint import lint_verilog

    cfg = next(c for c in CONFIGS if c.name == "ldat-g2-tanh")
    path = generate_verilog(cfg, tmp_path)
    lint_verilog(path)
    sampling = top_signature(cfg.replace(hw={"engine": "sampling"})).members
    assert set(top_signature(cfg).members) == set(sampling)


def test_dat56_top_builds():
    top = build_top(C.preset("dat56").replace(hw={"engine": "layer"}))
    top._MustUse__silence = True
    assert top.plan.dims.channels == 64 and top.p.desc_stride == top.plan.layout.desc_stride


def test_operand_ram_block_changes_only_memory_attributes():
    """``hw.operand_ram = "block"``: the same Verilog but for a ``ram_style`` attribute on
    each bank of the operand buffers, so the simulations of the design hold for it."""
    from defslice.hw import verilog_text
    from defslice.hw.layer.plan import OPERAND_BUFFERS

    cfg = next(c for c in CONFIGS if c.name == "ldat-a")
    auto = verilog_text(cfg).splitlines()
    block = verilog_text(cfg.replace(hw={"operand_ram": "block"})).splitlines()
    mark = '  (* ram_style = "block" *)'
    assert [ln for ln in block if ln != mark] == auto
    banks = 3 * 4 + cfg.hw.lanes + 1          # keys, k, o: 4 banks; v: one per lane; g: 1
    assert block.count(mark) == banks and len(OPERAND_BUFFERS) == 5
