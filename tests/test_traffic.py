"""Dataflows of the traffic counter on hand-countable tiny workloads.

Tiny MSDA case: one 8x8 level, M = 1, D = 8, 16-bit values, 16-byte bus, so a pixel, a
point record (padded) and an output row are one beat each; value starts at 0x1000 with
8 pixels (128 bytes) per map row, so no small region crosses 4 KiB. Slices 4x4, overlap 1.
"""

import numpy as np
import pytest

from defslice import config as C
from defslice.errors import ConfigError, InputError
from defslice.model.layout import burst_summary
from defslice.model.traffic import (
    Compulsory,
    DefaStyle,
    HaloReuse,
    LayerByLayer,
    SamplingTrace,
    Sliced,
    TrafficContext,
    run_study,
    sweep,
)


def _loc(px: float, py: float, size: int = 8) -> tuple[float, float]:
    """Normalized location of pixel coordinate (px, py): x = (px + 0.5) / W."""
    return ((px + 0.5) / size, (py + 0.5) / size)


def tiny_msda(**traffic) -> C.Config:
    return C.Config(
        name="hand",
        workload=C.WorkloadConfig(kind="msda", levels=((8, 8),), heads=1, channels=8,
                                  points=1, queries=3),
        slicing=C.SlicingConfig(slice_h=4, slice_w=4, overlap=1),
        hw=C.HwConfig(lanes=2, axi_data_bits=128),
        traffic=C.TrafficConfig(**traffic),
    )


def msda_ctx(**traffic) -> TrafficContext:
    """Three queries. q0 and q2 sample pixel coordinate (2.5, 1.5): corners (y, x) in
    {1, 2} x {2, 3}, all in the map. q1 samples (-0.5, 6.5): x0 = -1 is zero padding, so
    only corners (6, 0) and (7, 0) are fetched. Weights 1.0, 0.01, 0.5. q0, q2 belong to
    slice 0, q1 (reference (0.9, 0.1)) to slice 1, the right neighbour."""
    cfg = tiny_msda(**traffic)
    loc = np.array([_loc(2.5, 1.5), _loc(-0.5, 6.5), _loc(2.5, 1.5)])
    loc = loc.reshape(1, 3, 1, 1, 1, 2)
    attn = np.array([1.0, 0.01, 0.5]).reshape(1, 3, 1, 1, 1)
    ref = np.array([[[0.1, 0.1], [0.9, 0.1], [0.1, 0.1]]])
    return TrafficContext(cfg, SamplingTrace.from_arrays(cfg, loc, attn, ref))


def rw(count) -> tuple[tuple[int, int], tuple[int, int]]:
    d = count.as_dict()
    return ((d["read"]["bursts"], d["read"]["beats"]),
            (d["write"]["bursts"], d["write"]["beats"]))


def test_layer_by_layer_by_hand():
    c = LayerByLayer().count(msda_ctx())
    # reads: records twice (3 beats, 1 burst each), 4 + 2 + 4 corner fetches of one beat
    # each, per-point samples read back (3 beats, 1 burst)
    # writes: per-point samples (3 beats), outputs (3 beats)
    assert rw(c) == ((1 + 1 + 10 + 1, 3 + 3 + 10 + 3), (2, 6))
    assert c.as_dict()["per_tensor"]["value"]["read"]["bytes"] == 10 * 16


def test_defa_reuse_and_pruning_by_hand():
    # No pruning: q2 hits the four pixels q0 left in the buffer; 6 fetches.
    assert rw(DefaStyle().count(msda_ctx(defa_point_prune_threshold=0.0))) == \
        ((1 + 6, 3 + 6), (1, 3))
    # No buffer: all 10 corners fetched.
    assert rw(DefaStyle().count(msda_ctx(defa_point_prune_threshold=0.0,
                                         defa_reuse_kib=0))) == ((1 + 10, 3 + 10), (1, 3))
    # q1's weight 0.01 < 0.02: its two corners are pruned, q2 hits: 4 fetches.
    assert rw(DefaStyle().count(msda_ctx(defa_point_prune_threshold=0.02))) == \
        ((1 + 4, 3 + 4), (1, 3))
    # Pixel pruning of 60 of 64 pixels: the 58 never sampled and q1's two (sampled once,
    # q0's are sampled twice) go; only q0's four remain.
    assert rw(DefaStyle().count(msda_ctx(defa_point_prune_threshold=0.0,
                                         defa_pixel_prune_ratio=60 / 64))) == \
        ((1 + 4, 3 + 4), (1, 3))


