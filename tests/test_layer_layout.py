"""The layer engine's DRAM contract: slice tasks, descriptors, parameter sections, bursts."""

import itertools

import numpy as np
import pytest

from defslice import config as C
from defslice.errors import ConfigError
from defslice.model.dat import reference_points_px
from defslice.model.dat_layer import DatLayerSpec
from defslice.model.layer_layout import (
    DESC_FIELDS,
    OPEN_HI,
    OPEN_LO,
    PARAM_SECTIONS,
    LayerDims,
    LayerLayout,
    layer_transfers,
    slice_tasks,
)
from defslice.model.layout import burst_summary
from defslice.model.slicing import SliceGrid

DAT56 = LayerDims.from_config(C.preset("dat56"))


def _dims(h, w, stride, kernel, heads=2, head_dim=8, groups=1):
    spec = DatLayerSpec(heads=heads, groups=groups, stride=stride, offset_kernel=kernel)
    return LayerDims(spec, h, w, heads * head_dim)


CASES = [
    (DAT56, SliceGrid([(56, 56)], 28, 14, 2)),
    (_dims(20, 13, 3, 5), SliceGrid([(20, 13)], 7, 5, 0)),       # slices do not divide
    (_dims(16, 16, 4, 7, groups=2), SliceGrid([(16, 16)], 6, 6, 3)),
    (_dims(12, 18, 2, 3), SliceGrid([(12, 18)], 12, 18, 0)),      # one slice
    (_dims(9, 11, 2, 2), SliceGrid([(9, 11)], 4, 3, 1)),          # kernel == stride
]


@pytest.mark.parametrize("dims,grid", CASES)
def test_tasks_partition_pixels_and_keys(dims, grid):
    tasks = slice_tasks(dims, grid)
    owner = np.full((dims.height, dims.width), -1)
    keys = np.full((dims.key_rows, dims.key_cols), -1)
    for t in tasks:
        r = t.region
        assert (owner[r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols] == -1).all()
        owner[r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols] = t.index
        k = t.keys
        if k.empty:
            continue
        assert (keys[k.row0:k.row0 + k.rows, k.col0:k.col0 + k.cols] == -1).all()
        keys[k.row0:k.row0 + k.rows, k.col0:k.col0 + k.cols] = t.index
    assert (owner >= 0).all()
    assert (keys >= 0).all()


@pytest.mark.parametrize("dims,grid", CASES)
def test_key_owner_holds_reference_point(dims, grid):
    ref = reference_points_px(dims.height, dims.width, dims.key_rows, dims.key_cols)
    ref_r, ref_c = ref[:, 0, 0], ref[0, :, 1]
    for t in slice_tasks(dims, grid):
        for i, j in itertools.product(range(t.keys.row0, t.keys.row0 + t.keys.rows),
                                      range(t.keys.col0, t.keys.col0 + t.keys.cols)):
            py = min(max(int(np.floor(ref_r[i] + 0.5)), 0), dims.height - 1)
            px = min(max(int(np.floor(ref_c[j] + 0.5)), 0), dims.width - 1)
            r = t.region
            assert r.row0 <= py < r.row0 + r.rows and r.col0 <= px < r.col0 + r.cols


@pytest.mark.parametrize("dims,grid", CASES)
def test_qbox_covers_queries_and_taps_inside_window(dims, grid):
    for t in slice_tasks(dims, grid):
        if t.num_keys == 0:
            assert t.qbox.empty
            continue
        q, w, r = t.qbox, t.window, t.region
        assert w.row0 <= q.row0 and q.row0 + q.rows <= w.row0 + w.rows
        assert w.col0 <= q.col0 and q.col0 + q.cols <= w.col0 + w.cols
        assert q.row0 <= r.row0 and r.row0 + r.rows <= q.row0 + q.rows
        assert q.col0 <= r.col0 and r.col0 + r.cols <= q.col0 + q.cols
        for i in range(t.keys.row0, t.keys.row0 + t.keys.rows):
            lo, hi = dims.taps(i)
            for y in range(max(lo, w.row0), min(hi, w.row0 + w.rows)):
                assert q.row0 <= y < q.row0 + q.rows
        for j in range(t.keys.col0, t.keys.col0 + t.keys.cols):
            lo, hi = dims.taps(j)
            for x in range(max(lo, w.col0), min(hi, w.col0 + w.cols)):
                assert q.col0 <= x < q.col0 + q.cols


