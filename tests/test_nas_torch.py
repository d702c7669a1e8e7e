"""NAS accuracy objective in PyTorch: the sliced DAT layer, the evaluators, fine-tuning,
and the command line, on a 16x16 DAT map and generated data."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from defslice import config as C
from defslice.cli import main
from defslice.errors import ConfigError, InputError
from defslice.model.dat import pixels_to_locations, reference_points_px
from defslice.model.sliced import sliced_forward
from defslice.model.slicing import SliceGrid
from defslice.nas.alpha import adaptive_alpha_divergence, alpha_divergence
from defslice.nas.checkpoint import load_dat_checkpoint
from defslice.nas.dat_torch import DatClassifier, DatSpec, SliceLayout, _bilinear
from defslice.nas.data import digits
from defslice.nas.evaluators import SubnetAccuracy, digits_objective, imagefolder_objective
from defslice.nas.finetune import finetune_supernet, lr_factor
from defslice.nas.space import SearchSpace, SubNet
from defslice.nas.train import train_classifier

torch.set_num_threads(1)

TINY_DAT = C.Config(
    name="tiny-dat",
    workload=C.WorkloadConfig(kind="dat", levels=((16, 16),), heads=1, channels=8, points=1,
                              stride=4, offset_range_factor=2.0),
    slicing=C.SlicingConfig(slice_h=8, slice_w=8, overlap=1),
    hw=C.HwConfig(lanes=2),
    nas=C.NasConfig(slice_h_range=(4, 6), slice_w_range=(4, 6), overlaps=(0, 2),
                    generations=3, samples_per_generation=4, train_epochs=12,
                    finetune_epochs=1, finetune_images=64, digits_margin=2,
                    digits_val_shifts=2, evaluator="digits", resource="eq3"),
)


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    spec = DatSpec.from_config(TINY_DAT, **{"in_chans": 1, "mlp_ratio": 0.0,
                                            "norm_before_pool": False, "pool_grid": 4,
                                            "num_classes": 3, **kw})
    m = DatClassifier(spec).eval()
    with torch.no_grad():  # large offsets so that slicing clamps many points
        m.stages[0].attns[0].conv_offset[3].weight.normal_(0, 3.0)
    return m


def test_bilinear_is_grid_sample_with_zero_padding():
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 10, 12)
    py, px = torch.rand(2, 30) * 14 - 2, torch.rand(2, 30) * 16 - 2
    out = _bilinear(feat, py, px, torch.tensor([[0, 10, 0, 12]]).expand(30, 4))
    grid = torch.stack([(px + 0.5) / 12 * 2 - 1, (py + 0.5) / 10 * 2 - 1], -1)[:, None]
    ref = F.grid_sample(feat, grid, align_corners=False, padding_mode="zeros")[:, :, 0]
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("sub", [(4, 4, 0), (5, 6, 1), (8, 8, 2), (6, 16, 0)])
@pytest.mark.parametrize("clamp", ["clamp", "drop"])
def test_sampled_keys_match_the_golden_sliced_model(sub, clamp):
    """The torch layer samples each key exactly as defslice.model.sliced does."""
    m = tiny_model().double()
    attn = m.stages[0].attns[0]
    x = torch.randn(1, 8, 16, 16, dtype=torch.float64)
    pos = attn.positions(attn.prepare(x), None)  # (1, 1, 16, 2) as (y, x) pixels
    grid = SliceGrid([(16, 16)], *sub, clamp=clamp)
    keys, _, _ = attn.sample_keys(x, pos, SliceLayout.build(grid, m.spec.layer))
    value = x.permute(0, 2, 3, 1).reshape(1, 256, 1, 8).numpy()
    loc = pixels_to_locations(pos[0, 0].detach().numpy(), 16, 16)    # normalized (x, y)
    ref = pixels_to_locations(reference_points_px(16, 16, 4, 4).reshape(-1, 2), 16, 16)
    golden, stats = sliced_forward(value, np.array([[16, 16]]), loc[None, :, None, None, None],
                                   np.ones((1, 16, 1, 1, 1)), ref[None], grid)
    np.testing.assert_allclose(keys[0].T.detach().numpy(), golden[0], atol=1e-12)
    assert stats.clamped_fraction > 0  # the case really exercises clamping


@pytest.mark.parametrize("kw", [{}, {"pool_grid": 1}, {"pool_grid": 1, "stem_kernel": 1}])
def test_one_slice_is_the_unsliced_model_and_cached_path_is_exact(kw):
    """Also with the digits objective's global pool (the position bias is then sampled
    slice by slice in the cached path)."""
    m = tiny_model(use_pe=True, **kw)
    img = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        full = m(img)
        torch.testing.assert_close(m(img, m.layout(16, 16, 0)), full)
        for sub in [(4, 4, 0), (5, 6, 2), (16, 8, 1)]:
            lay = m.layout(*sub)
            torch.testing.assert_close(m.forward_cached(m.cache_inputs(img), lay),
                                       m(img, lay), atol=1e-5, rtol=1e-5)
        assert (m(img, m.layout(4, 4, 0)) - full).abs().max() > 1e-3


def test_position_bias_matches_per_image_sampling_with_groups():
    """The bias samples the shared table once per group; the reference repeats the table
    per image and samples it as DAT's code does (normalized grids, displacement * 0.5).
    Several images, groups and heads per group, a non-square map."""
    torch.manual_seed(1)
    spec = DatSpec(in_chans=1, img_size=(16, 12), stem_kernel=3, stem_stride=1, dim=16,
                   heads=4, groups=2, stride=4, use_pe=True, mlp_ratio=0.0)
    att = DatClassifier(spec).stages[0].attns[0]
    with torch.no_grad():
        att.rpe_table.normal_()
    B, G, H, W, nk = 3, 2, 16, 12, 12
    pos = torch.rand(B * G, nk, 2) * 18 - 1
    qy, qx = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32), indexing="ij")
    qg = torch.stack([qx.reshape(-1) / (W - 1), qy.reshape(-1) / (H - 1)], -1) * 2 - 1
    kg = torch.stack([pos[..., 1] / (W - 1), pos[..., 0] / (H - 1)], -1) * 2 - 1
    disp = (qg[None, :, None] - kg[:, None]) * 0.5
    table = att.rpe_table.reshape(G, 2, 2 * H - 1, 2 * W - 1).repeat(B, 1, 1, 1)
    ref = F.grid_sample(table, disp, mode="bilinear", align_corners=True)
    with torch.no_grad():
        torch.testing.assert_close(att._rpe_bias(pos, B, H, W), ref.reshape(B * 4, H * W, nk))
        rows = torch.tensor([0, 5, 77, 191])
        torch.testing.assert_close(att._rpe_bias(pos, B, H, W, rows),
                                   ref.reshape(B * 4, H * W, nk)[:, rows])


def test_digits_placements_and_shift_augmentation():
    train, val = digits((24, 24), seed=3, margin=4, val_shifts=3)
    bg = float(train.images[0, 0, 0, 0])
    # the digit fills 16x16 in the middle; 4 background pixels on every side
    for imgs in (train.images, val.images[:len(val) // 3]):
        for border in (imgs[..., :4, :], imgs[..., -4:, :], imgs[..., :4], imgs[..., -4:]):
            assert (border == bg).all()
    n = len(val) // 3
    assert len(val) == 3 * n and (val.labels[:n] == val.labels[n:2 * n]).all()
    # the later placements are the centred digits moved by at most the margin
    moved = val.images[n:2 * n]
    assert not torch.equal(moved, val.images[:n])
    for i in range(0, n, 37):
        assert any(torch.equal(moved[i], torch.roll(val.images[i], (dy, dx), (1, 2)))
                   for dy in range(-4, 5) for dx in range(-4, 5))
    # seeded: the same validation set again; training batches are shifted copies
    assert torch.equal(digits((24, 24), seed=3, margin=4, val_shifts=3)[1].images,
                       val.images)
    aug = train.augment(train.images[:8], torch.Generator().manual_seed(0))
    assert aug.shape == (8, 1, 24, 24) and not torch.equal(aug, train.images[:8])
    assert torch.allclose(aug.sum((1, 2, 3)), train.images[:8].sum((1, 2, 3)), atol=1e-4)
    with pytest.raises(InputError, match="margin 9"):
        digits((24, 24), margin=9)


def test_digits_margin_too_large_is_a_config_error():
    cfg = TINY_DAT.replace(nas={"digits_margin": 5})
    assert "margin" not in C.dumps(TINY_DAT.replace(nas={"digits_margin": None}))
    with pytest.raises(ConfigError, match=r"nas\.digits_margin.*0\.\.4"):
        digits_objective(cfg)
    with pytest.raises(ConfigError, match="nas.digits_val_shifts"):
        C.NasConfig(digits_val_shifts=0)


def test_query_without_keys_gets_zero_attention():
    # DAT's key rows on 16 rows: 2.5, 7.5, 12.5, 17.5, in pixel rows 3, 8, 13, 15 (the
    # last beyond the map, in the nearest slice): 3-row slices leave rows 0..2 without
    # a key row.
    m = tiny_model()
    lay = SliceLayout.build(SliceGrid([(16, 16)], 3, 16, 0), m.spec.layer)
    assert float(lay.has_key.min()) == 0.0
    with torch.no_grad():
        out = m(torch.randn(2, 1, 16, 16), lay)
    assert torch.isfinite(out).all()


def _value(p, q, alpha, **kw):
    return alpha_divergence(p, q, alpha, **kw)[0]


def test_alpha_divergence():
    torch.manual_seed(0)
    p, q = torch.randn(6, 5), torch.randn(6, 5)
    assert torch.allclose(_value(p, p, -1.0), torch.zeros(6), atol=1e-6)
    kl = (p.softmax(-1) * (p.log_softmax(-1) - q.log_softmax(-1))).sum(-1)
    torch.testing.assert_close(_value(p, q, 1.0), kl)
    near = _value(p, q, 0.999, iw_clip=1e9)
    torch.testing.assert_close(near, kl, atol=2e-3, rtol=2e-3)
    rkl = (q.softmax(-1) * (q.log_softmax(-1) - p.log_softmax(-1))).sum(-1)
    torch.testing.assert_close(_value(p, q, 0.0, iw_clip=1e9), rkl)
    assert (_value(p, q, -1.0) >= 0).all()
    assert adaptive_alpha_divergence(p, q, -1.0, 1.0) >= kl.mean() - 1e-6


def _exact_divergence(p, q, alpha):
    """D_alpha with autograd through everything, no clip (the reference gradient)."""
    log_p, log_q = p.log_softmax(-1), q.log_softmax(-1)
    return (log_q.exp() * (torch.exp(alpha * (log_p - log_q)) - 1)).sum(-1) / (alpha * (alpha - 1))


def test_alpha_divergence_gradient_is_alphanets():
    torch.manual_seed(1)
    p = torch.randn(8, 10) * 3
    q0 = torch.randn(8, 10) * 3
    for alpha in (-1.0, 0.5, 2.0):
        # without a clip the surrogate's gradient is the divergence's exact gradient
        q = q0.clone().requires_grad_(True)
        value, sur = alpha_divergence(p, q, alpha, iw_clip=1e30)
        (g,) = torch.autograd.grad(sur.sum(), q)
        qe = q0.clone().requires_grad_(True)
        exact = _exact_divergence(p, qe, alpha)
        (ge,) = torch.autograd.grad(exact.sum(), qe)
        torch.testing.assert_close(value, exact.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g, ge, rtol=1e-4, atol=1e-5)
    # with the clip active (alpha = -1: w^-1 = q/p is clipped where the student's mass
    # far exceeds the teacher's), the gradient w.r.t. the student logits z is
    # -sum_i q_i rho_i d(log q_i)/dz_j = q_j (sum_i q_i rho_i - rho_j), rho from the
    # clipped weight; a clamp inside autograd would drop the clipped entries' share
    p = torch.tensor([[8.0, 0.0, 0.0]])
    q = torch.tensor([[0.0, 8.0, 0.0]], requires_grad=True)
    _, sur = alpha_divergence(p, q, -1.0, iw_clip=5.0)
    (g,) = torch.autograd.grad(sur.sum(), q)
    pp, qq = p.softmax(-1), q.detach().softmax(-1)
    iw = (qq / pp).clamp(max=5.0)
    assert iw[0, 1] == 5.0                                  # clipped
    rho = iw / -1.0 + 0.5
    torch.testing.assert_close(g, qq * ((qq * rho).sum(-1, keepdim=True) - rho))
    q2 = q.detach().clone().requires_grad_(True)
    log_q = q2.log_softmax(-1)
    clamped = (log_q.exp() * (torch.exp(log_q - p.log_softmax(-1)).clamp(max=5.0) - 1)).sum(-1) / 2
    (g_clamp,) = torch.autograd.grad(clamped.sum(), q2)
    assert float(g[0, 1]) > 1.5 * float(g_clamp[0, 1]) > 0
    loss = adaptive_alpha_divergence(p, q, -1.0, 1.0, iw_clip=5.0)
    # the adaptive loss's value is the mean of the larger divergence per sample
    vm, vp = _value(p, q, -1.0), _value(p, q, 1.0)
    torch.testing.assert_close(loss.detach(), torch.maximum(vm, vp).mean())


def _write_folder(root, n_per_class, seed):
    """Three classes of 16x16 PNGs: a bright left, middle or right band, plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(3):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 60, (16, 16)).astype(np.uint8)
            img[:, 5 * c:5 * c + 6] = 230
            Image.fromarray(img, "L").save(root / f"class_{c}" / f"{i}.png")


