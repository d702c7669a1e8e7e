"""Slicing: windows by hand, query assignment, exactness with a wide halo, clamping."""

import numpy as np
import pytest

from defslice import config as C
from defslice.errors import ConfigError
from defslice.model.fixed import quantize_inputs
from defslice.model.msda import msda_forward
from defslice.model.sliced import sliced_fixed_forward, sliced_forward
from defslice.model.slicing import SliceGrid, Window
from defslice.model.workload import make_workload


def test_windows_counted_by_hand():
    g = SliceGrid([(8, 8), (4, 4)], 4, 4, 1)
    assert (g.n_rows, g.n_cols) == (2, 2)
    # slice 0 = rows 0..3, cols 0..3; halo 1 -> rows 0..4 (top edge is the map edge)
    assert g.window(0, 0) == Window(0, 0, 5, 5, -1, 4, -1, 4)
    # on the 4x4 level the region is rows 0..1, grown to 0..2
    assert g.window(0, 1) == Window(0, 0, 3, 3, -1, 2, -1, 2)
    # slice 3 = rows 4..7, cols 4..7 -> 3..7 with the map edge at 8
    assert g.window(3, 0) == Window(3, 3, 5, 5, 3, 8, 3, 8)
    assert g.max_window(0) == (5, 5)


def test_slice_size_that_does_not_divide_the_map():
    g = SliceGrid([(8, 8)], 3, 5, 0)
    assert (g.n_rows, g.n_cols) == (3, 2)
    last = g.window(g.num_slices - 1, 0)
    assert (last.row0, last.rows, last.col0, last.cols) == (6, 2, 5, 3)
    # interior bounds are the window's own pixels, map-edge bounds are -1 / size
    assert (last.y_lo, last.y_hi, last.x_lo, last.x_hi) == (6, 8, 5, 8)
    covered = np.zeros((8, 8), int)
    for s in range(g.num_slices):
        w = g.window(s, 0)
        covered[w.row0:w.row0 + w.rows, w.col0:w.col0 + w.cols] += 1
    assert (covered == 1).all()  # without overlap the windows tile the map exactly


def test_query_assignment_follows_level_zero_reference_points():
    g = SliceGrid([(8, 8)], 4, 4, 0)
    ref = np.array([[0.0, 0.0], [0.49, 0.49], [0.5, 0.0], [1.0, 1.0], [-0.2, 1.3]])
    assert g.slice_of(ref).tolist() == [0, 0, 1, 3, 2]


def test_bad_slicing_is_refused_with_the_field_name():
    with pytest.raises(ConfigError, match="slicing.slice_h"):
        SliceGrid([(8, 8)], 9, 4, 0)
    with pytest.raises(ConfigError, match="slicing.overlap"):
        SliceGrid([(8, 8)], 4, 4, -1)


def bounded_workload(name, max_offset_px, seed):
    cfg = C.preset(name)
    wl = make_workload(cfg, seed)
    # clip every offset to max_offset_px pixels of its level around the reference point
    shapes = wl.spatial_shapes[:, ::-1].astype(np.float64)
    ref = wl.reference_points[:, :, None, None, None, :]
    size = shapes[None, None, None, :, None, :]
    off = np.clip((wl.sampling_locations - ref) * size, -max_offset_px, max_offset_px)
    loc = ref + off / size
    return cfg, wl, loc


@pytest.mark.parametrize("name", ["tiny", "dat56"])
def test_sliced_equals_unsliced_when_the_halo_covers_every_offset(name):
    cfg, wl, loc = bounded_workload(name, 2.0, seed=4)
    # each query's footprint reaches at most 2 px + 1 (bilinear) + 1 (level rounding)
    grid = SliceGrid(cfg.workload.levels, cfg.slicing.slice_h, cfg.slicing.slice_w, 4)
    args = (wl.value, wl.spatial_shapes, loc, wl.attention_weights)
    out, stats = sliced_forward(*args, wl.reference_points, grid)
    assert stats.clamped_fraction == 0
    np.testing.assert_array_equal(out, msda_forward(*args))
    inp = quantize_inputs(cfg.numerics, *args)
    unsliced = SliceGrid.unsliced(cfg.workload.levels)
    np.testing.assert_array_equal(
        sliced_fixed_forward(cfg, inp, reference_points=wl.reference_points, grid=grid),
        sliced_fixed_forward(cfg, inp, reference_points=wl.reference_points, grid=unsliced))