def test_bias_bounds_open_only_at_map_edges():
    dims, grid = CASES[1]
    for t in slice_tasks(dims, grid):
        w = t.window
        assert (t.bias_bounds[0] == OPEN_LO) == (w.row0 == 0)
        assert (t.bias_bounds[1] == OPEN_HI) == (w.row0 + w.rows == dims.height)
        assert (t.bias_bounds[2] == OPEN_LO) == (w.col0 == 0)
        assert (t.bias_bounds[3] == OPEN_HI) == (w.col0 + w.cols == dims.width)
        if w.row0 > 0:
            assert t.bias_bounds[0] == w.y_lo


def test_one_slice_is_the_whole_layer():
    dims = CASES[3][0]
    (t,) = slice_tasks(dims, SliceGrid.unsliced([(dims.height, dims.width)]))
    assert t.num_keys == dims.num_keys
    assert t.bias_bounds == (OPEN_LO, OPEN_HI, OPEN_LO, OPEN_HI)
    assert (t.window.rows, t.window.cols) == (dims.height, dims.width)


def test_dat56_by_hand():
    tasks = slice_tasks(DAT56, SliceGrid([(56, 56)], 28, 14, 2))
    # Reference rows 4.58, 13.75, 22.92 | 32.08, 41.25, 50.42, 59.58: 3 + 4 rows;
    # columns 4.58 | 13.75 (nearest pixel 14), 22.92 | 32.08, 41.25 | 50.42, 59.58.
    assert [t.keys.rows for t in tasks] == [3] * 4 + [4] * 4
    assert [t.keys.cols for t in tasks] == [1, 2, 2, 2] * 2
    assert sum(t.num_keys for t in tasks) == 49
    # q of slice 5 (rows 28..55, columns 14..27): taps of key rows 3..6 reach row 20,
    # clipped to the window's first row 26; key column 1's taps reach column 4 -> 12.
    assert tasks[5].qbox.as_tuple() == (26, 12, 30, 16)


def test_descriptor_fields_and_packing():
    dims, grid = CASES[0]
    tasks = slice_tasks(dims, grid)
    lay = LayerLayout(dims, grid.num_slices, lanes=8, cols=4, bus_bytes=16, max_beats=256)
    raw = lay.pack_descriptors(tasks)
    assert len(raw) == len(tasks) * lay.desc_stride
    for k, t in enumerate(tasks):
        rec = np.frombuffer(raw[k * lay.desc_stride:][:2 * len(DESC_FIELDS)], "<i2")
        fields = dict(zip(DESC_FIELDS, rec.tolist(), strict=True))
        assert fields["slice_index"] == t.index and fields["num_keys"] == t.num_keys
        # A sampling-engine reader sees no point records to read.
        assert fields["query_count"] == fields["query_count_hi"] == 0
        w = t.window
        assert [fields[n] for n in ("row0", "col0", "rows", "cols", "y_lo", "y_hi",
                                    "x_lo", "x_hi")] == \
            [w.row0, w.col0, w.rows, w.cols, w.y_lo, w.y_hi, w.x_lo, w.x_hi]
        assert (fields["q_row0"], fields["q_rows"]) == (t.qbox.row0, t.qbox.rows)
    # The window sits where the sampling engine's level-0 record does (bytes 16..31).
    assert DESC_FIELDS.index("row0") * 2 == 16


def test_param_sections_dat56():
    lay = LayerLayout(DAT56, 8, lanes=8, cols=4, bus_bytes=16, max_beats=256)
    assert tuple(lay.sections) == PARAM_SECTIONS
    size = {k: s.nbytes for k, s in lay.sections.items()}
    assert size["proj_q"] == 64 * 64 * 2
    assert size["dwconv"] == 25 * 8 * 4 * 8 * 2       # 5x5 tap quads x 8 words x 4 x 8
    assert size["bias"] == (4 * 64 + 2 * 64) * 8
    assert size["rpe"] == 2 * 4 * 56 * 56 * 2
    offsets = [s.offset for s in lay.sections.values()]
    assert offsets == sorted(offsets) and all(o % 16 == 0 for o in offsets)
    assert lay.param_bytes == sum(size.values())


