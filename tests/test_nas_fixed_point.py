"""A trained classifier with its attention replaced by the bit-exact fixed-point layer."""

import copy

import numpy as np
import pytest
import torch

from defslice import config as C
from defslice.errors import InputError
from defslice.model.dat_layer import dat_layer_forward
from defslice.model.dat_layer_fixed import LayerFormats
from defslice.model.slicing import SliceGrid
from defslice.nas.dat_torch import DatClassifier, DatSpec
from defslice.nas.fixed_point import (
    FixedPointAttention,
    attention_inputs,
    attention_params,
    calibrate_classifier,
    fixed_point_accuracy,
    fixed_point_classifier,
)


def small_model(seed: int = 0) -> DatClassifier:
    torch.manual_seed(seed)
    spec = DatSpec(in_chans=1, img_size=(16, 20), stem_kernel=3, stem_stride=1, dim=16,
                   heads=2, groups=2, stride=4, offset_kernel=5, mlp_ratio=0.0,
                   norm_before_pool=False, num_classes=3)
    model = DatClassifier(spec).eval()
    with torch.no_grad():
        model.stages[0].attns[0].rpe_table.normal_(0, 0.5)
    return model


def test_fixed_point_block_tracks_the_float_block_sliced():
    model = small_model()
    attn = model.stages[0].attns[0]
    grid = SliceGrid([(16, 20)], 8, 10, 2)
    images = torch.randn(3, 1, 16, 20)
    x = attention_inputs(model, images)
    fm = LayerFormats.from_config(C.preset("dat56"))
    fm = calibrate_classifier(model, images, fm, grid)
    y = FixedPointAttention(attn, fm, grid)(torch.from_numpy(x).float()).double().numpy()
    ref = dat_layer_forward(x, attention_params(attn), attn.spec.layer, grid)
    with torch.no_grad():
        torch_ref = copy.deepcopy(attn).double()(torch.from_numpy(x),
                                                 model.layout(8, 10, 2)).numpy()
    np.testing.assert_allclose(ref, torch_ref, atol=1e-9)      # the float layers agree
    rel = np.sqrt(((y - ref) ** 2).mean() / (ref ** 2).mean())
    assert 0 < rel < 0.03
    with pytest.raises(InputError, match="sliced at construction"):
        FixedPointAttention(attn, fm, grid)(torch.zeros(1, 16, 16, 20), model.layout(8, 10, 2))


def test_swapped_classifier_is_a_copy_and_its_accuracy_is_reported():
    model = small_model(1)
    images, labels = torch.randn(10, 1, 16, 20), torch.randint(0, 3, (10,))
    fm = LayerFormats.from_config(C.preset("dat56"))
    swapped = fixed_point_classifier(model, fm)
    assert isinstance(swapped.stages[0].attns[0], FixedPointAttention)
    assert not swapped.supports_cache()
    assert not isinstance(model.stages[0].attns[0], FixedPointAttention)
    res = fixed_point_accuracy(model, images, labels, fm, SliceGrid([(16, 20)], 8, 10, 1),
                               batch=4)
    assert res["images"] == 10 and 0 <= res["agreement"] <= 1
    assert set(res["on_rail"]) >= {"q", "h", "z", "n", "k", "v", "logit", "o", "y"}
    assert res["difference"] == pytest.approx(res["fixed_accuracy"] - res["float_accuracy"])
    with torch.no_grad():
        assert (swapped(images).argmax(-1).eq(model(images).argmax(-1))).float().mean() \
            == pytest.approx(fixed_point_accuracy(model, images, labels, fm)["agreement"])
