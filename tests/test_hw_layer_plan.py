"""The layer engine's plan: limits it refuses, the cycle model and the resource estimate."""

import pytest

from defslice import config as C
from defslice.errors import ConfigError
from defslice.hw.layer.cycles import PHASES, estimate, slice_macs, slice_steps
from defslice.hw.layer.plan import MAX_SLICE_KEYS, OPERAND_BUFFERS, LayerPlan
from defslice.hw.layer.resources import estimate_resources, memories
from defslice.model.dat_layer import DatLayerSpec
from defslice.model.layer_layout import LayerDims
from defslice.model.slicing import SliceGrid
from defslice.nas.resources import buffer_bram18

DAT56 = LayerDims.from_config(C.preset("dat56"))
DAT56_B = LayerDims.from_config(C.preset("dat56-b"))
GRID = SliceGrid([(56, 56)], 28, 14, 2)


def _plan(dims=DAT56, grid=GRID, lanes=8, cols=4, **kw):
    return LayerPlan(dims, grid, lanes, cols, bus_bytes=16, max_beats=256, **kw)


@pytest.mark.parametrize("lanes,cols,field", [(3, 2, "hw.lanes"), (64, 4, "hw.lanes"),
                                              (16, 4, "hw.lanes"), (2, 2, "hw.lanes"),
                                              (8, 16, "hw.array_cols"),
                                              (8, 8, "hw.array_cols"),
                                              (8, 1, "hw.array_cols")])
def test_refused_array_shapes(lanes, cols, field):
    with pytest.raises(ConfigError, match=field):
        _plan(lanes=lanes, cols=cols)


def test_refused_slices_with_too_many_keys():
    dims = LayerDims(DatLayerSpec(heads=2, stride=1, offset_kernel=3), 64, 64, 16)
    with pytest.raises(ConfigError, match=f"at most {MAX_SLICE_KEYS} keys"):
        _plan(dims, SliceGrid([(64, 64)], 16, 16, 0), lanes=8, cols=4)


@pytest.mark.parametrize("dims", [DAT56, DAT56_B])
def test_steps_never_beat_the_array(dims):
    plan = _plan(dims)
    for t in plan.tasks:
        steps, macs = slice_steps(plan, t), slice_macs(plan, t)
        for name in PHASES:
            # Dense phases use every multiplier, row-reduce phases (dwconv, sample) one
            # column of the array: steps * their multipliers bound the MACs from above.
            width = plan.multipliers if name not in ("dwconv", "sample") else \
                4 * plan.lanes
            assert steps[name] * width >= macs[name], name


def test_dat56_slice_steps_by_hand():
    plan = _plan()
    t = plan.tasks[5]          # 8 keys, q box 30 x 16, region 28 x 14
    s = slice_steps(plan, t)
    assert s["q"] == 15 * 8 * (64 // 4) * (64 // 8)
    assert s["dwconv"] == 8 * 25 * 8
    assert s["kv"] == 2 * 2 * 16 * 8
    assert s["logits"] == 14 * 7 * 2 * 2 * 4
    assert s["pv"] == 14 * 7 * 2 * 8 * 1
    assert s["proj_out"] == 14 * 7 * 16 * 8


def test_estimate_dat56():
    est = estimate(_plan())
    assert est.array_busy == sum(est.phases.values())
    assert est.compute_bound <= est.array_busy < est.total
    assert 0.85 <= est.utilisation <= 1
    # Loads after the first window are hidden behind compute.
    assert est.exposed_load == 0
    # One window set: a window loads once the slice before releases the set (its first
    # kv step), still behind that slice's attention phase.
    single = estimate(_plan(sets=1))
    assert single.total == est.total and single.exposed_load == 0


def test_resources_dat56_fit_artix():
    plan = _plan()
    res = estimate_resources(plan)
    assert res["fits"]["xc7a100t"]
    assert res["total"]["DSP"] == 4 * 8 * 4 + 16
    # The window buffers are those of the sampling engine's estimate for the same slicing.
    window = next(m for m in memories(plan) if m.name == "window")
    assert window.bram18 == buffer_bram18(C.preset("dat56")).blocks
    assert not estimate_resources(_plan(DAT56_B))["fits"]["xc7a100t"]


def test_operand_ram_block_counts_the_operand_buffers_as_block_ram():
    """``hw.operand_ram = "block"``: the shallow operand buffers (LUT RAM otherwise) count
    as block RAM, every other memory as before."""
    cfg = C.preset("dat56").replace(hw={"lanes": 4, "array_cols": 2, "buffering": "single"})
    auto = {m.name: m for m in memories(LayerPlan.from_config(cfg))}
    block = {m.name: m for m in memories(LayerPlan.from_config(
        cfg.replace(hw={"operand_ram": "block"})))}
    assert set(OPERAND_BUFFERS) <= set(auto) and auto.keys() == block.keys()
    for name in auto:
        if name in OPERAND_BUFFERS:
            assert auto[name].bram18 == 0 < block[name].bram18 and block[name].block
        else:
            assert block[name] == auto[name]


@pytest.mark.parametrize("dims", [DAT56, DAT56_B])
def test_schedule_matches_step_counts(dims):
    from collections import Counter

    from defslice.hw.layer.schedule import slice_schedule

    plan = _plan(dims)
    for t in plan.tasks[:3]:
        steps = list(slice_schedule(plan, t))
        assert Counter(s.phase for s in steps) == \
            Counter({k: v for k, v in slice_steps(plan, t).items() if v})
        # Passes are well formed: every pass starts with first and ends with last.
        open_pass = False
        for s in steps:
            assert s.first == (not open_pass)
            open_pass = not s.last
        assert not open_pass