@pytest.mark.parametrize("dims,grid", CASES)
@pytest.mark.parametrize("bus,max_beats", [(16, 256), (8, 3)])
def test_transfers_cover_exactly(dims, grid, bus, max_beats):
    tasks = slice_tasks(dims, grid)
    lay = LayerLayout(dims, grid.num_slices, lanes=4, cols=2, bus_bytes=bus,
                      max_beats=max_beats)
    bursts = layer_transfers(lay, tasks)
    for b in bursts:
        assert 1 <= b.beats <= max_beats
        assert b.addr // 4096 == (b.addr + b.beats * bus - 1) // 4096
    s = burst_summary(bursts)
    assert s["weights"]["beats"] * bus == lay.param_bytes
    assert s["output"]["beats"] * bus == dims.height * dims.width * lay.out_stride
    win = sum(t.window.pixels for t in tasks)
    assert s.get("value", {"beats": 0})["beats"] * bus == win * lay.pixel_stride
    assert s["descriptor"]["beats"] * bus == len(tasks) * lay.desc_stride
    written = sorted(b.addr + k * bus for b in bursts if b.write for k in range(b.beats))
    assert len(written) == len(set(written))
    # each burst's first and last byte lie in the tensor it is counted under
    assert all(lay.tensor_at(b.addr) == lay.tensor_at(b.addr + b.beats * bus - 1) == b.tensor
               for b in bursts)


def test_layout_refuses_small_address_space():
    with pytest.raises(ConfigError, match="hw.addr_bits"):
        LayerLayout(DAT56, 8, lanes=8, cols=4, bus_bytes=16, max_beats=256, addr_bits=16)


def _fixed_params(cfg):
    from defslice.model.dat_layer import init_params
    from defslice.model.dat_layer_fixed import LayerFormats, quantize_layer_params

    dims = LayerDims.from_config(cfg)
    params = init_params(dims.spec, dims.channels, dims.height, dims.width, seed=1)
    return dims, quantize_layer_params(params, dims.spec, LayerFormats.from_config(cfg),
                                       (dims.height, dims.width))


@pytest.mark.parametrize("preset", ["dat56", "dat56-b"])
def test_param_image_sections(preset):
    cfg = C.preset(preset)
    dims, qp = _fixed_params(cfg)
    L, N = cfg.hw.lanes, cfg.hw.array_cols
    lay = LayerLayout(dims, 8, lanes=L, cols=N, bus_bytes=cfg.hw.bus_bytes, max_beats=256)
    image = lay.pack_params(qp)
    assert len(image) == lay.param_bytes

    def section(name, nbytes):
        sec = lay.sections[name]
        return np.frombuffer(image[sec.offset:sec.offset + sec.nbytes], f"<i{nbytes}")

    rng = np.random.default_rng(0)
    c, cg, k = dims.channels, dims.group_channels, dims.kernel
    wq, wo = section("proj_q", 2), section("proj_out", 2)
    for _ in range(50):                # tile t = ot * (C/L) + w, element lane * N + n
        ot, w, lane, n = (int(rng.integers(0, m)) for m in (c // N, c // L, L, N))
        pos = (ot * (c // L) + w) * L * N + lane * N + n
        assert wq[pos] == qp.proj_q[0][ot * N + n, w * L + lane]
        assert wo[pos] == qp.proj_out[0][ot * N + n, w * L + lane]
    dw = section("dwconv", 2)
    q = (k + 1) // 2
    for quad in range(q * q):          # word quad * (Cg/L) + cw, element r * L + l
        qy, qx = divmod(quad, q)
        for cw in range(cg // L):
            for r in range(4):
                ty, tx = 2 * qy + r // 2, 2 * qx + r % 2
                got = dw[(quad * (cg // L) + cw) * 4 * L + r * L:][:L]
                want = qp.conv_w.reshape(cg, k, k)[cw * L:(cw + 1) * L, ty, tx] \
                    if ty < k and tx < k else np.zeros(L)
                assert (got == want).all()
    off = section("offset_proj", 2).reshape(cg, N)
    assert (off[:, :2] == qp.offset_w.T).all() and not off[:, 2:].any()
    bias = section("bias", 8)[: 4 * c + 2 * cg]
    assert (bias[c:2 * c] == qp.proj_k[1]).all() and (bias[4 * c + cg:] == qp.norm_b).all()
    per = cfg.hw.bus_bytes // 8
    rpe = section("rpe", 2)[: 4 * dims.heads * dims.height * dims.width]
    banks = rpe.reshape(-1, 4, per).transpose(1, 0, 2).reshape(4, -1)
    from defslice.model.layer_layout import rpe_banks
    assert (banks == rpe_banks(qp.rpe)).all()


def test_x_and_y_round_trip():
    cfg = C.preset("dat56")
    dims = LayerDims.from_config(cfg)
    lay = LayerLayout(dims, 8, lanes=8, cols=4, bus_bytes=16, max_beats=256)
    x = np.random.default_rng(1).integers(-(1 << 15), 1 << 15, size=(64, 56, 56))
    raw = lay.pack_x(x)
    assert len(raw) == 56 * 56 * lay.pixel_stride
    assert lay.unpack_y(raw).tolist() == x.tolist()      # same strides and widths here
