"""Float MSDA against PyTorch grid_sample (forward) and autograd / finite differences
(backward), on awkward shapes and locations."""

import numpy as np
import pytest
import torch

from defslice.errors import InputError
from defslice.model.dat import (
    dat_grid_to_locations,
    dat_inputs,
    positions_from_offsets,
    reference_points_px,
)
from defslice.model.msda import msda_backward, msda_forward
from defslice.model.torch_reference import msda_torch

CASES = [
    # shapes (non-square, one and several levels), N, M, D (not powers of 2), Lq, P
    ([[6, 9], [3, 5], [2, 2]], 2, 3, 5, 7, 4),
    ([[5, 3]], 1, 1, 3, 11, 2),
    ([[16, 12], [8, 6]], 1, 2, 8, 9, 1),
]


def make_case(shapes, n, m, d, lq, p, dtype, seed=0, lo=-0.3, hi=1.3):
    rng = np.random.default_rng(seed)
    shapes = np.array(shapes)
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    n_lvl = len(shapes)
    value = rng.standard_normal((n, s, m, d)).astype(dtype)
    loc = rng.uniform(lo, hi, size=(n, lq, m, n_lvl, p, 2)).astype(dtype)
    attn = rng.uniform(size=(n, lq, m, n_lvl, p)).astype(dtype)
    return value, shapes, loc, attn


def put_border_points(loc, shapes):
    """Locations exactly on the map border, on pixel centres and at the -1 / H limits."""
    h, w = shapes[0]
    specials = [(0.0, 0.0), (1.0, 1.0), (0.5 / w, 0.5 / h), (1 - 0.5 / w, 1 - 0.5 / h),
                (-0.5 / w, 0.3), (0.3, (h + 0.5) / h), (2 / w, 3 / h)]
    flat = loc.reshape(-1, loc.shape[3], loc.shape[4], 2)
    for i, xy in enumerate(specials):
        flat[i % flat.shape[0], 0, i % loc.shape[4]] = xy
    return loc


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_grid_sample(case, dtype, tol):
    value, shapes, loc, attn = make_case(*case, dtype)
    put_border_points(loc, shapes)
    ours = msda_forward(value, shapes, loc, attn)
    ref = msda_torch(*(torch.from_numpy(a) for a in (value, shapes, loc, attn))).numpy()
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)


def test_far_away_locations_give_zero_not_nan():
    value, shapes, loc, attn = make_case(*CASES[0], np.float64)
    loc[:, 0] = 1e30
    loc[:, 1] = -np.inf
    loc[:, 2, ..., 0] = np.inf
    out = msda_forward(value, shapes, loc, attn)
    assert np.isfinite(out).all()
    assert (out[:, :3] == 0).all()


def test_nan_locations_and_bad_shapes_are_named():
    value, shapes, loc, attn = make_case(*CASES[0], np.float64)
    loc[0, 0, 0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="sampling_locations contains NaN"):
        msda_forward(value, shapes, loc, attn)
    with pytest.raises(InputError, match="spatial_shapes"):
        msda_forward(value, shapes[:2], loc[:, :, :, :2], attn[:, :, :, :2])
    with pytest.raises(InputError, match="attention_weights must be"):
        msda_forward(value, shapes, np.zeros_like(loc), attn[..., :1])
    with pytest.raises(InputError, match="value must be float32 or float64"):
        msda_forward(value.astype(np.int32), shapes, np.zeros_like(loc), attn)


def _pixels(loc, shapes):
    hw = np.asarray(shapes, dtype=np.float64)[:, None, :]
    return loc[..., 0] * hw[..., 1] - 0.5, loc[..., 1] * hw[..., 0] - 0.5, hw


def _on_strict_border(loc, shapes):
    """Points whose pixel coordinate is exactly -1 or H (W): the CUDA kernel's guard
    excludes them, autograd through grid_sample gives a one-sided derivative there."""
    px, py, hw = _pixels(loc, shapes)
    return (px == -1) | (py == -1) | (px == hw[..., 1]) | (py == hw[..., 0])


def _on_kink(loc, shapes):
    """Points on an integer pixel coordinate, where bilinear interpolation has only
    one-sided derivatives (which side a float computation lands on is rounding luck)."""
    px, py, _ = _pixels(loc, shapes)
    return (px == np.floor(px)) | (py == np.floor(py))


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_autograd(case):
    value, shapes, loc, attn = make_case(*case, np.float64, seed=1, lo=-0.1, hi=1.1)
    put_border_points(loc, shapes)
    g = np.random.default_rng(2).standard_normal(msda_forward(value, shapes, loc, attn).shape)
    gv, gl, ga = msda_backward(value, shapes, loc, attn, g)
    tv, tl, ta = (torch.tensor(a, requires_grad=True) for a in (value, loc, attn))
    msda_torch(tv, torch.tensor(shapes), tl, ta).backward(torch.tensor(g))
    border = _on_strict_border(loc, shapes)
    assert border.any()  # the special points include both strict borders
    np.testing.assert_allclose(gv, tv.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ga, ta.grad.numpy(), atol=1e-12)
    # Location gradients agree everywhere except exactly on -1 / H, where the kernel's
    # strict guard gives zero (checked below), and on kinks (checked below).
    assert (gl[border] == 0).all()
    keep = ~(border | _on_kink(loc, shapes))[..., None].repeat(2, axis=-1)
    assert keep.mean() > 0.75  # most points are compared; specials are a few per case
    np.testing.assert_allclose(gl[keep], tl.grad.numpy()[keep], atol=1e-10)


