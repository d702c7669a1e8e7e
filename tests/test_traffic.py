"""Dataflows of the traffic counter on hand-countable tiny workloads.

Tiny MSDA case: one 8x8 level, M = 1, D = 8, 16-bit values, 16-byte bus, so a pixel, a
point record (padded) and an output row are one beat each; value starts at 0x1000 with
8 pixels (128 bytes) per map row, so no small region crosses 4 KiB. Slices 4x4, overlap 1.
"""

import numpy as np
import pytest

from defslice import config as C
from defslice.errors import ConfigError, InputError
from defslice.model.layer_layout import layer_transfers
from defslice.model.layout import burst_summary
from defslice.model.traffic import (
    Compulsory,
    DefaStyle,
    DeformableConvStyle,
    HaloReuse,
    LayerByLayer,
    LayerByLayerPerOperator,
    SamplingTrace,
    Schedule,
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
    """8x8 map, C = 8 (one head, one group), a 2x2 key grid (stride 4, 9x9 offset kernel),
    slices 4x4 with overlap 1, 16-byte bus: a pixel of x, q or y is one beat.

    Keys 0 and 1 sample (2.5, 2.5), key 2 (5.5, 1.5), key 3 (5.5, 5.5): 16 corner
    fetches of one beat, 12 distinct pixels. Parameters (2 bytes each, one burst per
    operator): q, k, v, proj_out (64 + 8) * 2 = 144 bytes = 9 beats; offset conv
    (8 * 81 + 8) * 2 = 1312 = 82; LayerNorm 32 = 2; offset projection 32 = 2; bias table
    15 * 15 * 2 = 450 = 29 beats. Tensors: x, q, attention output, y 64 beats; offset
    activations, sampled keys, k, v 4 * 8 * 2 = 64 bytes = 4 beats; positions 4 records
    of 16 bytes = 4 beats; logits, bias, probabilities 64 * 4 * 2 = 512 bytes = 32 beats.
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
    # sampling layer reads x 64, 16 corners, weights 9 + 82 + 2 + 2; writes q 64,
    # positions 4, sampled keys 4. Attention layer reads sampled 4, q 64, positions 4,
    # weights 9 + 9 + 29 + 9; writes y 64. One burst per stream and per corner.
    assert rw(c) == ((1 + 16 + 4 + 3 + 4, 64 + 16 + 95 + 72 + 56), (4, 64 + 4 + 4 + 64))


def test_dat_layer_by_layer_recomputing_q_by_hand():
    c = LayerByLayer().with_q("recompute").count(dat_ctx(), "layer")
    # q is not written; the attention layer streams x (64) and Wq (9) instead of q.
    assert rw(c) == ((1 + 16 + 4 + 3 + 5, 64 + 16 + 95 + 72 + 65), (3, 4 + 4 + 64))


def test_dat_per_operator_by_hand():
    flow = LayerByLayerPerOperator()
    rows = {"+".join(r["operators"]): r for r in flow.breakdown(dat_ctx())}
    assert list(rows) == ["q", "offset_conv", "layernorm", "gelu", "offset_proj", "sample",
                          "k", "v", "logits", "bias", "softmax", "pv", "proj_out"]
    assert rows["q"]["read"] == {"x": 64, "weights:q": 9} and rows["q"]["write"] == {"q": 64}
    assert rows["sample"]["read"] == {"positions": 4, "x (gather)": 16}
    assert rows["logits"]["read"] == {"q": 64, "k": 4}
    assert rows["logits"]["write"] == {"logits": 32}
    assert rows["bias"]["read"] == {"positions": 4, "weights:bias": 29}
    assert rows["softmax"]["read"] == {"logits": 32, "bias": 32}
    assert rows["proj_out"]["write"] == {"y": 64}
    total = sum(sum(r["read"].values()) + sum(r["write"].values()) for r in rows.values())
    assert flow.count(dat_ctx(), "layer").total().beats == total == (
        (64 + 9 + 64) + (64 + 82 + 4) + (4 + 2 + 4) + (4 + 4) + (4 + 2 + 4)
        + (4 + 16 + 4) + 2 * (4 + 9 + 4) + (64 + 4 + 32) + (4 + 29 + 32)
        + (32 + 32 + 32) + (32 + 4 + 64) + (64 + 9 + 64))


def test_dat_defa_by_hand():
    c = DefaStyle().count(dat_ctx(), "layer")
    # pass 1: x, 12 misses (keys 0 and 1 share four pixels), every weight but the bias
    # table's; pass 2: x again for q, the bias table; k, v, positions stay on chip.
    assert rw(c) == ((1 + 12 + 6 + 1 + 2, 64 + 12 + 95 + 18 + 64 + 38), (1, 64))
    stored = DefaStyle().with_q("store").count(dat_ctx(), "layer")
    # storing q instead: written in pass 1 (64), read in pass 2 in place of x
    assert rw(stored) == (rw(c)[0], (2, 128))


def test_dat_sliced_is_the_layer_engine_by_hand():
    ctx = dat_ctx()
    c = Sliced().count(ctx, "layer")
    layout, tasks = ctx.layer_engine
    # DAT's reference points of a 2x2 grid lie at 3.5 and 10.5 pixels: every key belongs
    # to slice 3 (rows and columns 4..7). Parameters once; 4 descriptors of 4 beats;
    # slice 3's window, rows and columns 3..7, 5 rows of 5 beats; y as 4 slices x 4 row
    # segments of 4 pixels.
    assert [t.num_keys for t in tasks] == [0, 0, 0, 4]
    params = layout.param_bytes // 16
    assert rw(c) == ((1 + 4 + 5, params + 16 + 25), (16, 64))
    per = c.as_dict()["per_tensor"]
    summary = burst_summary(layer_transfers(layout, tasks))
    for tensor, d in (("weights", "read"), ("descriptor", "read"), ("value", "read"),
                      ("output", "write")):
        assert per[tensor][d]["bursts"] == summary[tensor]["bursts"]
        assert per[tensor][d]["beats"] == summary[tensor]["beats"]


def test_dat56_sliced_and_halo_reuse_by_hand():
    cfg = C.preset("dat56")
    ctx = TrafficContext(cfg, SamplingTrace.from_config(cfg))
    # 2 x 4 slices of 28 x 14, overlap 2, all holding keys: windows of 30 rows and
    # 16, 18, 18, 16 columns of 8 beats (64 channels x 2 bytes); y 3136 pixels.
    per = Sliced().count(ctx, "layer").as_dict()["per_tensor"]
    assert per["value"]["read"]["beats"] == 2 * 30 * (16 + 18 + 18 + 16) * 8
    assert per["output"]["write"]["beats"] == 3136 * 8
    assert per["descriptor"]["read"]["beats"] == 8 * 4
    # halo reuse: columns 16.., 30.., 44.. are new after the left neighbour
    halo = HaloReuse().count(ctx, "layer").as_dict()["per_tensor"]
    assert halo["value"]["read"]["beats"] == 2 * 30 * (16 + 14 + 14 + 12) * 8


def test_dat_compulsory_by_hand():
    assert rw(Compulsory().count(dat_ctx(), "layer")) == \
        ((1 + 8, 64 + 9 * 4 + 82 + 2 + 2 + 29), (1, 64))


def test_dat_deformable_conv_keeps_only_the_samples_on_chip():
    ctx = dat_ctx()
    rows = DeformableConvStyle().breakdown(ctx)
    assert [r["operators"] for r in rows][:4] == [
        ["q"], ["offset_conv", "layernorm", "gelu"], ["offset_proj"], ["sample", "k", "v"]]
    assert rows[3]["write"] == {"k": 4, "v": 4} and "sampled" not in rows[3]["read"]
    ops = LayerByLayerPerOperator().count(ctx, "layer").total().beats
    dcn = DeformableConvStyle().count(ctx, "layer").total().beats
    # saved against the per-operator baseline: offset_conv and offset_norm (4 + 4 beats
    # each, written and read), the sampled keys (4 written, read twice)
    assert ops - dcn == 2 * (4 + 4) + (4 + 2 * 4)


def _groups_ctx(heads: int, groups: int) -> TrafficContext:
    """8x8 map, 8 channels per head, a 2x2 key grid; every key of every group samples an
    in-map point (four corners)."""
    cfg = C.Config(
        name="hand-groups",
        workload=C.WorkloadConfig(kind="dat", levels=((8, 8),), heads=heads, channels=8,
                                  groups=groups, points=1, stride=4, offset_kernel=9),
        slicing=C.SlicingConfig(slice_h=4, slice_w=4, overlap=1),
        hw=C.HwConfig(lanes=2, axi_data_bits=128),
    )
    loc = np.broadcast_to(np.array(_loc(2.5, 2.5)), (1, 4, groups, 1, 1, 2))
    ref = np.array([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]])
    trace = SamplingTrace.from_arrays(cfg, loc, np.ones((1, 4, groups, 1, 1)), ref)
    return TrafficContext(cfg, trace)


@pytest.mark.parametrize("heads, groups", [(1, 1), (2, 1), (2, 2), (4, 2)])
def test_heads_and_groups_are_counted_apart(heads, groups):
    ctx = _groups_ctx(heads, groups)
    g = ctx.extra.graph
    c, cg = 8 * heads, 8 * heads // groups
    t = {name: (x.shape, x.nbytes) for name, x in g.tensors.items()}
    # one tensor per attention head: logits, bias, probabilities, the bias table
    for name in ("logits", "bias", "probs"):
        assert t[name] == ((heads, 64, 4), heads * 64 * 4 * 2)
    assert g.weight_bytes["bias"] == heads * 15 * 15 * 2
    # one per offset group of C / G channels: offset activations, positions, samples
    for name in ("offset_conv", "offset_norm", "offset_act"):
        assert t[name] == ((groups, cg, 4), c * 4 * 2)
    assert t["positions"][0] == (4, groups, 2)
    assert t["sampled"] == ((4, groups, cg), c * 4 * 2)
    # the offset network's parameters are shared by the groups: C / G channels
    assert g.weight_bytes["offset_conv"] == (cg * 81 + cg) * 2
    assert g.weight_bytes["q"] == (c * c + c) * 2
    # sampling fetches 4 corners per key and group, C / G channels each
    rows = {"+".join(r["operators"]): r for r in LayerByLayerPerOperator().breakdown(ctx)}
    unit_beats = -(-cg * 2 // 16)
    assert rows["sample"]["read"]["x (gather)"] == groups * 4 * 4 * unit_beats
    assert rows["logits"]["write"]["logits"] == heads * 64 * 4 * 2 // 16


def test_without_position_bias_there_is_no_bias_operator():
    ctx = dat_ctx()
    cfg = ctx.cfg.replace(workload={"use_pe": False})
    ctx = TrafficContext(cfg, ctx.trace)
    rows = LayerByLayerPerOperator().breakdown(ctx)
    names = ["+".join(r["operators"]) for r in rows]
    assert "bias" not in names and len(names) == 12
    assert rows[names.index("softmax")]["read"] == {"logits": 32}


def test_q_policies_move_q_between_layers():
    ops = ["q", "offset_conv", "sample", "logits", "pv"]
    consumers = ["offset_conv", "logits"]
    s = Schedule((("q", "offset_conv", "sample"), ("logits", "pv")))
    assert s.resolved(ops, consumers) == [["q", "offset_conv", "sample"], ["logits", "pv"]]
    assert s.with_q("recompute").resolved(ops, consumers) == \
        [["q", "offset_conv", "sample"], ["q", "logits", "pv"]]
    alone = Schedule((("q",), ("offset_conv",), ("sample",), ("logits",), ("pv",)),
                     q="recompute")
    assert alone.resolved(ops, consumers) == [["q", "offset_conv"], ["sample"],
                                              ["q", "logits"], ["pv"]]
    unnamed = Schedule((("offset_conv", "sample"), ("logits", "pv")))
    assert unnamed.resolved(ops, consumers)[0][0] == "q"
    with pytest.raises(ConfigError, match="schedule.q"):
        Schedule((("q",),), q="cache")
    with pytest.raises(ConfigError, match="schedule.layers"):
        Schedule((("q",), ("q",)))


def test_study_normalizes_and_orders_dat56():
    cfg = C.preset("dat56")
    res = run_study(TrafficContext(cfg, SamplingTrace.from_config(cfg)))
    assert res["headline_scope"] == "layer"
    flows = res["scopes"]["layer"]["dataflows"]
    n = {k: v["normalized"]["beats"] for k, v in flows.items()}
    assert n["layer_by_layer"] == 1.0
    assert n["compulsory"] <= n["halo_reuse"] <= n["sliced"] < n["defa"] < 1.0
    assert n["dcn"] < n["layer_by_layer_ops"]
    assert flows["sliced"]["normalized"]["bytes"] == pytest.approx(
        flows["sliced"]["total"]["bytes"] / flows["layer_by_layer"]["total"]["bytes"])
    assert flows["sliced"]["total"]["beats"] == sum(
        v["beats"] for k, v in res["layer_engine_transfers"].items()
        if k not in ("read", "write"))
    # recomputing q saves its write: |q| = |x| beats, less Wq read again
    q = res["schedules"]["layer_by_layer"]["q_variants"]
    x_beats = 3136 * 8
    assert q["store"]["beats"] - q["recompute"]["beats"] == x_beats - 520
    # the exact overlap of 28 x 14 slices: rows 8, columns 10
    assert res["exact_overlap"]["required_rows_cols"] == [8, 10]
    # datapath alone, windows cost more than 49 keys' corners; per-operator and [20]
    # exist in the layer scope only
    dp = res["scopes"]["datapath"]["dataflows"]
    assert dp["sliced"]["normalized"]["beats"] > 1.0
    assert "dcn" not in dp and "layer_by_layer_ops" not in dp


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