def test_imagefolder_evaluator_with_a_dat_checkpoint(tmp_path):
    _write_folder(tmp_path / "train", 12, 0)
    _write_folder(tmp_path / "val", 6, 1)
    from defslice.nas.data import image_folder

    m = tiny_model(use_pe=True, stem_kernel=1, stem_stride=1)
    tr = image_folder(tmp_path / "train", (16, 16), channels=1)
    train_classifier(m, tr.images, tr.labels, epochs=15, seed=0, batch=12, lr=5e-3)
    sd = {"model": {**m.state_dict(), "stages.1.attns.0.proj_q.weight": torch.zeros(2, 2)}}
    torch.save(sd, tmp_path / "ckpt.pth")
    cfg = TINY_DAT
    acc, meta = imagefolder_objective(cfg, tmp_path / "val", tmp_path / "ckpt.pth",
                                      img_size=(16, 16))
    assert meta["unknown_keys"] == ["stages.1.attns.0.proj_q.weight"]
    assert meta["missing_keys"] == [] and meta["mismatched_keys"] == []
    assert acc.model.spec.use_pe and acc.model.spec.in_chans == 1
    unsliced = acc(None)
    assert unsliced >= 0.9          # the bands are easy: the trained model separates them
    # a loaded model scores exactly like the original on the same folder
    direct = SubnetAccuracy(m, image_folder(tmp_path / "val", (16, 16), 1))
    assert direct(None) == unsliced
    assert direct(SubNet(4, 4, 0)) == acc(SubNet(4, 4, 0))
    with pytest.raises(InputError, match="does not exist"):
        imagefolder_objective(cfg, tmp_path / "nope", tmp_path / "ckpt.pth")