def test_backward_follows_the_cuda_kernel_guard_on_the_minus_one_border():
    shapes = np.array([[4, 4]])
    value = np.random.default_rng(0).standard_normal((1, 16, 1, 2))
    loc = np.full((1, 1, 1, 1, 1, 2), 0.5)
    loc[..., 1] = -0.5 / 4  # y pixel = -1 exactly: corner row 0 has weight 0
    attn = np.ones((1, 1, 1, 1, 1))
    _, gl, ga = msda_backward(value, shapes, loc, attn, np.ones((1, 1, 2)))
    assert (gl == 0).all() and (ga == 0).all()
    # autograd through grid_sample differs here (one-sided derivative into row 0)
    tl = torch.tensor(loc, requires_grad=True)
    msda_torch(torch.tensor(value), torch.tensor(shapes), tl, torch.tensor(attn)).sum().backward()
    assert tl.grad[..., 1].abs().item() > 0


def test_location_gradient_on_a_kink_is_the_right_sided_derivative():
    shapes = np.array([[4, 5]])
    value = np.random.default_rng(7).standard_normal((1, 20, 1, 3))
    attn = np.ones((1, 1, 1, 1, 1))
    loc = np.zeros((1, 1, 1, 1, 1, 2))
    loc[..., 0], loc[..., 1] = 2.5 / 5, 1.5 / 4  # pixel (x, y) = (2, 1) exactly
    g = np.ones((1, 1, 3))
    _, gl, _ = msda_backward(value, shapes, loc, attn, g)
    eps = 1e-7
    for axis in (0, 1):
        up = loc.copy()
        up[..., axis] += eps
        right = ((msda_forward(value, shapes, up, attn) - msda_forward(value, shapes, loc,
                                                                       attn)).sum() / eps)
        assert gl[..., axis].item() == pytest.approx(right, rel=1e-5)


@pytest.mark.parametrize("case", CASES[:2])
def test_backward_matches_finite_differences(case):
    value, shapes, loc, attn = make_case(*case, np.float64, seed=3, lo=0.02, hi=0.98)
    rng = np.random.default_rng(4)
    g = rng.standard_normal(msda_forward(value, shapes, loc, attn).shape)
    grads = msda_backward(value, shapes, loc, attn, g)

    def loss(v, lc, a):
        return float((msda_forward(v, shapes, lc, a) * g).sum())

    eps = 1e-6
    for k, arr in enumerate((value, loc, attn)):
        for _ in range(12):
            i = tuple(rng.integers(0, s) for s in arr.shape)
            plus, minus = [x.copy() for x in (value, loc, attn)], [x.copy() for x in
                                                                   (value, loc, attn)]
            plus[k][i] += eps
            minus[k][i] -= eps
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            assert grads[k][i] == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_dat_sampling_matches_grid_sample_align_corners_true():
    rng = np.random.default_rng(5)
    n, g, d, H, W, hk, wk = 2, 2, 3, 10, 12, 3, 4
    feats = rng.standard_normal((n, H, W, g, d))
    # A DAT-style normalized grid in [-1, 1] sampled with align_corners=True...
    grid = rng.uniform(-1.1, 1.1, size=(n, g, hk, wk, 2))
    x = torch.tensor(feats).permute(0, 3, 4, 1, 2).reshape(n * g, d, H, W)
    ref = torch.nn.functional.grid_sample(x, torch.tensor(grid).reshape(n * g, hk, wk, 2),
                                          mode="bilinear", align_corners=True)
    ref = ref.reshape(n, g, d, hk * wk).permute(0, 3, 1, 2).reshape(n, hk * wk, g * d)
    # ...is the same sampling once converted to this project's locations.
    loc = dat_grid_to_locations(grid, H, W).reshape(n, g, hk * wk, 2).transpose(0, 2, 1, 3)
    ours = msda_forward(*dat_inputs(feats, loc[:, :, :, None, None, :]))
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-12)


@pytest.mark.parametrize("factor", [-1.0, 0.0, 2.0])
def test_dat_positions_follow_dats_normalized_formulas(factor):
    """Reference points and both offset modes in pixels equal DAT's normalized grid
    (linspace(0.5, Hk - 0.5) / (Hk - 1) * 2 - 1, tanh * factor / (Hk - 1) or clamp to
    [-1, 1]) mapped by align_corners=True, on a non-square map."""
    H, W, hk, wk = 56, 40, 7, 5
    raw = np.random.default_rng(6).standard_normal((2, 1, hk, wk, 2)) * 3
    pos = positions_from_offsets(raw, H, W, factor)
    ry, rx = np.meshgrid(np.linspace(0.5, hk - 0.5, hk) / (hk - 1) * 2 - 1,
                         np.linspace(0.5, wk - 0.5, wk) / (wk - 1) * 2 - 1, indexing="ij")
    ref = np.stack([ry, rx], -1)
    if factor >= 0:
        g = ref + np.tanh(raw) * np.array([1 / (hk - 1), 1 / (wk - 1)]) * factor
    else:
        g = np.clip(ref + raw, -1, 1)
    np.testing.assert_allclose(pos, (g + 1) / 2 * np.array([H - 1, W - 1]), atol=1e-12)
    np.testing.assert_allclose(reference_points_px(H, W, hk, wk)[-1, -1],
                               [6.5 / 6 * 55, 4.5 / 4 * 39])  # beyond the map, as in DAT
    if factor < 0:
        assert pos.min() == 0 and pos[..., 0].max() == H - 1  # the clamp is reached