def test_no_overlap_and_large_offsets_clamp_points_and_report_it():
    cfg, wl, loc = bounded_workload("tiny", 6.0, seed=5)
    grid = SliceGrid(cfg.workload.levels, 4, 4, 0)
    args = (wl.value, wl.spatial_shapes, loc, wl.attention_weights)
    out, stats = sliced_forward(*args, wl.reference_points, grid)
    assert 0.1 < stats.clamped_fraction < 1
    assert stats.queries_per_slice.sum() == cfg.workload.num_queries
    assert not np.allclose(out, msda_forward(*args))
    # clamping means: the same as sampling at explicitly clamped coordinates
    slice_idx = grid.slice_of(wl.reference_points)
    win = grid.windows_array()[slice_idx][:, :, None, :, None, :]
    shapes = wl.spatial_shapes.astype(np.float64)
    px = np.clip(loc[..., 0] * shapes[:, 1, None] - 0.5, win[..., 6], win[..., 7])
    py = np.clip(loc[..., 1] * shapes[:, 0, None] - 0.5, win[..., 4], win[..., 5])
    clamped = np.stack([(px + 0.5) / shapes[:, 1, None], (py + 0.5) / shapes[:, 0, None]], -1)
    np.testing.assert_allclose(out, msda_forward(wl.value, wl.spatial_shapes, clamped,
                                                 wl.attention_weights), atol=1e-12)


def test_clamped_footprint_never_reads_outside_the_window():
    cfg, wl, loc = bounded_workload("tiny", 8.0, seed=6)
    for overlap in (0, 1, 2):
        grid = SliceGrid(cfg.workload.levels, 3, 5, overlap)
        inp = quantize_inputs(cfg.numerics, wl.value, wl.spatial_shapes, loc,
                              wl.attention_weights)
        # Poison every pixel outside each query's window: a read there would show up.
        ref = sliced_fixed_forward(cfg, inp, reference_points=wl.reference_points,
                                   grid=grid)
        slice_idx = grid.slice_of(wl.reference_points)
        for s in np.unique(slice_idx):
            sel = slice_idx[0] == s
            value = inp.value.copy()
            start = 0
            for lvl, (h, w) in enumerate(cfg.workload.levels):
                win = grid.window(int(s), lvl)
                mask = np.ones((h, w), bool)
                mask[win.row0:win.row0 + win.rows, win.col0:win.col0 + win.cols] = False
                value[0, start:start + h * w][mask.reshape(-1)] = 12345
                start += h * w
            poisoned = type(inp)(value, inp.shapes, inp.x, inp.y, inp.weight)
            out = sliced_fixed_forward(cfg, poisoned, reference_points=wl.reference_points,
                                       grid=grid)
            np.testing.assert_array_equal(out[0, sel], ref[0, sel])


def test_drop_policy_zeroes_corners_outside_the_window():
    cfg, wl, loc = bounded_workload("tiny", 6.0, seed=7)
    args = (wl.value, wl.spatial_shapes, loc, wl.attention_weights)
    clamp = SliceGrid(cfg.workload.levels, 4, 4, 0, "clamp")
    drop = SliceGrid(cfg.workload.levels, 4, 4, 0, "drop")
    out_drop, _ = sliced_forward(*args, wl.reference_points, drop)
    out_clamp, _ = sliced_forward(*args, wl.reference_points, clamp)
    assert not np.allclose(out_drop, out_clamp)
    # a point whose whole footprint is outside its window contributes nothing
    far = loc.copy()
    far[..., 0] = 5.0  # far right of every map, beyond every window
    zero, _ = sliced_forward(wl.value, wl.spatial_shapes, far, wl.attention_weights,
                             wl.reference_points, drop)
    assert (zero == 0).all()
