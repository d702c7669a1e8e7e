"""The DAT++ layer in NumPy against a PyTorch ``DAttentionBaseline`` written from DAT's code
(``tests/dat_reference.py``), and its sliced semantics."""

import numpy as np
import pytest
import torch
from dat_reference import CASES, reference_and_params, rel_err

from defslice import config as C
from defslice.errors import ConfigError, InputError
from defslice.model.dat_layer import (
    DatLayerSlicing,
    DatLayerSpec,
    attention_params_from_state_dict,
    dat_layer_forward,
    dat_layer_trace,
    init_params,
    offset_conv_reach,
    required_overlap,
)
from defslice.model.slicing import SliceGrid

torch.set_num_threads(1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_layer_equals_dats_module(case):
    ref, spec, params, x = reference_and_params(case)
    with torch.no_grad():
        y_ref, pos_ref = ref(x)
    tr = dat_layer_trace(x.numpy(), params, spec)
    err = rel_err(tr.y, y_ref.numpy())
    assert err <= 1e-5
    # DAT builds its tanh-mode range (1/(Hk-1), 1/(Wk-1)) as a float32 tensor: only that
    # mode carries float32 rounding into a float64 run
    assert err <= (1e-6 if CASES[case]["factor"] > 0 else 1e-12)
    H, W = x.shape[2:]
    pos_px = (pos_ref.numpy() + 1) / 2 * np.array([H - 1, W - 1])
    np.testing.assert_allclose(tr.positions, pos_px.reshape(tr.positions.shape),
                               atol=1e-6 if CASES[case]["factor"] > 0 else 1e-10)
    if case == "clamp-2groups":
        assert tr.map_clamped.mean() > 0.2              # the clamp really acts
    if case == "tanh-factor2":                          # beyond the map: zero padding
        assert ((tr.positions < 0) | (tr.positions > np.array([H - 1, W - 1]))).any()


def test_float32_layer_follows_the_float32_module():
    ref, spec, params, x = reference_and_params("clamp-2groups", dtype=torch.float32)
    with torch.no_grad():
        y_ref, _ = ref(x)
    y = dat_layer_forward(x.numpy(), params, spec)
    assert y.dtype == np.float32 and rel_err(y, y_ref.numpy()) <= 5e-5   # measured 7.8e-6


@pytest.mark.parametrize("case", ["clamp-2groups", "tanh-factor2"])
@pytest.mark.parametrize("clamp", ["clamp", "drop"])
def test_one_slice_over_the_map_is_the_unsliced_layer(case, clamp):
    _, spec, params, x = reference_and_params(case)
    H, W = x.shape[2:]
    full = dat_layer_trace(x.numpy(), params, spec)
    for grid in (SliceGrid([(H, W)], H, W, 0, clamp), SliceGrid([(H, W)], H, W, 5, clamp)):
        one = dat_layer_trace(x.numpy(), params, spec, grid)
        assert np.array_equal(one.y, full.y)
        assert np.array_equal(one.bias, full.bias) and not one.window_clamped.any()


def test_overlap_of_the_reported_reach_makes_the_offsets_exact():
    """With the required overlap every key's offset network and position equal the
    unsliced ones bit for bit; one pixel less changes some key's offset."""
    _, spec, params, x = reference_and_params("dat56-shape")
    H, W = x.shape[2:]
    need = required_overlap(spec, H, W, 28, 14)
    assert need == (8, 10)                  # DAT's reference points drift from the taps
    assert offset_conv_reach(spec, H, W) == (14, 14)
    full = dat_layer_trace(x.numpy(), params, spec)
    exact = dat_layer_trace(x.numpy(), params, spec, SliceGrid([(H, W)], 28, 14, max(need)))
    assert np.array_equal(exact.offset_raw, full.offset_raw)
    assert np.array_equal(exact.positions, full.positions)
    short = dat_layer_trace(x.numpy(), params, spec, SliceGrid([(H, W)], 28, 14, 9))
    assert not np.array_equal(short.offset_raw, full.offset_raw)
    anywhere = dat_layer_trace(x.numpy(), params, spec, SliceGrid([(H, W)], 8, 8, 14))
    assert np.array_equal(anywhere.offset_raw, full.offset_raw)


def test_sliced_layer_confines_keys_and_queries_to_their_slice():
    _, spec, params, x = reference_and_params("clamp-2groups")
    H, W = x.shape[2:]
    grid = SliceGrid([(H, W)], 7, 10, 1)
    tr = dat_layer_trace(x.numpy(), params, spec, grid)
    lay = tr.slicing
    win = lay.window
    py, px = tr.sample_positions[..., 0], tr.sample_positions[..., 1]
    # clamped into [lo, hi]: every corner with weight lies inside the window
    assert (py >= lay.bounds[:, 0]).all() and (py <= lay.bounds[:, 1]).all()
    assert (px >= lay.bounds[:, 2]).all() and (px <= lay.bounds[:, 3]).all()
    assert tr.window_clamped.mean() > 0.1
    # a key's sample only depends on x inside its window
    x2 = x.numpy().copy()
    key = int(np.argmax(lay.key_slice == lay.key_slice[5]))
    r0, r1, c0, c1 = win[key]
    outside = np.ones((H, W), bool)
    outside[r0:r1, c0:c1] = False
    x2[:, :, outside] = 7.0
    tr2 = dat_layer_trace(x2, params, spec, grid)
    # q of the window is unchanged, so the offsets and the samples of that key are too
    np.testing.assert_array_equal(tr2.offset_raw.reshape(2, 2, -1, 2)[:, :, key],
                                  tr.offset_raw.reshape(2, 2, -1, 2)[:, :, key])
    np.testing.assert_array_equal(tr2.sampled[..., key], tr.sampled[..., key])
    # queries attend to keys of their slice only, key-less slices give y = proj_out.bias
    own = lay.query_slice[:, None] == lay.key_slice[None, :]
    assert (tr.probs[..., ~own] == 0).all()
    has_key = own.any(1)
    np.testing.assert_allclose(tr.probs.sum(-1)[..., has_key], 1.0, atol=1e-12)
    if (~has_key).any():
        y = tr.y.reshape(2, x.shape[1], -1)[..., ~has_key]
        np.testing.assert_allclose(y, np.broadcast_to(params["proj_out.bias"][None, :, None],
                                                      y.shape), atol=1e-12)


def test_query_without_keys_has_zero_attention_output():
    _, spec, params, x = reference_and_params("factor0-k=s-nope")
    # keys of a 12-row map with 3 key rows: reference rows 2.75, 8.25, 13.75 -> pixel rows
    # 3, 8, 11: with 2-row slices, rows 0-1, 4-5, 6-7 and 10-11... hold no key row
    tr = dat_layer_trace(x.numpy(), params, spec, SliceGrid([(12, 16)], 2, 16, 0))
    has_key = (tr.slicing.query_slice[:, None] == tr.slicing.key_slice[None, :]).any(1)
    assert (~has_key).sum() > 0
    assert (tr.attn_out.reshape(2, 8, -1)[..., ~has_key] == 0).all()


def test_from_config_and_validation():
    spec = DatLayerSpec.from_config(C.preset("dat56-b"))
    assert spec == DatLayerSpec(heads=4, groups=2, stride=8, offset_kernel=9,
                                offset_range_factor=-1.0, use_pe=True)
    assert spec.key_grid(56, 56) == (7, 7)
    with pytest.raises(TypeError):
        DatLayerSpec(4, 2)                   # keyword construction only
    with pytest.raises(ConfigError, match="DatLayerSpec.groups"):
        DatLayerSpec(heads=3, groups=2)
    with pytest.raises(ConfigError, match="workload.kind"):
        DatLayerSpec.from_config(C.preset("tiny"))
    with pytest.raises(ConfigError, match="DatLayerSpec.stride"):
        spec.key_grid(8, 8)
    params = init_params(spec, 128, 56, 56)
    x = np.zeros((1, 128, 56, 56))
    with pytest.raises(InputError, match="conv_offset.3.weight"):
        dat_layer_forward(x, {**params, "conv_offset.3.weight": np.zeros((2, 64))}, spec)
    with pytest.raises(InputError, match="rpe_table"):
        dat_layer_forward(x, {k: v for k, v in params.items() if k != "rpe_table"}, spec)
    with pytest.raises(InputError, match="float32 or float64"):
        dat_layer_forward(x.astype(np.int32), params, spec)
    with pytest.raises(InputError, match="slice grid"):
        dat_layer_forward(x, params, spec, SliceGrid([(28, 28)], 14, 14, 0))
    # the configuration's slicing is accepted as it is
    a = dat_layer_forward(x[:, :, :56, :56] + 1, params, spec, C.preset("dat56-b").slicing)
    b = dat_layer_forward(x + 1, params, spec, SliceGrid.from_config(C.preset("dat56-b")))
    assert np.array_equal(a, b)


def test_checkpoint_parameters_are_read_under_dats_names():
    _, spec, params, x = reference_and_params("clamp-2groups")
    sd = {f"stages.0.attns.1.{k}": torch.from_numpy(v) for k, v in params.items()}
    sd.update({"stages.0.attns.0.qkv.weight": torch.zeros(3), "patch_proj.0.weight":
               torch.zeros(2), "stages.1.attns.1.conv_offset.0.weight": torch.zeros(1)})
    got = attention_params_from_state_dict(sd)
    assert set(got) == set(params)
    assert np.array_equal(dat_layer_forward(x.numpy(), got, spec),
                          dat_layer_forward(x.numpy(), params, spec))
    with pytest.raises(InputError, match="stages.2.attns"):
        attention_params_from_state_dict(sd, stage=2)
    with pytest.raises(InputError, match=r"stages.0.attns.0.conv_offset"):
        attention_params_from_state_dict(sd, block=0)


def test_slicing_tables_of_the_dat56_preset():
    cfg = C.preset("dat56")
    spec = DatLayerSpec.from_config(cfg)
    lay = DatLayerSlicing.build(spec, 56, 56, cfg.slicing)
    # reference points at 4.58 + 9.17 i pixels: key columns 0 | 1, 2 | 3, 4 | 5, 6
    assert lay.key_slice.reshape(7, 7)[0].tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert lay.key_slice.reshape(7, 7)[:, 0].tolist() == [0, 0, 0, 4, 4, 4, 4]
    assert lay.grid.max_window(0) == (30, 18)


def test_model_command_reports_the_layer(tmp_path):
    import json

    from defslice.cli import main

    assert main(["model", "--preset", "dat56", "--out", str(tmp_path / "a")]) == 0
    lay = json.loads((tmp_path / "a" / "model.json").read_text())["layer"]
    assert lay["required_overlap_px"] == [8, 10] and lay["offset_conv_reach_px"] == [14, 14]
    assert lay["windows"]["max"] == [30, 18] and lay["windows"]["slices"] == 8
    assert not lay["offset_network_exact"] and lay["keys_with_cut_offset_conv"] == 25
    assert 0 < lay["window_clamped_fraction"] < 1 and 0 < lay["map_clamped_fraction"] < 1
    assert lay["sliced_vs_unsliced_max_abs"] > 0
    assert "## DAT++ layer" in (tmp_path / "a" / "model.md").read_text()
    # one slice over the map: the layer is the unsliced one
    cfg = C.preset("dat56").replace(name="one-slice",
                                    slicing={"slice_h": 56, "slice_w": 56, "overlap": 0})
    C.dump(cfg, tmp_path / "one.toml")
    assert main(["model", "--config", str(tmp_path / "one.toml"), "--out",
                 str(tmp_path / "b")]) == 0
    lay = json.loads((tmp_path / "b" / "model.json").read_text())["layer"]
    assert lay["sliced_vs_unsliced_max_abs"] == 0 and lay["window_clamped_fraction"] == 0
    assert lay["offset_network_exact"] and lay["required_overlap_px"] == [0, 0]
