"""The search's PyTorch attention (defslice.nas.dat_torch) against the NumPy layer
(defslice.model.dat_layer), unsliced and sliced, its fast paths, and DAT checkpoints."""

import numpy as np
import pytest
import torch
from dat_reference import reference_and_params, rel_err
from torch.nn import functional as F

from defslice.errors import InputError
from defslice.model.dat_layer import DatLayerSpec, dat_layer_forward, dat_layer_trace
from defslice.model.slicing import SliceGrid
from defslice.nas.dat_torch import (
    DatClassifier,
    DatSpec,
    DAttention,
    SliceLayout,
    load_dat_attention,
)

torch.set_num_threads(1)

SPECS = {
    # non-square map, 2 groups of 2 heads, DAT++ clamp mode with offsets that hit it
    "clamp": dict(img_size=(20, 28), dim=16, heads=4, groups=2, stride=4, offset_kernel=5,
                  offset_range_factor=-1.0, use_pe=True, gain=8.0),
    # tanh mode with a factor of 2, odd sides, one group
    "tanh": dict(img_size=(17, 13), dim=12, heads=3, groups=1, stride=4, offset_kernel=7,
                 offset_range_factor=2.0, use_pe=True, gain=4.0),
    # the dat56 shape (stride 8, 9x9 kernel) at a small width
    "dat56": dict(img_size=(56, 56), dim=8, heads=2, groups=1, stride=8, offset_kernel=9,
                  offset_range_factor=-1.0, use_pe=True, gain=3.0),
}
SLICINGS = [(7, 10, 1), (5, 6, 0), (8, 8, 2), (12, 9, 3)]


def attention(name, seed=0):
    """A float64 DAttention of ``SPECS[name]`` with random weights, its NumPy params."""
    kw = dict(SPECS[name])
    gain = kw.pop("gain")
    torch.manual_seed(seed)
    spec = DatSpec(in_chans=kw["dim"], stem_kernel=1, stem_stride=1, mlp_ratio=0.0, **kw)
    att = DAttention(spec).double().eval()
    with torch.no_grad():
        for pname, p in att.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if "weight" in pname else 0.2))
        att.conv_offset[3].weight.mul_(gain)
        att.rpe_table.normal_(0, 1.0)
    params = {k: v.detach().numpy() for k, v in att.state_dict().items()}
    x = torch.randn(2, kw["dim"], *spec.map_size, dtype=torch.float64)
    return att, params, x


@pytest.mark.parametrize("name", sorted(SPECS))
def test_unsliced_torch_layer_equals_the_numpy_layer(name):
    att, params, x = attention(name)
    with torch.no_grad():
        y = att(x).numpy()
    assert rel_err(y, dat_layer_forward(x.numpy(), params, att.spec.layer)) <= 1e-12


@pytest.mark.parametrize("name", ["clamp", "tanh"])
@pytest.mark.parametrize("sub", SLICINGS)
@pytest.mark.parametrize("clamp", ["clamp", "drop"])
def test_sliced_torch_layer_equals_the_numpy_layer(name, sub, clamp):
    att, params, x = attention(name)
    grid = SliceGrid([att.spec.map_size], *sub, clamp=clamp)
    lay = SliceLayout.build(grid, att.spec.layer)
    with torch.no_grad():
        y = att(x, lay).numpy()
        pos = att.positions(att.prepare(x), lay).numpy()
    tr = dat_layer_trace(x.numpy(), params, att.spec.layer, grid)
    assert rel_err(y, tr.y) <= 1e-12
    np.testing.assert_allclose(pos, tr.positions, atol=1e-12)
    if sub[2] <= 1:   # a small overlap cuts offset convolutions and clamps keys
        assert lay.conv_blocks
        assert clamp == "drop" or tr.window_clamped.any()


@pytest.mark.parametrize("sub", [(28, 14, 0), (28, 14, 2), (8, 8, 0), (16, 16, 1)])
def test_sliced_dat56_shape_with_offset_fields_outside_the_window(sub):
    """On DAT's 56x56 grid with stride 8 some keys' offset convolutions lie wholly
    outside their slice's window (key column 1 sits at pixel 14, its taps at 4..12)."""
    att, params, x = attention("dat56")
    grid = SliceGrid([(56, 56)], *sub)
    with torch.no_grad():
        y = att(x, SliceLayout.build(grid, att.spec.layer)).numpy()
    assert rel_err(y, dat_layer_forward(x.numpy(), params, att.spec.layer, grid)) <= 1e-12