def test_compulsory_by_hand():
    c = Compulsory().count(msda_ctx())
    # touched pixels 10, 11, 18, 19, 48, 56: runs [10, 11], [18, 19], [48], [56]
    assert rw(c) == ((1 + 4, 3 + 6), (1, 3))


def test_sliced_by_hand_and_equal_to_the_rtl_contract():
    ctx = msda_ctx()
    c = Sliced().count(ctx)
    # two descriptors of 32 bytes (2 beats), two 5x5 windows read row by row (5 beats a
    # row), records of slice 0 (2 beats) and slice 1 (1 beat); outputs alike.
    assert rw(c) == ((2 + 10 + 2, 4 + 50 + 3), (2, 3))
    summary = burst_summary(ctx.program.transfers())
    per = c.as_dict()["per_tensor"]
    for tensor in ("descriptor", "value", "query"):
        assert per[tensor]["read"]["bursts"] == summary[tensor]["bursts"]
        assert per[tensor]["read"]["beats"] == summary[tensor]["beats"]
    assert per["output"]["write"]["beats"] == summary["output"]["beats"]


def test_halo_reuse_by_hand():
    # slice 1 follows its left neighbour: window columns 3, 4 are on chip, only columns
    # 5..7 of its five rows are read (3 beats instead of 5).
    c = HaloReuse().count(msda_ctx())
    assert rw(c) == ((2 + 10 + 2, 4 + 25 + 15 + 3), (2, 3))


def test_sliced_equals_transfers_on_random_workloads():
    for name in ("tiny", "dat56"):
        cfg = C.preset(name)
        ctx = TrafficContext(cfg, SamplingTrace.from_config(cfg, seed=3))
        d = Sliced().count(ctx).as_dict()
        s = burst_summary(ctx.program.transfers())
        assert d["read"]["bursts"] == s["read"]["bursts"]
        assert d["read"]["beats"] == s["read"]["beats"]
        assert d["write"]["beats"] == s["write"]["beats"]
        assert d["total"]["bytes"] == (s["read"]["beats"] + s["write"]["beats"]) \
            * ctx.layout.bus_bytes


# -- DAT whole-layer scope ----------------------------------------------------------------
def dat_ctx() -> TrafficContext:
    """8x8 map, C = 8, a 2x2 key grid (stride 4, 9x9 offset kernel), slices 4x4 with
    overlap 1 (one key per slice).

    Keys 0 and 1 sample (2.5, 2.5), key 2 (5.5, 1.5), key 3 (5.5, 5.5): 16 corner
    fetches, 12 distinct pixels. Weights: Wq = Wk = Wv = Wo = (64 + 8) * 2 = 144 bytes;
    offset net (k = 9) = (8*81 + 8 + 16 + 16) * 2 = 1376; bias table 15*15*2 = 450.
    Stage 1 = 1520 bytes = 95 beats; stage 2 = 882 bytes from byte 1520 = 56 beats;
    all weights = 2402 bytes = 151 beats.
    """
    cfg = C.Config(
        name="hand-dat",
        workload=C.WorkloadConfig(kind="dat", levels=((8, 8),), heads=1, channels=8,
                                  points=1, stride=4, offset_kernel=9),
        slicing=C.SlicingConfig(slice_h=4, slice_w=4, overlap=1),
        hw=C.HwConfig(lanes=2, axi_data_bits=128),
    )
    loc = np.array([_loc(2.5, 2.5), _loc(2.5, 2.5), _loc(5.5, 1.5), _loc(5.5, 5.5)])
    ref = np.array([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]])
    trace = SamplingTrace.from_arrays(cfg, loc.reshape(1, 4, 1, 1, 1, 2),
                                      np.ones((1, 4, 1, 1, 1)), ref)
    return TrafficContext(cfg, trace)


def test_dat_layer_by_layer_by_hand():
    c = LayerByLayer().count(dat_ctx(), "layer")
    # reads: x 64, stage-1 weights 95, 16 corners, q 64, keys 4, stage-2 weights 56
    # writes: q 64, keys 4, y 64 (each one burst)
    assert rw(c) == ((1 + 1 + 16 + 1 + 1 + 1, 64 + 95 + 16 + 64 + 4 + 56), (3, 132))