def test_checkpoint_mismatch_is_reported():
    m = tiny_model()
    sd = m.state_dict()
    sd["cls_head.weight"] = torch.zeros(7, 3)
    rep = load_dat_checkpoint(tiny_model(), sd)
    assert any(k.startswith("cls_head.weight") for k in rep.mismatched)
    with pytest.raises(InputError, match="cls_head.weight"):
        load_dat_checkpoint(tiny_model(), sd, strict=True)


def _no_training(monkeypatch):
    """Unit tests train nothing: the classifiers keep their seeded initial weights."""
    calls = []

    def fake(model, images, labels, epochs, seed, **kw):
        calls.append((len(labels), epochs, seed))
        return [0.0] * epochs

    monkeypatch.setattr("defslice.nas.evaluators.train_classifier", fake)
    return calls


def test_digits_objective_is_cached_and_finetuning_reports_epochs(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFSLICE_CACHE", str(tmp_path))
    calls = _no_training(monkeypatch)
    acc, meta = digits_objective(TINY_DAT)
    assert not meta["cached"] and meta["val_images"] == 2 * 359 and meta["margin"] == 2
    assert calls == [(1438, 12, 0)]
    parts = meta["key_parts"]
    assert parts["threads"] == torch.get_num_threads() and parts["cpu"] and parts["torch"]
    first = acc(None)
    acc2, meta2 = digits_objective(TINY_DAT)
    assert meta2["cached"] and acc2(None) == first and len(calls) == 1
    assert meta2["key"] == meta["key"]
    torch.set_num_threads(2)
    try:   # other threads, other arithmetic: another cache entry
        assert digits_objective(TINY_DAT)[1]["key"] != meta["key"] and len(calls) == 2
    finally:
        torch.set_num_threads(1)
    space = SearchSpace.from_config(TINY_DAT)
    hist = finetune_supernet(acc2.model, acc2.train, acc2.val, space, TINY_DAT.nas,
                             [SubNet(4, 4, 0)])
    assert [h["epoch"] for h in hist] == [0, 1]
    assert hist[0]["accuracy"]["unsliced"] == first
    assert set(hist[1]["accuracy"]) == {"unsliced", "Hs=4 Ws=4 O=0"}
    # the last step's learning rate is near the end of the cosine decay (64 images a
    # batch: one step, which is also the warm-up's)
    assert hist[0]["lr"] is None and hist[1]["lr"] == pytest.approx(TINY_DAT.nas.finetune_lr)


def test_finetune_lr_warms_up_then_decays_by_a_cosine():
    f = [lr_factor(s, 40) for s in range(40)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]          # 10% of 40 steps of warm-up
    assert f[4] == 1.0 and all(a >= b for a, b in itertools.pairwise(f[4:]))
    assert f[22] == pytest.approx(0.5) and 0 < f[-1] < 0.01
    assert lr_factor(0, 1) == 1.0                    # no warm-up step to round to


def test_cli_writes_the_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFSLICE_CACHE", str(tmp_path / "cache"))
    _no_training(monkeypatch)
    cfg_path = tmp_path / "tiny.toml"
    C.dump(TINY_DAT, cfg_path)
    out = tmp_path / "out"
    argv = ["nas", "--config", str(cfg_path), "--out", str(out), "--quiet", "--threads", "1",
            "--workers", "0", "--exhaustive"]
    assert main(argv) == 0
    rep = json.loads((out / "pareto.json").read_text())
    assert rep["evaluations"]["exhaustive"] == 18
    assert rep["evaluations"]["evolutionary"] <= 12
    assert rep["evaluations"]["nsga2"] == rep["evaluations"]["random"] == \
        rep["evaluations"]["evolutionary"]
    assert 0 < rep["hypervolume"]["evolutionary_ratio"] <= 1 + 1e-9
    assert len(rep["evaluated"]) == 18
    chosen = C.load(out / "chosen.toml")
    c = rep["chosen"]
    assert (chosen.slicing.slice_h, chosen.slicing.slice_w, chosen.slicing.overlap) == \
        (c["slice_h"], c["slice_w"], c["overlap"])
    assert chosen.replace(slicing=TINY_DAT.slicing) == TINY_DAT
    # the choice is a member of Alg. 1's front, with its standard error and paired drop
    front = {(p["slice_h"], p["slice_w"], p["overlap"]) for p in rep["fronts"]["evolutionary"]}
    assert (c["slice_h"], c["slice_w"], c["overlap"]) in front
    assert len(rep["front_table"]) == len(front) and rep["front_table"][0]["se"] > 0
    fig = rep["figures"]["validation"]
    assert fig["images"] == 2 * 359 and 0 < fig["unsliced_after"]["se"] < 0.05
    assert fig["drop_after"]["diff"] == pytest.approx(
        fig["unsliced_after"]["accuracy"] - fig["chosen_after"]["accuracy"])
    assert fig["chosen_after"]["accuracy"] == pytest.approx(c["accuracy"])
    for name in ("pareto.png", "hypervolume.png"):
        assert (out / name).stat().st_size > 1000
    assert [f["epoch"] for f in rep["finetune"]] == [0, 1]
    study = rep["seed_study"]
    assert len(study["runs"]) == 100 and study["runs"][0]["seed"] == TINY_DAT.nas.seed
    assert study["runs"][0]["evolutionary"]["ratio"] == pytest.approx(
        rep["hypervolume"]["evolutionary_ratio"])
    md = (out / "pareto.md").read_text()
    n = study["summary"]["evolutionary"]["at_least_0.99"]
    assert "Seed study, 100 seeds" in md and f"| {n}/100 |" in md
    assert "a proxy for tests" in md and "Alg. 1's front" in md
    # a second run finds every evaluation in the log and computes none again
    log = rep["evaluation_log"]
    assert log["computed"] == 18 and log["resumed"] == 0
    assert main(argv) == 0
    rep2 = json.loads((out / "pareto.json").read_text())
    assert rep2["evaluation_log"]["computed"] == 0
    assert rep2["evaluation_log"]["resumed"] == 18
    assert rep2["fronts"] == rep["fronts"] and rep2["chosen"] == rep["chosen"]
    # the flow summary shows the choice's note when no point is within the drop
    from defslice.nas.stage import NasReport
    from defslice.summary import _nas_section

    typed = NasReport.load(out / "nas.json")
    assert typed.chosen.note == rep["choice"]["note"]
    assert typed.accuracy.chosen_drop_vs_unsliced.se == fig["drop_after"]["se"]
    assert typed.hypervolume_ratio == rep["hypervolume"]["evolutionary_ratio"]
    assert typed.hypervolume.seed_study["evolutionary"].at_least_0_99 == n
    text = "\n".join(_nas_section(typed))
    assert "No point of the front" not in text and "hypervolume / exhaustive front" in text
    off = dataclasses.replace(typed, chosen=dataclasses.replace(typed.chosen, within_drop=False))
    assert f"**{typed.chosen.note}**" in "\n".join(_nas_section(off))