@pytest.mark.parametrize("name", sorted(SPECS))
def test_one_slice_over_the_map_is_exactly_the_unsliced_torch_layer(name):
    att, _, x = attention(name)
    H, W = att.spec.map_size
    with torch.no_grad():
        full = att(x)
        for overlap in (0, 3):
            lay = SliceLayout.build(SliceGrid([(H, W)], H, W, overlap), att.spec.layer)
            assert not lay.conv_blocks
            assert torch.equal(att(x, lay), full)


@pytest.mark.parametrize("sub", [None, *SLICINGS[:3]])
def test_pooled_attention_is_the_cell_average(sub):
    att, _, x = attention("clamp")
    lay = None if sub is None else SliceLayout.build(SliceGrid([att.spec.map_size], *sub),
                                                       att.spec.layer)
    with torch.no_grad():
        prep = att.prepare(x)
        full = att.attend(prep, lay)
        for g in (1, 2, 4):
            pooled = att.attend(prep, lay, pooled=g)
            torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(full, g), rtol=1e-12,
                                       atol=1e-12)


def test_cached_classifier_path_equals_forward_on_the_aligned_layer():
    torch.manual_seed(3)
    spec = DatSpec(in_chans=1, img_size=(20, 28), stem_kernel=3, stem_stride=1, dim=16,
                   heads=4, groups=2, stride=4, offset_kernel=5, mlp_ratio=0.0,
                   norm_before_pool=False, pool_grid=2, num_classes=3)
    m = DatClassifier(spec).double().eval()
    with torch.no_grad():
        m.stages[0].attns[0].conv_offset[3].weight.mul_(20)
        img = torch.randn(3, 1, 20, 28, dtype=torch.float64)
        cache = m.cache_inputs(img)
        for sub in [(20, 28, 0), *SLICINGS]:
            lay = m.layout(*sub)
            torch.testing.assert_close(m.forward_cached(cache, lay), m(img, lay),
                                       rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(m.forward_cached(cache, None), m(img), rtol=1e-10,
                                   atol=1e-10)


def test_gradients_flow_through_the_window_limited_offsets():
    att, _, x = attention("clamp")
    lay = SliceLayout.build(SliceGrid([att.spec.map_size], 7, 10, 1), att.spec.layer)
    att(x, lay).square().sum().backward()
    for p in (att.conv_offset[0].weight, att.conv_offset[3].weight, att.rpe_table):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_dat_checkpoint_stage1_attention_computes_what_dat_computes():
    """A synthetic DAT++ state dict (stage 1's deformable block is ``stages.0.attns.1``,
    block 0 is neighbourhood attention) loaded into the search's layer."""
    ref, _, params, x = reference_and_params("clamp-2groups")
    with torch.no_grad():
        y_dat, _ = ref(x)
    sd = {f"stages.0.attns.1.{k}": v.clone() for k, v in ref.state_dict().items()}
    sd.update({"patch_proj.0.weight": torch.zeros(64, 3, 3, 3),
               "stages.0.attns.0.qkv.weight": torch.zeros(48, 16),
               "stages.0.layer_norms.0.norm.weight": torch.ones(16),
               "stages.1.attns.1.conv_offset.0.weight": torch.zeros(16, 1, 7, 7)})
    spec = DatSpec(in_chans=16, img_size=(20, 28), stem_kernel=1, stem_stride=1, dim=16,
                   heads=4, groups=2, stride=4, offset_kernel=5, offset_range_factor=-1.0,
                   use_pe=True, mlp_ratio=0.0)
    att = DAttention(spec).double().eval()
    loaded = load_dat_attention(att, sd)
    assert sorted(loaded) == sorted(f"stages.0.attns.1.{k}" for k in params)
    with torch.no_grad():
        assert rel_err(att(x).numpy(), y_dat.numpy()) <= 1e-12
    # a checkpoint of another shape or without the block is refused by name
    bad = {**sd, "stages.0.attns.1.rpe_table": torch.zeros(4, 3, 3)}
    with pytest.raises(InputError, match="stages.0.attns.1.rpe_table"):
        load_dat_attention(att, bad)
    with pytest.raises(InputError, match="stages.0.attns.1.proj_k.weight"):
        load_dat_attention(att, {k: v for k, v in sd.items() if "proj_k.weight" not in k})
    with pytest.raises(InputError, match="stage 2"):
        load_dat_attention(att, sd, stage=2)


def test_spec_follows_the_configuration_and_refuses_small_key_grids():
    from defslice import config as C
    from defslice.errors import ConfigError

    spec = DatSpec.from_config(C.preset("dat56-b"))
    assert (spec.dim, spec.heads, spec.groups, spec.key_grid) == (128, 4, 2, (7, 7))
    assert spec.layer == DatLayerSpec.from_config(C.preset("dat56-b"))
    with pytest.raises(ConfigError, match="model.stride"):
        DatSpec(img_size=(8, 8), stem_kernel=1, stem_stride=1, stride=8)