def test_dat_defa_by_hand():
    c = DefaStyle().count(dat_ctx(), "layer")
    # x twice, both weight stages, 12 misses (keys 0 and 1 share four pixels); y once
    assert rw(c) == ((1 + 1 + 12 + 1 + 1, 64 + 95 + 12 + 64 + 56), (1, 64))


def test_dat_sliced_and_halo_by_hand():
    ctx = dat_ctx()
    c = Sliced().count(ctx, "layer")
    # RTL: 4 descriptors (2 beats), 4 windows of 5 rows x 5 beats, 4 records, 4 keys out.
    # Around it: records written once (4 beats), keys read back (4 beats), weights
    # (151 beats), y as 4 slices x 4 row segments of 4 pixels (4 beats each).
    assert rw(c) == ((4 + 20 + 4 + 1 + 1, 8 + 100 + 4 + 4 + 151), (4 + 1 + 16, 4 + 4 + 64))
    h = HaloReuse().count(ctx, "layer")
    # slices 1 and 3 keep two columns of their left neighbour: 2 x 5 x 2 beats fewer
    assert rw(h)[0] == (30, 267 - 20)


def test_dat_compulsory_by_hand():
    assert rw(Compulsory().count(dat_ctx(), "layer")) == ((2, 64 + 151), (1, 64))


def test_study_normalizes_and_orders_dat56():
    cfg = C.preset("dat56")
    res = run_study(TrafficContext(cfg, SamplingTrace.from_config(cfg)))
    assert res["headline_scope"] == "layer"
    flows = res["scopes"]["layer"]["dataflows"]
    n = {k: v["normalized"]["beats"] for k, v in flows.items()}
    assert n["layer_by_layer"] == 1.0
    assert n["compulsory"] <= n["halo_reuse"] <= n["sliced"] < n["defa"] < 1.0
    assert flows["sliced"]["normalized"]["bytes"] == pytest.approx(
        flows["sliced"]["total"]["bytes"] / flows["layer_by_layer"]["total"]["bytes"])
    # datapath alone, windows cost more than 49 keys' corners
    assert res["scopes"]["datapath"]["dataflows"]["sliced"]["normalized"]["beats"] > 1.0


def test_msda_has_only_the_datapath_scope():
    ctx = msda_ctx()
    with pytest.raises(InputError, match="scope 'layer'"):
        LayerByLayer().count(ctx, "layer")


def test_sweep_shapes_and_validation():
    ctx = dat_ctx()
    sw = sweep(ctx, [2, 4], [4, 8], [0, 1], progress=False)
    arr = np.array(sw["normalized"]["sliced"]["beats"])
    assert arr.shape == (2, 2, 2)
    # halo reuse never reads more than plain slicing
    assert (np.array(sw["beats"]["halo_reuse"]) <= np.array(sw["beats"]["sliced"])).all()
    with pytest.raises(ConfigError, match="sweep.slice_h"):
        sweep(ctx, [0, 9], [4], [0], progress=False)


def test_from_arrays_names_the_bad_input():
    cfg = tiny_msda()
    with pytest.raises(InputError, match="sampling_locations"):
        SamplingTrace.from_arrays(cfg, np.zeros((1, 3, 2)), np.zeros((1, 3, 1, 1, 1)),
                                  np.zeros((1, 3, 2)))
    with pytest.raises(InputError, match="attention_weights"):
        SamplingTrace.from_arrays(cfg, np.zeros((1, 3, 1, 1, 1, 2)), np.zeros((1, 3)),
                                  np.zeros((1, 3, 2)))
    with pytest.raises(InputError, match="reference_points"):
        SamplingTrace.from_arrays(cfg, np.zeros((1, 3, 1, 1, 1, 2)),
                                  np.zeros((1, 3, 1, 1, 1)), np.zeros((3, 2)))


def test_traffic_config_fields_are_validated():
    with pytest.raises(ConfigError, match="workload.offset_kernel"):
        C.WorkloadConfig(offset_kernel=0)
    with pytest.raises(ConfigError, match="traffic.defa_reuse_kib"):
        C.TrafficConfig(defa_reuse_kib=-1)
